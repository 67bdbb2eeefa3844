//! A shop over SQLite in memory, driven without a socket
//! (`tower::ServiceExt::oneshot`), for the HTTP tests (`http_pages.rs`,
//! `http_api.rs`): requests with cookies as a browser sends them, and checks of
//! pages and API errors.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use storefront_storage::{SqliteStore, Store};
use storefront_web::{router, AppConfig, AppState, Passwords};
use tower::ServiceExt;

pub struct Shop {
    pub app: Router,
    pub store: Arc<dyn Store>,
    pub ids: Vec<i64>,
}

pub async fn shop() -> Shop {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::in_memory().await.unwrap());
    let ids = super::catalog(store.as_ref(), 30, 3).await;
    let mut state = AppState::new(
        store.clone(),
        AppConfig {
            page_size: 12,
            ..AppConfig::default()
        },
    );
    state.passwords = Passwords::fast_insecure();
    Shop {
        app: router(state),
        store,
        ids,
    }
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    pub fn location(&self) -> &str {
        self.headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    pub fn content_type(&self) -> &str {
        self.headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The session cookie this reply sets, as a `Cookie` header value.
    pub fn cookie(&self) -> String {
        self.set_cookie("sf_session")
    }

    /// Cookie `name` as this reply sets it (`name=value`), or "".
    pub fn set_cookie(&self, name: &str) -> String {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| v.split(';').next())
            .find(|pair| pair.split_once('=').is_some_and(|(n, _)| n == name))
            .unwrap_or("")
            .to_owned()
    }

    /// The API error code.
    pub fn code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    }
}

impl Shop {
    pub async fn send(&self, req: Request<Body>) -> Reply {
        let res = self.app.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        Reply {
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    pub async fn get(&self, uri: &str, cookie: &str) -> Reply {
        let mut req = Request::get(uri);
        if !cookie.is_empty() {
            req = req.header(header::COOKIE, cookie);
        }
        self.send(req.body(Body::empty()).unwrap()).await
    }

    /// `POST uri` with a form, as a browser sends it: with the token of a page
    /// (the login page) loaded with `cookie`, and any pre-session cookie it set.
    pub async fn form(&self, uri: &str, body: &str, cookie: &str) -> Reply {
        let page = self.get("/login", cookie).await;
        let token = form_token(&page.body);
        let pre = page.set_cookie("sf_csrf");
        let cookie = [cookie, pre.as_str()]
            .into_iter()
            .filter(|c| !c.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
        let body = match body {
            "" => format!("csrf={token}"),
            body => format!("{body}&csrf={token}"),
        };
        self.raw_form(uri, &body, &cookie).await
    }

    /// `POST uri` with the form `body` as given.
    pub async fn raw_form(&self, uri: &str, body: &str, cookie: &str) -> Reply {
        let mut req =
            Request::post(uri).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if !cookie.is_empty() {
            req = req.header(header::COOKIE, cookie);
        }
        self.send(req.body(Body::from(body.to_owned())).unwrap())
            .await
    }

    pub async fn api(&self, method: Method, uri: &str, body: Option<Value>, token: &str) -> Reply {
        let mut req = Request::builder().method(method).uri(uri);
        if !token.is_empty() {
            req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let body = match body {
            Some(v) => {
                req = req.header(header::CONTENT_TYPE, "application/json");
                Body::from(v.to_string())
            }
            None => Body::empty(),
        };
        self.send(req.body(body).unwrap()).await
    }

    /// Signs up through the API and returns the token.
    pub async fn api_user(&self, email: &str) -> String {
        let r = self
            .api(
                Method::POST,
                "/api/signup",
                Some(json!({"name": "Ann", "email": email, "password": "hunter2hunter2"})),
                "",
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        r.json()["token"].as_str().unwrap().to_owned()
    }
}

/// The value of a page's first `csrf` form field.
pub fn form_token(page: &str) -> String {
    let start = page
        .find("name=\"csrf\" value=\"")
        .map(|i| i + "name=\"csrf\" value=\"".len())
        .unwrap_or_else(|| panic!("no csrf field in {page}"));
    page[start..].split('"').next().unwrap_or("").to_owned()
}

pub fn assert_page(r: &Reply, status: StatusCode, contains: &str) {
    assert_eq!(r.status, status, "{}", r.body);
    assert!(
        r.content_type().starts_with("text/html"),
        "{}",
        r.content_type()
    );
    assert!(
        r.body.contains(contains),
        "page lacks {contains:?}: {}",
        r.body
    );
}

pub fn assert_api_error(r: &Reply, status: StatusCode, code: &str) {
    assert_eq!(r.status, status, "{}", r.body);
    assert!(
        r.content_type().starts_with("application/json"),
        "{}",
        r.content_type()
    );
    assert_eq!(r.code(), code, "{}", r.body);
    assert!(!r.json()["error"]["message"]
        .as_str()
        .unwrap_or("")
        .is_empty());
}
