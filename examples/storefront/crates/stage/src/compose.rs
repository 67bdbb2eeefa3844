//! The composition root: what a stage file asks for, built from the parts.

use std::net::SocketAddr;
use std::sync::Arc;

use storefront_cache::CachedStore;
use storefront_ops::{Ops, OpsAccess, StageRef};
use storefront_server::{Limits, Server};
use storefront_storage::sharded::analytics::OrderAnalytics;
use storefront_storage::sharded::ShardedOrders;
use storefront_storage::{MeteredStore, Store};
use storefront_web::admin::Admin;
use storefront_web::{AppConfig, AppState, Passwords};

use crate::config::StageConfig;
use crate::seed::SeedOptions;

/// Any error of building or serving a stage, with its message.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The ops recorder of a stage file: its number, title and topology, and who
/// may read its routes (`[ops]`, with the token from the environment: see
/// [`storefront_ops::access`]).
pub fn ops_for(config: &StageConfig) -> Ops {
    let ops = Ops::new(
        StageRef {
            number: config.stage.number,
            title: config.stage.title.clone(),
        },
        config.topology(),
    );
    ops.set_access(OpsAccess::from_config(config.ops.as_ref()));
    ops
}

/// Shows `orders`' layout, resharding state and rows on `ops` from now on (stage
/// 7): see [`storefront_ops::shards::watch`].
pub fn watch_shards(ops: &Arc<Ops>, orders: ShardedOrders) -> tokio::task::JoinHandle<()> {
    storefront_ops::shards::watch(ops, move || {
        let orders = orders.clone();
        async move { orders.view().await.map_err(|e| e.to_string()) }
    })
}

/// How one process of a stage is built.
#[derive(Clone, Debug)]
pub struct BuildOptions {
    /// Where SQLite keeps its file (a relative `[database] file` is placed here).
    pub data_dir: std::path::PathBuf,
    /// This process is an instance behind the stage's gateway (or an nginx in
    /// front): it takes the client's address from the proxy's `X-Forwarded-For`.
    pub behind_proxy: bool,
}

/// One process of a stage, built and ready to serve: the shop's routes over its
/// store (metered, cached, sharded as the stage says), the ops recorder and the
/// HTTP server with the stage's limits.
#[derive(Debug)]
pub struct App {
    /// Every route of the process: pages, API, probes, ops, admin.
    pub router: axum::Router,
    /// The process's ops recorder (started by [`App::serve`]).
    pub ops: Arc<Ops>,
    /// The HTTP server with the stage's connection limits.
    pub server: Arc<Server>,
}

/// Builds what `config` asks of one app process: opens its databases, wraps the
/// store in the query counter and the caches, seeds an empty catalog when the
/// stage says so, and assembles the routes. `storefront serve` (stages 1 to 3),
/// each `storefront instance` of stage 4 on, and the tests build processes this
/// way.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use storefront_stage::compose::{build, BuildOptions};
/// use storefront_stage::config::StageConfig;
/// use tower::ServiceExt;
///
/// let mut config = StageConfig::builtin(1).unwrap();
/// config.database = toml::from_str("backend = \"sqlite\"\nfile = \":memory:\"").unwrap();
/// let dir = tempfile::tempdir().unwrap();
/// let options = BuildOptions { data_dir: dir.path().into(), behind_proxy: false };
/// let app = build(&config, &options).await.unwrap();
/// let req = axum::http::Request::get("/readyz").body(axum::body::Body::empty()).unwrap();
/// assert_eq!(app.router.oneshot(req).await.unwrap().status(), 200);
/// # });
/// ```
pub async fn build(config: &StageConfig, options: &BuildOptions) -> Result<App, BoxError> {
    tracing::info!(
        stage = config.stage.number,
        "{}: opening {}",
        config.stage.title,
        config.database.describe(&options.data_dir)
    );
    let ops = Arc::new(ops_for(config));
    let opened = storefront_storage::open_parts(&config.databases(), &options.data_dir).await?;
    // Stage 7: the shard figures on the ops page, the admin pages over every shard.
    let admin = Admin::from_config(
        config.admin.as_ref(),
        opened
            .sharding
            .clone()
            .map(|s| Arc::new(s) as Arc<dyn OrderAnalytics>),
    );
    if let Some(sharding) = opened.sharding {
        watch_shards(&ops, sharding);
    }
    let store = MeteredStore::wrap(opened.store, ops.db_query_counter());
    let store = with_caches(store, config, &ops).await?;
    seed_if_empty(store.as_ref(), config).await?;
    let state = AppState::new(
        store,
        AppConfig {
            page_size: config.server.page_size,
            stage: (config.stage.number, config.stage.title.clone()),
            auth: config.auth.clone(),
            trust_forwarded: options.behind_proxy,
            ..AppConfig::default()
        },
    )
    .with_ops(Arc::clone(&ops));
    let router = storefront_web::router(state).merge(storefront_web::admin::router(admin));
    let server = Arc::new(Server::new(
        Limits::from_config(&config.server).fit_to_file_limit(1),
    ));
    let figures = Arc::clone(&server);
    ops.set_connections(Arc::new(move || figures.stats()));
    Ok(App {
        router,
        ops,
        server,
    })
}

impl App {
    /// Serves on `addr` until SIGTERM or Ctrl-C, then drains (see
    /// [`storefront_server`]); records a point of ops history every second.
    pub async fn serve(self, addr: SocketAddr) -> Result<(), BoxError> {
        self.ops.start();
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        let stage = self.ops.stage();
        tracing::info!(
            "stage {} ({}) serving at http://{addr}",
            stage.number,
            stage.title
        );
        self.server
            .serve(listener, self.router, storefront_server::shutdown_signal())
            .await?;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Stage 3 on: the caches in front of `store`, with their figures on `ops`.
async fn with_caches(
    store: Arc<dyn Store>,
    config: &StageConfig,
    ops: &Arc<Ops>,
) -> Result<Arc<dyn Store>, BoxError> {
    let Some(cache) = &config.cache else {
        return Ok(store);
    };
    tracing::info!(
        "caches: L1 in this process, L2 and invalidations in Redis under \"{}\"",
        cache.namespace
    );
    let cached = CachedStore::connect(store, cache).await.map_err(|e| {
        format!(
            "cannot set up the caches (Redis at {}): {e}",
            cache
                .redis_target()
                .map_or_else(|_| cache.redis_url(), |t| t.to_string())
        )
    })?;
    let cached = Arc::new(cached);
    ops.set_cache(cached.clone());
    Ok(cached)
}

/// An empty catalog gets the stage's demo products and ten accounts.
async fn seed_if_empty(store: &dyn Store, config: &StageConfig) -> Result<(), BoxError> {
    let seed_if_empty = config.database.seed_if_empty();
    if seed_if_empty > 0 && store.count_products().await? == 0 {
        tracing::info!("the catalog is empty: adding {seed_if_empty} demo products (storefront seed adds more)");
        let options = SeedOptions {
            products: u64::from(seed_if_empty),
            users: 10,
            seed: 42,
        };
        crate::seed::seed(store, options, &Passwords::recommended(), &|_| {}).await?;
    }
    Ok(())
}
