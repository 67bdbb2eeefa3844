//! `storefront loadgen`: drives a running shop with user journeys and measures it.
//!
//! - **Journeys** over the pages people load: browse (a catalog page, then one to
//!   three product pages) 70%, search (a search, then a product page) 15%, buy (a
//!   product page, add to cart, the cart, checkout, the order page, signed in)
//!   15%. Product pages follow a Zipf law ([`ZipfIds`]): product 1 is the most
//!   popular. Customers log in as the seeded accounts (`user1@example.com` ...,
//!   password `storefront`); when all are in a journey, a new customer signs up.
//! - **Open loop** (`--rate R`: R journeys start each second whatever the server
//!   does) or **closed loop** (`--concurrency C`: C customers, each starting the
//!   next journey when the last one ends).
//! - **Latency** in HDR histograms. In the open loop a journey's first request
//!   counts from the time it was *meant* to be sent, so time spent waiting for a
//!   server that fell behind is part of the figure (the correction for
//!   coordinated omission; a closed loop cannot make it and under-reports tails).
//! - **Raw mode** (`--path /products/1`): every request is that one URL.
//!
//! ```text
//! storefront loadgen --target http://127.0.0.1:8080 --concurrency 32 --duration 20
//! storefront loadgen --rate 200 --duration 30 --warmup 5 --svg load.svg
//! storefront loadgen --path /products/1 --concurrency 64
//! ```
//!
//! [`evolve`] runs the stages one after another under the same load, and [`bench`](mod@bench)
//! compares a product page from the L1 cache with a bare axum handler.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::sync::Semaphore;

pub mod bench;
pub mod cli;
pub mod evolve;
pub mod http;
pub mod journey;
pub mod ramp;
pub mod stats;
pub mod svg;
pub mod zipf;

pub use http::HttpClient;
pub use journey::{Journey, Mix};
pub use stats::{Outcome, Recorder, Report, Row, Step};
pub use zipf::ZipfIds;

use journey::{Runner, Shop};

/// How requests are paced.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mode {
    /// Journeys start at this many per second, whether or not earlier ones ended.
    Open {
        /// Journeys per second.
        rate: f64,
    },
    /// This many customers, each starting a journey when the last one ended.
    Closed {
        /// Customers at once.
        concurrency: usize,
    },
    /// This many customers, each pausing between journeys as people read a
    /// page: a random pause (exponential) of `think` on average per request the
    /// journey made, so each customer asks about once per `think` plus the
    /// response time. The population a shop *carries*: by Little's law its
    /// requests a second are `customers / (think + response time)`.
    Customers {
        /// Customers in the shop.
        customers: usize,
        /// Mean pause per request.
        think: Duration,
    },
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mode::Open { rate } => write!(f, "open loop, {rate} journeys/s"),
            Mode::Closed { concurrency } => {
                write!(f, "closed loop, {concurrency} concurrent customers")
            }
            Mode::Customers { customers, think } => write!(
                f,
                "closed loop, {customers} customers thinking {} s between requests",
                think.as_secs_f64()
            ),
        }
    }
}

/// What to ask for.
#[derive(Clone, Debug, PartialEq)]
pub enum Workload {
    /// User journeys in this mix.
    Journeys(Mix),
    /// One URL path, again and again (each "journey" is one request).
    Raw {
        /// The path, like `/products/1`.
        path: String,
    },
}

/// Everything a run needs.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// The shop, like `http://127.0.0.1:8080`.
    pub target: String,
    /// Pacing.
    pub mode: Mode,
    /// Journeys or one path.
    pub workload: Workload,
    /// Seeded accounts to log in before the run (`user1@example.com` ...).
    pub users: u32,
    /// Zipf exponent of product popularity.
    pub zipf: f64,
    /// Random seed.
    pub seed: u64,
    /// Longest wait for one answer.
    pub timeout: Duration,
    /// Open loop: journeys in flight at most (later ones wait, and the wait counts
    /// in their latency).
    pub max_in_flight: usize,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            target: "http://127.0.0.1:8080".into(),
            mode: Mode::Closed { concurrency: 32 },
            workload: Workload::Journeys(Mix::default()),
            users: 10,
            zipf: 1.0,
            seed: 1,
            timeout: Duration::from_secs(10),
            max_in_flight: 10_000,
        }
    }
}

/// A load generator connected to a shop: it knows the catalog and holds the
/// customers' sessions; [`run`](Self::run) it once per phase (warm-up, measure).
#[derive(Debug)]
pub struct Loadgen {
    options: LoadOptions,
    http: HttpClient,
    shop: Option<Arc<Shop>>,
    journeys_started: AtomicU64,
}

#[derive(serde::Deserialize)]
struct Listing {
    total: u64,
}

#[derive(serde::Deserialize)]
struct CategoryJson {
    slug: String,
}

impl Loadgen {
    /// Checks the options, reads the catalog's size and categories (from `/api`),
    /// and logs the customers in. Raw mode only checks the options.
    pub async fn connect(options: LoadOptions) -> Result<Self, String> {
        match options.mode {
            Mode::Open { rate } if !(rate > 0.0 && rate <= 1_000_000.0) => {
                return Err(format!(
                    "--rate {rate}: give journeys per second, above 0 and at most 1000000"
                ))
            }
            Mode::Closed { concurrency } if !(1..=100_000).contains(&concurrency) => {
                return Err(format!(
                    "--concurrency {concurrency}: give 1 to 100000 customers"
                ))
            }
            Mode::Customers { customers, think } => check_customers(customers, think)?,
            _ => {}
        }
        if options.max_in_flight == 0 {
            return Err("at least one journey must be allowed in flight".into());
        }
        let http = HttpClient::new(&options.target, options.timeout)?;
        let shop = match &options.workload {
            Workload::Raw { path } => {
                if !path.starts_with('/') {
                    return Err(format!(
                        "--path {path:?}: give a path from the root, like /products/1"
                    ));
                }
                None
            }
            Workload::Journeys(_) => Some(Arc::new(discover(&http, &options).await?)),
        };
        Ok(Self {
            options,
            http,
            shop,
            journeys_started: AtomicU64::new(0),
        })
    }

    /// The options in use.
    pub fn options(&self) -> &LoadOptions {
        &self.options
    }

    /// The load in one line, for reports: pacing, mix and popularity.
    pub fn describe(&self) -> String {
        match (&self.options.workload, &self.shop) {
            (Workload::Journeys(mix), Some(shop)) => format!(
                "{}; journeys: {mix}; product popularity Zipf s = {} over {} products; {} customers logged in at the start",
                self.options.mode,
                self.options.zipf,
                shop.products.len(),
                self.options.users
            ),
            (Workload::Raw { path }, _) => {
                format!("{}; every request GET {path}", self.options.mode)
            }
            (Workload::Journeys(_), None) => self.options.mode.to_string(),
        }
    }

    /// Runs the load for `length` and reports on it. With `progress`, a progress
    /// bar with that label is drawn on the terminal (when stderr is one).
    pub async fn run(&self, length: Duration, progress: Option<&str>) -> Report {
        self.run_as(self.options.mode, length, progress).await
    }

    /// [`run`](Self::run) paced by `mode` instead of the options' (a ramp
    /// changes the number of customers step by step over one set of logged-in
    /// sessions). A mode that [`connect`](Self::connect) would refuse runs no
    /// load and reports nothing.
    pub async fn run_as(&self, mode: Mode, length: Duration, progress: Option<&str>) -> Report {
        // At most a day (the command line's bound), so time arithmetic cannot overflow.
        let length = length.min(Duration::from_secs(86_400));
        // A short lead so the first intended send times are not already late.
        let start = Instant::now() + Duration::from_millis(20);
        let rec = Arc::new(Recorder::new(start, length));
        let bar = progress.map(|label| progress_bar(label, length));
        let ticker = bar.clone().map(|bar| {
            let rec = Arc::clone(&rec);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(250));
                loop {
                    tick.tick().await;
                    let elapsed = Instant::now().saturating_duration_since(start);
                    let (ok, failed) = rec.progress();
                    let secs = elapsed.as_secs_f64().max(0.001);
                    bar.set_position(elapsed.min(length).as_millis() as u64);
                    bar.set_message(format!(
                        "{:.0} req/s, {failed} errors",
                        (ok + failed) as f64 / secs
                    ));
                }
            })
        });
        match mode {
            Mode::Open { rate } if rate > 0.0 && rate <= 1_000_000.0 => {
                self.open_loop(&rec, start, length, rate).await
            }
            Mode::Closed { concurrency } if concurrency <= 100_000 => {
                self.closed_loop(&rec, start, length, concurrency).await
            }
            Mode::Customers { customers, think } if check_customers(customers, think).is_ok() => {
                self.customers_loop(&rec, start, length, customers, think)
                    .await
            }
            _ => {}
        }
        if let Some(t) = ticker {
            t.abort();
        }
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        rec.report(length.as_secs_f64())
    }

    /// One journey (or raw request); returns how many requests it sent.
    async fn one(&self, rec: &Recorder, intended: Instant, rng: &mut SmallRng) -> u32 {
        let runner = Runner::new(&self.http, rec);
        match (&self.options.workload, &self.shop) {
            (Workload::Raw { path }, _) => runner.raw(path, intended).await,
            (Workload::Journeys(mix), Some(shop)) => {
                let journey = mix.pick(rng);
                runner.journey(shop, journey, intended, rng).await;
            }
            (Workload::Journeys(_), None) => {}
        }
        runner.sent()
    }

    fn rng(&self) -> SmallRng {
        let n = self.journeys_started.fetch_add(1, Ordering::Relaxed);
        SmallRng::seed_from_u64(
            self.options
                .seed
                .wrapping_add(n.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
        )
    }

    async fn open_loop(&self, rec: &Arc<Recorder>, start: Instant, length: Duration, rate: f64) {
        let slots = Arc::new(Semaphore::new(self.options.max_in_flight));
        let interval = Duration::from_secs_f64(1.0 / rate);
        let this = self.clone_handle();
        let mut journeys = tokio::task::JoinSet::new();
        for i in 0u64.. {
            let intended = start + interval.mul_f64(i as f64);
            if intended >= start + length {
                break;
            }
            tokio::time::sleep_until(intended.into()).await;
            // When the server is behind, the journey waits for a slot: its intended
            // time stays, so the wait shows in its latency.
            let Ok(permit) = Arc::clone(&slots).acquire_owned().await else {
                break;
            };
            let rec = Arc::clone(rec);
            let this = this.clone();
            let mut rng = self.rng();
            journeys.spawn(async move {
                this.one(&rec, intended, &mut rng).await;
                drop(permit);
            });
            while journeys.try_join_next().is_some() {}
        }
        // Drain: wait for the journeys in flight, bounded by a few timeouts.
        let all = u32::try_from(self.options.max_in_flight).unwrap_or(u32::MAX);
        let deadline = self
            .options
            .timeout
            .saturating_mul(4)
            .saturating_add(Duration::from_secs(1));
        let _ = tokio::time::timeout(deadline, slots.acquire_many(all)).await;
        // Journeys still running now would load the server into the next phase.
        journeys.abort_all();
    }

    async fn closed_loop(
        &self,
        rec: &Arc<Recorder>,
        start: Instant,
        length: Duration,
        concurrency: usize,
    ) {
        let end = start + length;
        tokio::time::sleep_until(start.into()).await;
        let mut workers = tokio::task::JoinSet::new();
        for _ in 0..concurrency {
            let rec = Arc::clone(rec);
            let this = self.clone_handle();
            let mut rng = self.rng();
            workers.spawn(async move {
                while Instant::now() < end {
                    this.one(&rec, Instant::now(), &mut rng).await;
                }
            });
        }
        self.drain(workers, length).await;
    }

    async fn customers_loop(
        &self,
        rec: &Arc<Recorder>,
        start: Instant,
        length: Duration,
        customers: usize,
        think: Duration,
    ) {
        let end = start + length;
        // Journeys in flight at most (a customer past it waits, and the wait
        // counts from when the customer meant to ask).
        let slots = Arc::new(Semaphore::new(self.options.max_in_flight));
        let mean = think.as_secs_f64();
        let mut workers = tokio::task::JoinSet::new();
        for _ in 0..customers {
            let rec = Arc::clone(rec);
            let this = self.clone_handle();
            let slots = Arc::clone(&slots);
            let mut rng = self.rng();
            workers.spawn(async move {
                // Customers already shopping: the first journey comes after a
                // pause drawn as the later ones are (a journey makes about
                // three requests), so the load is steady from the start.
                let mut pause = pause(&mut rng, mean * JOURNEY_REQUESTS);
                loop {
                    let wake = Instant::now() + pause;
                    if wake >= end {
                        break;
                    }
                    tokio::time::sleep_until(wake.max(start).into()).await;
                    let Ok(permit) = slots.acquire().await else {
                        break;
                    };
                    let sent = this.one(&rec, wake.max(start), &mut rng).await;
                    drop(permit);
                    pause = pause_for(&mut rng, mean, sent);
                }
            });
        }
        self.drain(workers, length).await;
    }

    /// Waits for the customers of a closed loop to finish, at most the run's
    /// `length` and a few timeouts; those still running then are stopped.
    async fn drain(&self, mut workers: tokio::task::JoinSet<()>, length: Duration) {
        let deadline = self
            .options
            .timeout
            .saturating_mul(4)
            .saturating_add(Duration::from_secs(1));
        let drained = tokio::time::timeout(length.saturating_add(deadline), async {
            while workers.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            workers.abort_all();
        }
    }

    fn clone_handle(&self) -> Arc<Self> {
        Arc::new(Self {
            options: self.options.clone(),
            http: self.http.clone(),
            shop: self.shop.clone(),
            journeys_started: AtomicU64::new(0),
        })
    }
}

/// Requests in an average journey of the default mix (browse 3, search 2,
/// buy 5), for the first pause of a customer.
const JOURNEY_REQUESTS: f64 = 3.0;

/// The longest think time a customer may have.
pub const MAX_THINK: Duration = Duration::from_secs(3_600);

fn check_customers(customers: usize, think: Duration) -> Result<(), String> {
    if !(1..=1_000_000).contains(&customers) {
        return Err(format!(
            "--customers {customers}: give 1 to 1000000 customers"
        ));
    }
    if think > MAX_THINK {
        return Err(format!(
            "--think {} s: give at most {} s",
            think.as_secs_f64(),
            MAX_THINK.as_secs()
        ));
    }
    Ok(())
}

/// An exponential pause of `mean` seconds on average (none for a mean of 0).
fn pause<R: Rng + ?Sized>(rng: &mut R, mean: f64) -> Duration {
    if mean <= 0.0 {
        return Duration::ZERO;
    }
    // 1 - u is in (0, 1]: its logarithm is finite.
    let u: f64 = rng.random();
    Duration::from_secs_f64((-(1.0 - u).ln() * mean).min(MAX_THINK.as_secs_f64() * 20.0))
}

/// The pause after a journey of `sent` requests: `mean` per request (at least
/// one, so a journey cut short by an error is not followed at once by another).
fn pause_for<R: Rng + ?Sized>(rng: &mut R, mean: f64, sent: u32) -> Duration {
    pause(rng, mean * f64::from(sent.max(1)))
}

fn progress_bar(label: &str, length: Duration) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(
        Some(length.as_millis() as u64),
        ProgressDrawTarget::stderr(),
    );
    if let Ok(style) =
        ProgressStyle::with_template("{prefix:>10} [{elapsed_precise}] [{bar:30}] {msg}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(label.to_owned());
    bar
}

/// Reads the catalog's size and categories, and logs the customers in.
async fn discover(http: &HttpClient, options: &LoadOptions) -> Result<Shop, String> {
    let target = &options.target;
    let listing = http
        .get("/api/products?per_page=1", None)
        .await
        .map_err(|e| format!("cannot reach the shop at {target}: {e}"))?;
    if listing.status != 200 {
        return Err(format!(
            "{target}/api/products answered {}: is this a storefront?",
            listing.status
        ));
    }
    let listing: Listing = serde_json::from_slice(&listing.body).map_err(|e| {
        format!("{target}/api/products: unexpected answer ({e}): is this a storefront?")
    })?;
    let products = ZipfIds::new(listing.total, options.zipf)?;
    let categories: Vec<CategoryJson> = match http.get("/api/categories", None).await {
        Ok(a) if a.status == 200 => serde_json::from_slice(&a.body).unwrap_or_default(),
        _ => Vec::new(),
    };
    let run_id = SmallRng::from_os_rng().random::<u64>();
    // Log the seeded accounts in, two at a time (password hashing is deliberately
    // slow); an account that does not exist is signed up.
    let mut sessions = Vec::new();
    let anonymous = journey::FormKey::fetch(http)
        .await
        .map_err(|e| format!("{target}: cannot load the login form: {e}"))?;
    let key = &anonymous;
    let login = |i: u32| async move {
        journey::log_in_or_sign_up(http, key, &format!("user{i}@example.com"))
            .await
            .map_err(|e| format!("cannot log the customers in: {e}"))
    };
    let mut i = 1;
    while i <= options.users {
        if i < options.users {
            let (a, b) = tokio::join!(login(i), login(i + 1));
            sessions.push(a?);
            sessions.push(b?);
            i += 2;
        } else {
            sessions.push(login(i).await?);
            i += 1;
        }
    }
    Ok(Shop {
        products,
        categories: categories.into_iter().map(|c| c.slug).collect(),
        sessions: Mutex::new(sessions),
        run_id,
        signups: AtomicU64::new(0),
        anonymous,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;

    /// A server that answers one request at a time, each after 50 ms: 20 per second.
    async fn slow_server() -> String {
        let lock = Arc::new(tokio::sync::Mutex::new(()));
        let app = axum::Router::new().route(
            "/slow",
            get(move || {
                let lock = Arc::clone(&lock);
                async move {
                    let _one_at_a_time = lock.lock().await;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    "done"
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("bind: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("addr: {e}"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}")
    }

    fn raw(target: String, mode: Mode) -> LoadOptions {
        LoadOptions {
            target,
            mode,
            workload: Workload::Raw {
                path: "/slow".into(),
            },
            // One request in flight: a request the open loop cannot send on time
            // waits in the generator, where only the intended time can see it.
            max_in_flight: 1,
            ..LoadOptions::default()
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn open_loop_latency_includes_the_wait_behind_a_slow_server() {
        let target = slow_server().await;
        // 40 requests meant over one second, served at 20 per second: request i is
        // meant at 25·i ms and done at about 50·(i+1) ms, so it is 50 + 25·i ms late.
        let open = Loadgen::connect(raw(target.clone(), Mode::Open { rate: 40.0 }))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let r = open.run(Duration::from_secs(1), None).await;
        assert_eq!(r.total.errors, 0, "{}", r.table());
        assert!((39..=40).contains(&r.total.count), "{}", r.table());
        assert!(
            r.total.p50_ms > 350.0,
            "p50 without the queueing delay: {}",
            r.table()
        );
        assert!(
            r.total.max_ms > 850.0,
            "max without the queueing delay: {}",
            r.table()
        );
        // The closed loop on the same server only sees the 50 ms service time.
        let closed = Loadgen::connect(raw(target, Mode::Closed { concurrency: 1 }))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let r = closed.run(Duration::from_millis(500), None).await;
        assert!(r.total.count >= 5, "{}", r.table());
        assert!(
            r.total.p50_ms >= 45.0 && r.total.p50_ms < 150.0,
            "{}",
            r.table()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn thinking_customers_ask_once_per_think_time() {
        let app = axum::Router::new().route("/slow", get(|| async { "done" }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("bind: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("addr: {e}"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        let mode = Mode::Customers {
            customers: 40,
            think: Duration::from_millis(200),
        };
        let options = LoadOptions {
            max_in_flight: 64,
            ..raw(format!("http://{addr}"), mode)
        };
        let load = Loadgen::connect(options)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            load.describe(),
            "closed loop, 40 customers thinking 0.2 s between requests; every request GET /slow"
        );
        // 40 customers asking every 0.2 s: 200 requests a second, not the
        // thousands a closed loop without pauses would send.
        let r = load.run(Duration::from_secs(2), None).await;
        assert_eq!(r.total.errors, 0, "{}", r.table());
        assert!(
            (300..=500).contains(&r.total.count),
            "{} requests in 2 s",
            r.total.count
        );
        // Twice the customers, twice the requests.
        let twice = Mode::Customers {
            customers: 80,
            think: Duration::from_millis(200),
        };
        let r = load.run_as(twice, Duration::from_secs(2), None).await;
        assert!(
            (650..=950).contains(&r.total.count),
            "{} requests in 2 s",
            r.total.count
        );
    }

    #[tokio::test]
    async fn bad_options_are_refused_with_what_to_write() {
        let err =
            |o: LoadOptions| async move { Loadgen::connect(o).await.err().unwrap_or_default() };
        let base = raw("http://127.0.0.1:9".into(), Mode::Open { rate: 1.0 });
        let e = err(LoadOptions {
            mode: Mode::Open { rate: 0.0 },
            ..base.clone()
        })
        .await;
        assert!(e.starts_with("--rate 0"), "{e}");
        let e = err(LoadOptions {
            mode: Mode::Closed { concurrency: 0 },
            ..base.clone()
        })
        .await;
        assert!(e.starts_with("--concurrency 0"), "{e}");
        let e = err(LoadOptions {
            mode: Mode::Customers {
                customers: 0,
                think: Duration::from_secs(5),
            },
            ..base.clone()
        })
        .await;
        assert!(e.starts_with("--customers 0"), "{e}");
        let e = err(LoadOptions {
            target: "https://example.com".into(),
            ..base.clone()
        })
        .await;
        assert!(e.contains("https scheme is not supported"), "{e}");
        let e = err(LoadOptions {
            workload: Workload::Raw {
                path: "products/1".into(),
            },
            ..base.clone()
        })
        .await;
        assert!(e.starts_with("--path"), "{e}");
        // Journeys need a shop to discover: nothing listens on port 9.
        let e = err(LoadOptions {
            workload: Workload::Journeys(Mix::default()),
            timeout: Duration::from_secs(2),
            ..base
        })
        .await;
        assert!(
            e.starts_with("cannot reach the shop at http://127.0.0.1:9"),
            "{e}"
        );
    }
}
