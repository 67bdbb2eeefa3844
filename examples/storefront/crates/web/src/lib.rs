//! The HTTP face: server-rendered pages for people, the same operations as JSON
//! under `/api`, health probes, and graceful shutdown.
//!
//! | path | what |
//! | --- | --- |
//! | `GET /`, `?category=slug&page=N` | catalog listing |
//! | `GET /products/{id}`, `GET /products/{id}/image.svg` | product page, placeholder image |
//! | `GET /search?q=...&page=N` | search |
//! | `GET/POST /signup`, `GET/POST /login`, `POST /logout` | accounts (limits: [`signin`]) |
//! | `GET /cart`, `POST /cart/add`, `POST /cart/update` | cart |
//! | `POST /checkout`, `GET /orders`, `GET /orders/{id}` | checkout and order history |
//! | `/api/...` | the same as JSON (see [`api`]) |
//! | `GET /livez`, `GET /readyz` | liveness (the process answers), readiness (the database answers) |
//! | `GET /ops`, `GET /ops/data.json`, `GET /metrics` | the ops page, its figures, Prometheus (see [`storefront_ops`]); open or behind the admin token, as the stage file says ([`storefront_ops::access`]) |
//! | `/admin/...` | stage 7's admin pages, merged in by the server (see [`admin`]) |
//!
//! Every form that changes something carries an anti-forgery token, and the API
//! takes the session cookie only on requests another site cannot send: see
//! [`csrf`].

use std::sync::Arc;
use storefront_contract::ops::topology::{Node, Piece, Tier};

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;

use storefront_ops::{self as ops, Ops, OpsLayer};
use storefront_storage::Store;

pub mod admin;
pub mod api;
pub mod auth;
pub mod csrf;
pub mod error;
pub use storefront_server::headers;
pub mod html;
pub mod input;
pub mod redirect;
pub mod signin;
pub mod svg;
pub mod wal;

pub use auth::Passwords;
pub use error::{ApiError, AppError, PageError};

/// Settings of the HTTP face.
#[derive(Clone, Debug)]
pub struct AppConfig {
    /// Products per listing page.
    pub page_size: u32,
    /// How long a session lasts, in seconds.
    pub session_ttl_secs: i64,
    /// The running stage's number and title, shown in the footer.
    pub stage: (u32, String),
    /// Cookies and sign-in limits: the stage file's `[auth]` section.
    pub auth: signin::AuthConfig,
    /// A proxy the shop trusts is in front (the app processes behind a stage's
    /// gateway): take the client's address from `X-Forwarded-For` and HTTPS from
    /// `X-Forwarded-Proto` (see [`signin`]).
    pub trust_forwarded: bool,
}

impl Default for AppConfig {
    fn default() -> Self {
        Self {
            page_size: 24,
            session_ttl_secs: 7 * 24 * 3600,
            stage: (1, "Single machine".into()),
            auth: signin::AuthConfig::default(),
            trust_forwarded: false,
        }
    }
}

/// What every handler shares.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The storage backend.
    pub store: Arc<dyn Store>,
    /// Password hashing cost.
    pub passwords: Passwords,
    /// Settings.
    pub config: Arc<AppConfig>,
    /// The ops recorder: request, database and cache figures.
    pub ops: Arc<Ops>,
    /// Sign-in limits and the password hashing pool.
    pub signin: Arc<signin::SignIn>,
}

impl axum::extract::FromRef<AppState> for Arc<Ops> {
    fn from_ref(state: &AppState) -> Self {
        state.ops.clone()
    }
}

impl AppState {
    /// State with the recommended password cost.
    pub fn new(store: Arc<dyn Store>, config: AppConfig) -> Self {
        let ops = Arc::new(Ops::new(
            ops::StageRef {
                number: config.stage.0,
                title: config.stage.1.clone(),
            },
            topology_for(store.backend()),
        ));
        observe_store(&ops);
        Self {
            store,
            passwords: Passwords::recommended(),
            signin: Arc::new(signin::SignIn::new(&config.auth)),
            config: Arc::new(config),
            ops,
        }
    }

    /// The same state, recording into `ops` (shared with a
    /// [`MeteredStore`](storefront_storage::MeteredStore) below the store, for instance).
    pub fn with_ops(mut self, ops: Arc<Ops>) -> Self {
        observe_store(&ops);
        self.ops = ops;
        self
    }
}

/// The current time in Unix seconds.
pub(crate) fn now() -> i64 {
    storefront_contract::time::now()
}

/// The whole application: pages, API, probes and static files, each request
/// counted in `state.ops`; and the ops routes (not counted).
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use std::sync::Arc;
/// use storefront_web::{router, AppConfig, AppState};
/// use storefront_storage::SqliteStore;
/// use tower::ServiceExt;
///
/// let store = Arc::new(SqliteStore::in_memory().await.unwrap());
/// let app = router(AppState::new(store, AppConfig::default()));
/// let req = axum::http::Request::get("/livez").body(axum::body::Body::empty()).unwrap();
/// assert_eq!(app.oneshot(req).await.unwrap().status(), 200);
/// # });
/// ```
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(html::catalog))
        .route("/products/{id}", get(html::product))
        .route("/products/{id}/image.svg", get(svg::product_image))
        .route("/search", get(html::search))
        .route("/signup", get(html::signup_form).post(html::signup))
        .route("/login", get(html::login_form).post(html::login))
        .route("/logout", post(html::logout))
        .route("/cart", get(html::cart))
        .route("/cart/add", post(html::cart_add))
        .route("/cart/update", post(html::cart_update))
        .route("/checkout", post(html::checkout))
        .route("/orders", get(html::orders))
        .route("/orders/{id}", get(html::order))
        .route("/static/style.css", get(style))
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        // A method a page does not take: a page that says so (the API answers in JSON).
        .method_not_allowed_fallback(html::method_not_allowed)
        .nest("/api", api::router())
        // The nested router's fallback takes `/api/x`, not `/api` or `/api/`.
        .route("/api", axum::routing::any(api::not_found))
        .route("/api/", axum::routing::any(api::not_found))
        .fallback(html::not_found)
        // Stage 5: the session's WAL position, in and out (see `wal`).
        .layer(axum::middleware::from_fn(wal::middleware))
        // Forged requests refused, tokens for the forms, cookie policy (see `csrf`).
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            csrf::middleware,
        ))
        .layer(OpsLayer::new(state.ops.clone()))
        // CSP, frame and sniffing rules (the ops routes add their own).
        .layer(axum::middleware::map_response(headers::secure))
        .merge(ops::router())
        .with_state(state)
}

async fn style() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("../static/style.css"),
    )
}

async fn livez() -> &'static str {
    "ok\n"
}

/// `ready`, or `degraded: <cause>` (still 200: the shop serves, without a part
/// such as its Redis cache tier), or 503 `not ready: <error>` when the database
/// does not answer.
async fn readyz(axum::extract::State(state): axum::extract::State<AppState>) -> impl IntoResponse {
    match state.store.ping().await {
        Ok(()) => match state.store.degraded() {
            None => (StatusCode::OK, "ready\n".to_owned()),
            Some(cause) => (StatusCode::OK, format!("degraded: {cause}\n")),
        },
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {e}\n")),
    }
}

/// Money for people: `1234` cents is `$12.34`.
pub fn money(cents: impl std::borrow::Borrow<i64>) -> String {
    let cents = *cents.borrow();
    let sign = if cents < 0 { "-" } else { "" };
    let c = cents.unsigned_abs();
    format!("{sign}${}.{:02}", c / 100, c % 100)
}

/// A Unix time for people: `2026-11-24 01:55 UTC` (the contract's format).
pub fn date(unix: impl std::borrow::Borrow<i64>) -> String {
    storefront_contract::time::date(*unix.borrow())
}

/// Shows the read/write split of this process's stores on `ops`, and from
/// stage 5 on their replicas (the [`Replicas`](ops::replicas::Replicas) part).
fn observe_store(ops: &Ops) {
    ops.set_read_split(Arc::new(storefront_storage::split::read_split_now));
    ops.add_part(|| {
        let databases = storefront_storage::db::replica_views();
        (!databases.is_empty()).then_some(ops::replicas::Replicas(databases))
    });
}

/// The web app's pieces of the ops page's picture: the clients, and the app
/// that serves them pages and the API.
///
/// ```
/// use storefront_contract::ops::topology::{Tier, Topology};
///
/// let picture = Topology::of(storefront_web::pieces());
/// assert_eq!(picture.nodes(Tier::Apps)[0].title, "App");
/// ```
pub fn pieces() -> Vec<Piece> {
    vec![
        Piece::Node(
            Tier::Clients,
            Node::new("browser", "Browser", "people, loadgen"),
        ),
        Piece::Node(
            Tier::Apps,
            Node::new("app", "App", "pages, API").linked("HTTP"),
        ),
    ]
}

/// An app alone over `backend`, where only the backend is known.
fn topology_for(backend: storefront_storage::Backend) -> ops::Topology {
    let place = match backend {
        storefront_storage::Backend::Sqlite => "storefront.db",
        storefront_storage::Backend::Postgres => "over TCP",
    };
    ops::Topology::of(pieces().into_iter().chain([backend.piece(place)]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_and_dates() {
        assert_eq!(money(0), "$0.00");
        assert_eq!(money(123_456), "$1234.56");
        assert_eq!(money(-5), "-$0.05");
        assert_eq!(date(0), "1970-01-01 00:00 UTC");
        assert_eq!(date(1_795_485_300), "2026-11-24 01:55 UTC");
        assert_eq!(date(951_782_400), "2000-02-29 00:00 UTC");
    }
}
