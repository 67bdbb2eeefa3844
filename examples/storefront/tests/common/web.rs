//! The shop in process for the sign-in and forgery tests, driven without a
//! socket (`oneshot`): each request carries the client's address as the server
//! sets it (`ConnectInfo`), and forms are sent as a browser sends them.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, HeaderMap, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use storefront_storage::{SqliteStore, Store};
use storefront_web::{router, AppConfig, AppState, Passwords};
use tower::ServiceExt;

pub struct Shop {
    pub app: Router,
    pub state: AppState,
    pub product: i64,
}

pub async fn shop_with(config: AppConfig) -> Shop {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::in_memory().await.unwrap());
    let ids = super::catalog(store.as_ref(), 4, 5).await;
    let mut state = AppState::new(store, config);
    state.passwords = Passwords::fast_insecure();
    Shop {
        app: router(state.clone()),
        state,
        product: ids[0],
    }
}

pub async fn shop() -> Shop {
    shop_with(AppConfig::default()).await
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

    pub fn retry_after(&self) -> Option<u64> {
        self.headers
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
    }

    /// `name=value` of the cookie this reply sets, or "".
    pub fn set_cookie(&self, name: &str) -> String {
        self.set_cookie_line(name)
            .split(';')
            .next()
            .unwrap_or("")
            .to_owned()
    }

    /// The whole `Set-Cookie` line for cookie `name`, or "".
    pub fn set_cookie_line(&self, name: &str) -> String {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.split_once('=').is_some_and(|(n, _)| n == name))
            .unwrap_or("")
            .to_owned()
    }

    pub fn token(&self) -> String {
        let key = "name=\"csrf\" value=\"";
        let start = self
            .body
            .find(key)
            .unwrap_or_else(|| panic!("no csrf field in {}", self.body))
            + key.len();
        self.body[start..].split('"').next().unwrap().to_owned()
    }
}

pub fn ip(last: u8) -> IpAddr {
    IpAddr::from([192, 0, 2, last])
}

impl Shop {
    pub async fn send(&self, from: IpAddr, mut req: Request<Body>) -> Reply {
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::new(from, 40_000)));
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

    pub async fn get(&self, from: IpAddr, uri: &str, cookie: &str) -> Reply {
        let mut req = Request::get(uri);
        if !cookie.is_empty() {
            req = req.header(header::COOKIE, cookie);
        }
        self.send(from, req.body(Body::empty()).unwrap()).await
    }

    pub async fn post_form(
        &self,
        from: IpAddr,
        uri: &str,
        body: &str,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut req =
            Request::post(uri).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        self.send(from, req.body(Body::from(body.to_owned())).unwrap())
            .await
    }

    /// A form as a browser sends it after loading the login page with `cookie`.
    pub async fn form(&self, from: IpAddr, uri: &str, body: &str, cookie: &str) -> Reply {
        let page = self.get(from, "/login", cookie).await;
        let pre = page.set_cookie("sf_csrf");
        let cookie = [cookie, pre.as_str()]
            .into_iter()
            .filter(|c| !c.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
        let body = format!("{body}&csrf={}", page.token());
        self.post_form(from, uri, &body, &[("cookie", &cookie)])
            .await
    }

    pub async fn api(&self, from: IpAddr, uri: &str, body: Value) -> Reply {
        let req = Request::post(uri)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        self.send(from, req).await
    }

    pub async fn sign_up(&self, email: &str) {
        let r = self
            .api(
                ip(200),
                "/api/signup",
                json!({"name": "Ann", "email": email, "password": "correct horse battery"}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    }

    pub async fn log_in(&self, from: IpAddr, email: &str, password: &str) -> Reply {
        self.form(
            from,
            "/login",
            &format!(
                "email={}&password={}",
                email.replace('@', "%40"),
                password.replace(' ', "+")
            ),
            "",
        )
        .await
    }
}
