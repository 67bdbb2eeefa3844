//! What a run measured: a latency histogram per journey step, outcomes, and
//! completions per second, turned into a [`Report`] and a table.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// A step of a journey: one kind of request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Step {
    /// `GET /` or `GET /?category=slug`.
    Catalog,
    /// `GET /products/{id}`.
    Product,
    /// `GET /search?q=...`.
    Search,
    /// `POST /signup` (a new customer, when every known account is busy).
    Signup,
    /// `POST /cart/add`.
    CartAdd,
    /// `GET /cart`.
    Cart,
    /// `POST /checkout`.
    Checkout,
    /// `GET /orders/{id}` after checkout.
    Order,
    /// `POST /cart/update` with quantity 0, after a sold-out checkout.
    CartClear,
    /// Raw mode: one fixed path.
    Raw,
}

impl Step {
    /// Every step, in table order.
    pub const ALL: [Step; 10] = [
        Step::Catalog,
        Step::Product,
        Step::Search,
        Step::Signup,
        Step::CartAdd,
        Step::Cart,
        Step::Checkout,
        Step::Order,
        Step::CartClear,
        Step::Raw,
    ];

    /// The route, as shown in tables.
    pub fn name(self) -> &'static str {
        match self {
            Step::Catalog => "GET /",
            Step::Product => "GET /products/{id}",
            Step::Search => "GET /search",
            Step::Signup => "POST /signup",
            Step::CartAdd => "POST /cart/add",
            Step::Cart => "GET /cart",
            Step::Checkout => "POST /checkout",
            Step::Order => "GET /orders/{id}",
            Step::CartClear => "POST /cart/update",
            Step::Raw => "raw",
        }
    }
}

/// How a request ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The expected answer.
    Ok,
    /// A checkout refused because an item sold out (409): the shop working as it
    /// should under Zipf demand, counted apart, not as an error.
    SoldOut,
    /// Anything else: a transport error, a timeout or an unexpected status; the
    /// text says which.
    Error(String),
}

/// Latencies are recorded in microseconds, from 1 µs to 10 minutes, 3 digits.
#[allow(clippy::expect_used)] // constant bounds that hdrhistogram accepts
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

#[derive(Debug)]
struct StepCells {
    latency: Histogram<u64>,
    errors: u64,
    sold_out: u64,
}

#[derive(Debug)]
struct Inner {
    steps: BTreeMap<Step, StepCells>,
    /// Per second of the window: (completed, errors).
    timeline: Vec<(u64, u64)>,
    error_kinds: BTreeMap<String, u64>,
    completed: u64,
    failed: u64,
}

/// Collects samples whose intended send time falls in the measured window.
#[derive(Debug)]
pub struct Recorder {
    start: Instant,
    end: Instant,
    inner: Mutex<Inner>,
}

impl Recorder {
    /// A recorder for requests intended in `[start, start + length)`.
    pub fn new(start: Instant, length: Duration) -> Self {
        Self {
            start,
            end: start + length,
            inner: Mutex::new(Inner {
                steps: BTreeMap::new(),
                timeline: vec![(0, 0); length.as_secs_f64().ceil() as usize],
                error_kinds: BTreeMap::new(),
                completed: 0,
                failed: 0,
            }),
        }
    }

    /// The window's end.
    pub fn end(&self) -> Instant {
        self.end
    }

    /// Records one request intended at `intended` that finished at `done`. The
    /// latency counts from the intended time: in an open loop that includes any
    /// time the request waited because the server was behind (the coordinated
    /// omission correction).
    pub fn record(&self, step: Step, intended: Instant, done: Instant, outcome: Outcome) {
        if intended < self.start || intended >= self.end {
            return;
        }
        let micros = done.saturating_duration_since(intended).as_micros();
        let micros = u64::try_from(micros).unwrap_or(u64::MAX).max(1);
        let second = done.saturating_duration_since(self.start).as_secs() as usize;
        let mut inner = match self.inner.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let cells = inner.steps.entry(step).or_insert_with(|| StepCells {
            latency: histogram(),
            errors: 0,
            sold_out: 0,
        });
        cells.latency.saturating_record(micros);
        let failed = match outcome {
            Outcome::Ok => false,
            Outcome::SoldOut => {
                cells.sold_out += 1;
                false
            }
            Outcome::Error(kind) => {
                cells.errors += 1;
                *inner.error_kinds.entry(kind).or_insert(0) += 1;
                true
            }
        };
        if failed {
            inner.failed += 1;
        } else {
            inner.completed += 1;
        }
        // A request that ends after the window (while draining) counts in its last
        // second, so the timeline adds up to the total.
        let last = inner.timeline.len().saturating_sub(1);
        if let Some(slot) = inner.timeline.get_mut(second.min(last)) {
            slot.0 += 1;
            slot.1 += u64::from(failed);
        }
    }

    /// Requests recorded so far: (finished well, failed).
    pub fn progress(&self) -> (u64, u64) {
        let inner = match self.inner.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        (inner.completed, inner.failed)
    }

    /// The figures, over a window of `seconds`.
    pub fn report(&self, seconds: f64) -> Report {
        let inner = match self.inner.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut all = histogram();
        let mut steps = Vec::new();
        let (mut errors, mut sold_out) = (0, 0);
        for (step, cells) in &inner.steps {
            let _ = all.add(&cells.latency);
            errors += cells.errors;
            sold_out += cells.sold_out;
            steps.push(Row::from_histogram(
                step.name(),
                &cells.latency,
                cells.errors,
                cells.sold_out,
                seconds,
            ));
        }
        Report {
            total: Row::from_histogram("all", &all, errors, sold_out, seconds),
            steps,
            seconds,
            timeline: inner.timeline.clone(),
            error_kinds: inner.error_kinds.clone().into_iter().collect(),
        }
    }
}

/// One line of the results table.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// The route (or `all`).
    pub name: String,
    /// Requests, errors included.
    pub count: u64,
    /// Requests that failed.
    pub errors: u64,
    /// Checkouts refused because an item sold out (not errors).
    pub sold_out: u64,
    /// Latency percentiles and maximum, in milliseconds.
    pub p50_ms: f64,
    /// 90th percentile, ms.
    pub p90_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// Slowest, ms.
    pub max_ms: f64,
    /// Mean, ms.
    pub mean_ms: f64,
    /// Requests per second over the window.
    pub rps: f64,
}

impl Row {
    fn from_histogram(
        name: &str,
        h: &Histogram<u64>,
        errors: u64,
        sold_out: u64,
        seconds: f64,
    ) -> Self {
        let ms = |q: f64| h.value_at_quantile(q) as f64 / 1_000.0;
        Self {
            name: name.to_owned(),
            count: h.len(),
            errors,
            sold_out,
            p50_ms: ms(0.5),
            p90_ms: ms(0.9),
            p99_ms: ms(0.99),
            max_ms: h.max() as f64 / 1_000.0,
            mean_ms: if h.is_empty() {
                0.0
            } else {
                h.mean() / 1_000.0
            },
            rps: if seconds > 0.0 {
                h.len() as f64 / seconds
            } else {
                0.0
            },
        }
    }
}

/// What a run measured.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    /// One row per step that was taken, in step order.
    pub steps: Vec<Row>,
    /// All requests together.
    pub total: Row,
    /// The measured window, in seconds.
    pub seconds: f64,
    /// Per second of the window: (requests finished, of which failed); those that
    /// finished after the window count in its last second.
    pub timeline: Vec<(u64, u64)>,
    /// Errors by kind (`status 500 on GET /cart`, `timeout on ...`), most common first.
    pub error_kinds: Vec<(String, u64)>,
}

/// A latency in ms for people: 3 significant figures.
pub fn ms(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

impl Report {
    /// The results table, in Markdown (readable as plain text too).
    pub fn table(&self) -> String {
        let mut out = String::from(
            "| route | requests | errors | sold out | p50 ms | p90 ms | p99 ms | max ms | req/s |\n\
             | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
        );
        for row in self.steps.iter().chain(std::iter::once(&self.total)) {
            let bold = row.name == "all";
            let name = if bold {
                "**all**".to_owned()
            } else {
                format!("`{}`", row.name)
            };
            out.push_str(&format!(
                "| {name} | {} | {} | {} | {} | {} | {} | {} | {:.0} |\n",
                row.count,
                row.errors,
                row.sold_out,
                ms(row.p50_ms),
                ms(row.p90_ms),
                ms(row.p99_ms),
                ms(row.max_ms),
                row.rps
            ));
        }
        if !self.error_kinds.is_empty() {
            let mut kinds = self.error_kinds.clone();
            kinds.sort_by_key(|k| std::cmp::Reverse(k.1));
            out.push_str("\nErrors: ");
            let shown: Vec<String> = kinds
                .iter()
                .take(5)
                .map(|(k, n)| format!("{n} × {k}"))
                .collect();
            out.push_str(&shown.join("; "));
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_window_is_recorded_and_latency_counts_from_the_intended_time() {
        let t0 = Instant::now();
        let rec = Recorder::new(t0, Duration::from_secs(2));
        let ms = Duration::from_millis;
        // Before the window: ignored.
        rec.record(Step::Product, t0 - ms(5), t0, Outcome::Ok);
        rec.record(Step::Product, t0, t0 + ms(10), Outcome::Ok);
        rec.record(Step::Product, t0 + ms(100), t0 + ms(1_300), Outcome::Ok);
        rec.record(Step::Checkout, t0 + ms(200), t0 + ms(220), Outcome::SoldOut);
        rec.record(
            Step::Cart,
            t0 + ms(300),
            t0 + ms(301),
            Outcome::Error("status 500".into()),
        );
        // Meant after the window: ignored.
        rec.record(Step::Product, t0 + ms(2_000), t0 + ms(2_001), Outcome::Ok);
        // Meant in the window, done after it: counted in the last second.
        rec.record(Step::Product, t0 + ms(1_999), t0 + ms(2_500), Outcome::Ok);
        let r = rec.report(2.0);
        assert_eq!(r.total.count, 5);
        assert_eq!((r.total.errors, r.total.sold_out), (1, 1));
        let product = r.steps.iter().find(|s| s.name == "GET /products/{id}");
        let product = product.cloned().unwrap_or_else(|| panic!("{r:?}"));
        assert_eq!(product.count, 3);
        assert!((product.max_ms - 1_200.0).abs() < 2.0, "{product:?}");
        assert!((product.rps - 1.5).abs() < 1e-9);
        assert_eq!(r.timeline, vec![(3, 1), (2, 0)]);
        assert_eq!(r.error_kinds, vec![("status 500".to_owned(), 1)]);
        assert_eq!(rec.progress(), (4, 1));
    }
}
