//! Stage 7: the admin's pages, read across every order shard with
//! [`OrderAnalytics`] (scatter-gather over the shard databases).
//!
//! | path | what |
//! | --- | --- |
//! | `GET /admin/orders?page=N` | the latest orders, newest first, 50 a page |
//! | `GET /admin/revenue?days=N` | orders and revenue per day (UTC) over the last N days (30) |
//! | `GET /admin/top-products?by=units\|revenue` | the 20 best-selling products |
//! | `GET/POST /admin/login` | a form that takes the token and sets a cookie |
//!
//! **Protection**: an admin token from the environment variable the stage file
//! names (`[admin] token_env`). Without the variable set (or without sharded
//! orders) every admin page answers 404. With it, a request must carry the token,
//! as `Authorization: Bearer <token>` or in the `sk_admin` cookie that the login
//! form sets (`HttpOnly`, `SameSite=Strict`, `Path=/admin`, 8 hours); tokens are
//! compared in constant time (SHA-256 digests, every byte). Anything else is 401.
//! The pages are not counted on the ops page (the router is merged after the
//! shop's [`OpsLayer`](storefront_ops::OpsLayer), like the ops routes).

use std::sync::Arc;
use storefront_contract::section::{Invalid, Section};

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Form, Router};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::error::{AppError, PageError};
use storefront_storage::sharded::analytics::{OrderAnalytics, TopBy};
use storefront_storage::User;

/// The admin token's cookie.
pub use storefront_contract::cookies::ADMIN as ADMIN_COOKIE;
/// Orders per page of `/admin/orders`.
pub const ORDERS_PER_PAGE: u64 = 50;
/// Products on `/admin/top-products`.
pub const TOP_PRODUCTS: u64 = 20;
/// The highest page number accepted (beyond it the offset means nothing useful).
const MAX_PAGE: u64 = 100_000;
/// The longest revenue period, in days.
const MAX_DAYS: i64 = 3_660;
/// How long the login cookie lasts, in seconds.
const COOKIE_SECS: u64 = 8 * 3600;

/// The `[admin]` section of a stage file.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// The environment variable that holds the admin token; unset or empty
    /// turns the admin pages off (404).
    pub token_env: String,
}

impl Section for AdminConfig {
    /// The variable's name must be one the environment can hold.
    fn check(&self) -> Result<(), Invalid> {
        let name = &self.token_env;
        if name.is_empty() || name.contains(['=', '\0']) {
            return Err((
                "admin.token_env",
                format!("{name:?}: name an environment variable, like \"SCALEKIT_ADMIN_TOKEN\""),
            ));
        }
        Ok(())
    }
}

/// What the admin pages need: the token and the analytics. Cheap to clone.
#[derive(Clone)]
pub struct Admin {
    token_digest: Option<[u8; 32]>,
    analytics: Option<Arc<dyn OrderAnalytics>>,
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin")
            .field("enabled", &self.enabled())
            .finish_non_exhaustive()
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Admin {
    /// Pages over `analytics`, open to requests that carry `token`. Either
    /// missing (or an empty token) turns them off.
    pub fn new(token: Option<&str>, analytics: Option<Arc<dyn OrderAnalytics>>) -> Self {
        Self {
            token_digest: token.filter(|t| !t.is_empty()).map(digest),
            analytics,
        }
    }

    /// The token from the environment variable `config` names.
    pub fn from_config(
        config: Option<&AdminConfig>,
        analytics: Option<Arc<dyn OrderAnalytics>>,
    ) -> Self {
        let token = config.and_then(|c| std::env::var(&c.token_env).ok());
        if config.is_some() && token.as_deref().is_none_or(str::is_empty) {
            tracing::info!("admin pages off: the admin token's environment variable is not set");
        }
        Self::new(token.as_deref(), analytics)
    }

    /// Whether the pages are on.
    pub fn enabled(&self) -> bool {
        self.token_digest.is_some() && self.analytics.is_some()
    }

    /// Whether `given` is the token, in time that does not depend on where they
    /// differ.
    fn accepts(&self, given: &str) -> bool {
        let Some(want) = &self.token_digest else {
            return false;
        };
        let got = digest(given);
        want.iter()
            .zip(got.iter())
            .fold(0u8, |d, (a, b)| d | (a ^ b))
            == 0
    }

    /// The analytics if the request may see them: 404 when off, 401 without the
    /// right token.
    fn check(&self, headers: &HeaderMap) -> Result<&Arc<dyn OrderAnalytics>, Box<Response>> {
        let (Some(analytics), true) = (&self.analytics, self.enabled()) else {
            return Err(Box::new(
                PageError(AppError::NotFound("there is no admin here".into())).into_response(),
            ));
        };
        let bearer = headers
            .get_all(header::AUTHORIZATION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| v.strip_prefix("Bearer "))
            .any(|t| self.accepts(t.trim()));
        let cookie = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|c| c.trim().strip_prefix(ADMIN_COOKIE)?.strip_prefix('='))
            .any(|t| self.accepts(t));
        if bearer || cookie {
            Ok(analytics)
        } else {
            Err(Box::new(unauthorized("This page needs the admin token.")))
        }
    }
}

/// The admin routes, with their state: merge into the app's router.
pub fn router(admin: Admin) -> Router {
    Router::new()
        .route("/admin/orders", get(orders))
        .route("/admin/revenue", get(revenue))
        .route("/admin/top-products", get(top_products))
        .route("/admin/login", get(login_form).post(login))
        .layer(axum::middleware::map_response(super::headers::secure))
        .with_state(admin)
}

#[derive(Template)]
#[template(path = "admin.html")]
struct AdminPage {
    title: &'static str,
    user: Option<User>,
    heading: String,
    note: String,
    columns: Vec<&'static str>,
    rows: Vec<Vec<String>>,
    prev: String,
    next: String,
}

#[derive(Template)]
#[template(path = "admin_login.html")]
struct LoginPage {
    title: &'static str,
    user: Option<User>,
    error: &'static str,
}

fn render(page: impl Template, status: StatusCode) -> Response {
    match page.render() {
        Ok(html) => (status, [(header::CACHE_CONTROL, "no-store")], Html(html)).into_response(),
        Err(e) => PageError(AppError::Internal(format!("admin page: {e}"))).into_response(),
    }
}

fn unauthorized(error: &'static str) -> Response {
    let mut resp = render(
        LoginPage {
            title: "Admin",
            user: None,
            error,
        },
        StatusCode::UNAUTHORIZED,
    );
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"storefront admin\""),
    );
    resp
}

fn failed(e: storefront_storage::StoreError) -> Response {
    PageError(AppError::from(e)).into_response()
}

/// `?page=N` of `/admin/orders`.
#[derive(Debug, Deserialize)]
pub struct OrdersQuery {
    /// The page, from 1.
    pub page: Option<u64>,
}

async fn orders(
    State(admin): State<Admin>,
    headers: HeaderMap,
    query: Result<Query<OrdersQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let analytics = match admin.check(&headers) {
        Ok(a) => a,
        Err(r) => return *r,
    };
    let page = match query {
        Ok(Query(q)) => q.page.unwrap_or(1),
        Err(e) => return PageError(AppError::from(e)).into_response(),
    };
    if !(1..=MAX_PAGE).contains(&page) {
        return PageError(AppError::invalid(
            "page",
            format!("give a page from 1 to {MAX_PAGE}"),
        ))
        .into_response();
    }
    let offset = (page - 1) * ORDERS_PER_PAGE;
    let (list, total) = match tokio::try_join!(
        analytics.latest_orders(offset, ORDERS_PER_PAGE),
        analytics.count_orders()
    ) {
        Ok(v) => v,
        Err(e) => return failed(e),
    };
    let rows = list
        .iter()
        .map(|o| {
            vec![
                o.id.to_string(),
                o.user_id.to_string(),
                super::money(o.total_cents),
                super::date(o.created_at),
            ]
        })
        .collect();
    let pages = total.div_ceil(ORDERS_PER_PAGE).max(1);
    render(
        AdminPage {
            title: "Admin: orders",
            user: None,
            heading: "Latest orders".into(),
            note: format!("{total} orders in all · page {page} of {pages}"),
            columns: vec!["Order", "Customer", "Total", "Placed"],
            rows,
            prev: if page > 1 {
                format!("/admin/orders?page={}", page - 1)
            } else {
                String::new()
            },
            next: if page < pages {
                format!("/admin/orders?page={}", page + 1)
            } else {
                String::new()
            },
        },
        StatusCode::OK,
    )
}

/// `?days=N` of `/admin/revenue`.
#[derive(Debug, Deserialize)]
pub struct RevenueQuery {
    /// Days back from today (30 when left out).
    pub days: Option<i64>,
}

async fn revenue(
    State(admin): State<Admin>,
    headers: HeaderMap,
    query: Result<Query<RevenueQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let analytics = match admin.check(&headers) {
        Ok(a) => a,
        Err(r) => return *r,
    };
    let days = match query {
        Ok(Query(q)) => q.days.unwrap_or(30),
        Err(e) => return PageError(AppError::from(e)).into_response(),
    };
    if !(1..=MAX_DAYS).contains(&days) {
        return PageError(AppError::invalid(
            "days",
            format!("give 1 to {MAX_DAYS} days"),
        ))
        .into_response();
    }
    let today = super::now().div_euclid(86_400);
    let since = (today - days + 1) * 86_400;
    let list = match analytics.revenue_per_day(since).await {
        Ok(v) => v,
        Err(e) => return failed(e),
    };
    let rows = list
        .iter()
        .rev()
        .map(|d| {
            let date = super::date(d.day.saturating_mul(86_400));
            vec![
                date.get(..10).unwrap_or(&date).to_owned(),
                d.orders.to_string(),
                super::money(d.revenue_cents),
            ]
        })
        .collect();
    render(
        AdminPage {
            title: "Admin: revenue",
            user: None,
            heading: "Revenue per day".into(),
            note: format!("The last {days} days (UTC), newest first."),
            columns: vec!["Day", "Orders", "Revenue"],
            rows,
            prev: String::new(),
            next: String::new(),
        },
        StatusCode::OK,
    )
}

/// `?by=units|revenue` of `/admin/top-products`.
#[derive(Debug, Deserialize)]
pub struct TopQuery {
    /// `units` (the default) or `revenue`.
    pub by: Option<String>,
}

async fn top_products(
    State(admin): State<Admin>,
    headers: HeaderMap,
    query: Result<Query<TopQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let analytics = match admin.check(&headers) {
        Ok(a) => a,
        Err(r) => return *r,
    };
    let by = match query {
        Ok(Query(q)) => match q.by.as_deref() {
            None | Some("units") => TopBy::Units,
            Some("revenue") => TopBy::Revenue,
            Some(_) => {
                return PageError(AppError::invalid("by", "give units or revenue")).into_response()
            }
        },
        Err(e) => return PageError(AppError::from(e)).into_response(),
    };
    let list = match analytics.top_products(by, TOP_PRODUCTS).await {
        Ok(v) => v,
        Err(e) => return failed(e),
    };
    let rows = list
        .iter()
        .map(|p| {
            vec![
                p.product_id.to_string(),
                p.name.clone(),
                p.units.to_string(),
                super::money(p.revenue_cents),
            ]
        })
        .collect();
    let (note, other) = match by {
        TopBy::Units => ("By units sold.", "/admin/top-products?by=revenue"),
        TopBy::Revenue => ("By revenue.", "/admin/top-products?by=units"),
    };
    render(
        AdminPage {
            title: "Admin: top products",
            user: None,
            heading: format!("Top {TOP_PRODUCTS} products"),
            note: note.into(),
            columns: vec!["Product", "Name", "Units", "Revenue"],
            rows,
            prev: String::new(),
            next: other.into(),
        },
        StatusCode::OK,
    )
}

async fn login_form(State(admin): State<Admin>) -> Response {
    if !admin.enabled() {
        return PageError(AppError::NotFound("there is no admin here".into())).into_response();
    }
    render(
        LoginPage {
            title: "Admin",
            user: None,
            error: "",
        },
        StatusCode::OK,
    )
}

/// The login form's body.
#[derive(Debug, Deserialize)]
pub struct LoginForm {
    /// The admin token.
    pub token: String,
}

async fn login(
    State(admin): State<Admin>,
    form: Result<Form<LoginForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    if !admin.enabled() {
        return PageError(AppError::NotFound("there is no admin here".into())).into_response();
    }
    let Ok(Form(form)) = form else {
        return unauthorized("Give the admin token.");
    };
    let token = form.token.trim();
    // The cookie holds the token: refuse what a cookie cannot carry as is.
    let plain = token
        .bytes()
        .all(|b| b.is_ascii_graphic() && b != b';' && b != b',');
    if !admin.accepts(token) || !plain {
        return unauthorized("That is not the admin token.");
    }
    let cookie = format!(
        "{ADMIN_COOKIE}={token}; Path=/admin; HttpOnly; SameSite=Strict; Max-Age={COOKIE_SECS}"
    );
    let Ok(cookie) = HeaderValue::from_str(&cookie) else {
        return unauthorized("That is not the admin token.");
    };
    let mut resp = Redirect::to("/admin/orders").into_response();
    resp.headers_mut().insert(header::SET_COOKIE, cookie);
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        let admin = Admin::new(Some("s3cret"), None);
        assert!(admin.accepts("s3cret"));
        assert!(!admin.accepts("s3cre"));
        assert!(!admin.accepts(""));
        assert!(!admin.enabled(), "no analytics: off");
        assert!(!Admin::new(Some(""), None).accepts(""));
    }
}
