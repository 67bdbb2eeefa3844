//! The user journeys, over the pages people load: browsing the catalog and product
//! pages, searching, and buying (add to cart, look at the cart, check out, see the
//! order). Redirects (303 after a form) are followed by hand, like a browser does,
//! and forms carry the anti-forgery token of the page they are on (read from its
//! HTML, as a browser sends it; the login and sign-up forms use the token and
//! pre-session cookie of one visit to the login page, see [`FormKey`]).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use rand::Rng;

use super::http::{form_token, Answer, HttpClient};
use super::stats::{Outcome, Recorder, Step};
use super::zipf::ZipfIds;
use storefront_contract::demo::PASSWORD as DEMO_PASSWORD;
use storefront_contract::form::url_encode;

/// What people search for: words and pairs that occur in the seeded catalog's names.
pub const SEARCH_TERMS: &[&str] = &[
    "kettle",
    "red kettle",
    "novel",
    "blue novel",
    "headphones",
    "wireless headphones",
    "vintage",
    "teapot",
    "planter",
    "cookbook",
    "portable speaker",
    "green",
    "keyboard",
    "atlas",
    "knife",
    "watering can",
];

/// A kind of visit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Journey {
    /// A catalog page (all products or a category), then one to three product pages.
    Browse,
    /// A search, then one product page.
    Search,
    /// A product page, add it to the cart, the cart, checkout, the order page (as a
    /// signed-in customer).
    Buy,
}

/// The share of each journey, as weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mix {
    /// Weight of [`Journey::Browse`].
    pub browse: u32,
    /// Weight of [`Journey::Search`].
    pub search: u32,
    /// Weight of [`Journey::Buy`].
    pub buy: u32,
}

impl Default for Mix {
    /// Browse 70%, search 15%, cart and checkout 15%.
    fn default() -> Self {
        Self {
            browse: 70,
            search: 15,
            buy: 15,
        }
    }
}

impl std::str::FromStr for Mix {
    type Err = String;

    /// `browse,search,buy` weights, like `70,15,15`.
    fn from_str(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split(',').map(str::trim).collect();
        let bad = || format!("--mix {s:?}: give three weights browse,search,buy, like 70,15,15");
        let [b, q, c] = parts.as_slice() else {
            return Err(bad());
        };
        let n = |v: &str| v.parse::<u32>().map_err(|_| bad());
        let mix = Self {
            browse: n(b)?,
            search: n(q)?,
            buy: n(c)?,
        };
        if u64::from(mix.browse) + u64::from(mix.search) + u64::from(mix.buy) == 0 {
            return Err(format!("--mix {s:?}: at least one weight must be above 0"));
        }
        Ok(mix)
    }
}

impl std::fmt::Display for Mix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let total = f64::from(self.browse) + f64::from(self.search) + f64::from(self.buy);
        let pct = |w: u32| 100.0 * f64::from(w) / total.max(1.0);
        write!(
            f,
            "browse {:.0}%, search {:.0}%, cart and checkout {:.0}%",
            pct(self.browse),
            pct(self.search),
            pct(self.buy)
        )
    }
}

impl Mix {
    /// Draws a journey by weight.
    pub fn pick<R: Rng + ?Sized>(&self, rng: &mut R) -> Journey {
        let (browse, search) = (u64::from(self.browse), u64::from(self.search));
        let total = browse + search + u64::from(self.buy);
        let x = rng.random_range(0..total.max(1));
        if x < browse {
            Journey::Browse
        } else if x < browse + search {
            Journey::Search
        } else {
            Journey::Buy
        }
    }
}

/// What the journeys know about the shop, and the customers' sessions.
#[derive(Debug)]
pub struct Shop {
    /// Product ids with their popularity.
    pub products: ZipfIds,
    /// Category slugs.
    pub categories: Vec<String>,
    /// Session cookies of customers not in a journey now.
    pub sessions: Mutex<Vec<String>>,
    /// Names new customers apart from earlier runs.
    pub run_id: u64,
    /// Customers signed up so far by this run.
    pub signups: AtomicU64,
    /// What the login and sign-up forms are sent with.
    pub anonymous: FormKey,
}

/// What a form sent before signing in needs, as a browser has it after loading
/// the login page: the cookies that page set (the pre-session cookie) and the
/// token in its form.
#[derive(Clone, Debug, Default)]
pub struct FormKey {
    /// The `Cookie` header value.
    pub cookie: String,
    /// The form's `csrf` field.
    pub token: String,
}

impl FormKey {
    /// Loads the login page and keeps its cookies and token.
    pub async fn fetch(http: &HttpClient) -> Result<Self, String> {
        let page = http.get("/login", None).await?;
        if page.status != 200 {
            return Err(format!("GET /login answered {}", page.status));
        }
        let token = form_token(&page.body)
            .ok_or_else(|| "the login page has no anti-forgery token in its form".to_owned())?;
        Ok(Self {
            cookie: page.cookies.join("; "),
            token,
        })
    }

    fn cookie(&self) -> Option<&str> {
        (!self.cookie.is_empty()).then_some(self.cookie.as_str())
    }
}

/// Logs in `email`, else signs up a customer with it; returns the session cookie.
pub async fn log_in_or_sign_up(
    http: &HttpClient,
    key: &FormKey,
    email: &str,
) -> Result<String, String> {
    let form = format!(
        "email={}&password={}&csrf={}",
        url_encode(email),
        url_encode(DEMO_PASSWORD),
        key.token
    );
    let answer = http.post_form("/login", key.cookie(), form).await?;
    if let (303, Some(cookie)) = (answer.status, answer.session) {
        return Ok(cookie);
    }
    sign_up(http, key, email).await
}

fn sign_up_form(key: &FormKey, email: &str) -> String {
    format!(
        "name=Load+Tester&email={}&password={}&csrf={}",
        url_encode(email),
        url_encode(DEMO_PASSWORD),
        key.token
    )
}

async fn sign_up(http: &HttpClient, key: &FormKey, email: &str) -> Result<String, String> {
    let answer = http
        .post_form("/signup", key.cookie(), sign_up_form(key, email))
        .await?;
    match (answer.status, answer.session) {
        (303, Some(cookie)) => Ok(cookie),
        (429, _) => Err(format!(
            "cannot sign up {email}: status 429: the shop limits sign-in attempts per client \
             address; for a load test from one address raise `attempts_per_address` in the \
             stage file's [auth] section"
        )),
        (status, _) => Err(format!("cannot sign up {email}: status {status}")),
    }
}

/// Runs journeys against one target and records them.
#[derive(Debug)]
pub struct Runner<'a> {
    http: &'a HttpClient,
    rec: &'a Recorder,
    sent: AtomicU32,
}

impl<'a> Runner<'a> {
    /// A runner sending with `http` and recording into `rec`.
    pub fn new(http: &'a HttpClient, rec: &'a Recorder) -> Self {
        Self {
            http,
            rec,
            sent: AtomicU32::new(0),
        }
    }

    /// Requests sent so far (answered or failed).
    pub fn sent(&self) -> u32 {
        self.sent.load(Ordering::Relaxed)
    }

    fn finish(
        &self,
        step: Step,
        intended: Instant,
        result: Result<Answer, String>,
        ok: u16,
    ) -> Option<Answer> {
        self.sent.fetch_add(1, Ordering::Relaxed);
        let done = Instant::now();
        match result {
            Ok(a) if a.status == ok => {
                self.rec.record(step, intended, done, Outcome::Ok);
                Some(a)
            }
            Ok(a) if step == Step::Checkout && a.status == 409 => {
                self.rec.record(step, intended, done, Outcome::SoldOut);
                Some(a)
            }
            Ok(a) => {
                let kind = format!("status {} on {}", a.status, step.name());
                self.rec.record(step, intended, done, Outcome::Error(kind));
                None
            }
            Err(e) => {
                let kind = format!("{e} on {}", step.name());
                self.rec.record(step, intended, done, Outcome::Error(kind));
                None
            }
        }
    }

    async fn get(
        &self,
        step: Step,
        intended: Instant,
        path: &str,
        session: Option<&str>,
    ) -> Option<Answer> {
        let result = self.http.get(path, session).await;
        self.finish(step, intended, result, 200)
    }

    async fn post(
        &self,
        step: Step,
        path: &str,
        session: Option<&str>,
        form: String,
    ) -> Option<Answer> {
        let intended = Instant::now();
        let result = self.http.post_form(path, session, form).await;
        self.finish(step, intended, result, 303)
    }

    /// One request to a fixed path, expecting 200.
    pub async fn raw(&self, path: &str, intended: Instant) {
        let _ = self.get(Step::Raw, intended, path, None).await;
    }

    /// One journey. Its first request counts from `intended` (the time the open
    /// loop meant to start it); each later request from when it was sent, as a
    /// person clicks on only after the page before arrived.
    pub async fn journey<R: Rng + Send>(
        &self,
        shop: &Shop,
        journey: Journey,
        intended: Instant,
        rng: &mut R,
    ) {
        match journey {
            Journey::Browse => {
                let path = if !shop.categories.is_empty() && rng.random_bool(0.7) {
                    let i = rng.random_range(0..shop.categories.len());
                    format!("/?category={}", url_encode(&shop.categories[i]))
                } else {
                    "/".to_owned()
                };
                if self
                    .get(Step::Catalog, intended, &path, None)
                    .await
                    .is_none()
                {
                    return;
                }
                for _ in 0..rng.random_range(1..=3) {
                    let id = shop.products.sample(rng);
                    let path = format!("/products/{id}");
                    if self
                        .get(Step::Product, Instant::now(), &path, None)
                        .await
                        .is_none()
                    {
                        return;
                    }
                }
            }
            Journey::Search => {
                let term = SEARCH_TERMS[rng.random_range(0..SEARCH_TERMS.len())];
                let path = format!("/search?q={}", url_encode(term));
                if self
                    .get(Step::Search, intended, &path, None)
                    .await
                    .is_none()
                {
                    return;
                }
                let id = shop.products.sample(rng);
                let _ = self
                    .get(
                        Step::Product,
                        Instant::now(),
                        &format!("/products/{id}"),
                        None,
                    )
                    .await;
            }
            Journey::Buy => self.buy(shop, intended, rng).await,
        }
    }

    async fn buy<R: Rng + Send>(&self, shop: &Shop, intended: Instant, rng: &mut R) {
        let pooled = match shop.sessions.lock() {
            Ok(mut s) => s.pop(),
            Err(poisoned) => poisoned.into_inner().pop(),
        };
        // Every known customer is in a journey: a new one signs up.
        let (session, intended) = match pooled {
            Some(s) => (s, intended),
            None => {
                let n = shop.signups.fetch_add(1, Ordering::Relaxed);
                let email = format!("lg-{:x}-{n}@example.com", shop.run_id);
                let form = sign_up_form(&shop.anonymous, &email);
                let result = self
                    .http
                    .post_form("/signup", shop.anonymous.cookie(), form)
                    .await;
                match self.finish(Step::Signup, intended, result, 303) {
                    Some(Answer {
                        session: Some(s), ..
                    }) => (s, Instant::now()),
                    _ => return,
                }
            }
        };
        // A failed step has been recorded; the journey just stops there.
        let _ = self.buy_as(shop, &session, intended, rng).await;
        match shop.sessions.lock() {
            Ok(mut s) => s.push(session),
            Err(poisoned) => poisoned.into_inner().push(session),
        }
    }

    async fn buy_as<R: Rng + Send>(
        &self,
        shop: &Shop,
        session: &str,
        intended: Instant,
        rng: &mut R,
    ) -> Option<()> {
        let id = shop.products.sample(rng);
        let page = self
            .get(
                Step::Product,
                intended,
                &format!("/products/{id}"),
                Some(session),
            )
            .await?;
        // A sold-out product's page has no buy form: the logout form's token is the
        // session's all the same.
        let token = form_token(&page.body).unwrap_or_default();
        self.post(
            Step::CartAdd,
            "/cart/add",
            Some(session),
            format!("product_id={id}&quantity=1&csrf={token}"),
        )
        .await?;
        let cart = self
            .get(Step::Cart, Instant::now(), "/cart", Some(session))
            .await?;
        let token = form_token(&cart.body).unwrap_or_default();
        let placed = self
            .post(
                Step::Checkout,
                "/checkout",
                Some(session),
                format!("csrf={token}"),
            )
            .await?;
        match (placed.status, placed.location) {
            (303, Some(order)) if order.starts_with('/') => {
                // Stage 5: with the checkout's WAL position, as a browser sends it.
                let cookie = match &placed.wal {
                    Some(wal) => format!("{session}; {wal}"),
                    None => session.to_owned(),
                };
                self.get(Step::Order, Instant::now(), &order, Some(&cookie))
                    .await?;
            }
            (303, other) => {
                let kind = format!("checkout redirected to {other:?}");
                let now = Instant::now();
                self.rec.record(Step::Order, now, now, Outcome::Error(kind));
            }
            // Sold out: empty the cart so the next journey starts afresh (the
            // answer is the cart page again, with its forms' token).
            _ => {
                let token = form_token(&placed.body).unwrap_or_default();
                self.post(
                    Step::CartClear,
                    "/cart/update",
                    Some(session),
                    format!("product_id={id}&quantity=0&csrf={token}"),
                )
                .await?;
            }
        }
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn the_mix_gives_each_journey_its_share() {
        let mix = Mix::default();
        let mut rng = rand::rngs::SmallRng::seed_from_u64(1);
        let n = 200_000u32;
        let mut counts = [0u32; 3];
        for _ in 0..n {
            counts[match mix.pick(&mut rng) {
                Journey::Browse => 0,
                Journey::Search => 1,
                Journey::Buy => 2,
            }] += 1;
        }
        let share = |c: u32| f64::from(c) / f64::from(n);
        assert!((share(counts[0]) - 0.70).abs() < 0.01, "{counts:?}");
        assert!((share(counts[1]) - 0.15).abs() < 0.01, "{counts:?}");
        assert!((share(counts[2]) - 0.15).abs() < 0.01, "{counts:?}");
        let only_search: Mix = "0,1,0".parse().unwrap_or_default();
        assert_eq!(only_search.pick(&mut rng), Journey::Search);
        assert_eq!(
            mix.to_string(),
            "browse 70%, search 15%, cart and checkout 15%"
        );
    }

    #[test]
    fn mix_parsing_says_what_to_write() {
        assert_eq!("60, 20 ,20".parse::<Mix>().ok().map(|m| m.buy), Some(20));
        for bad in ["70,15", "a,b,c", "0,0,0", "1,2,3,4", "-1,1,1"] {
            let err = bad.parse::<Mix>().err().unwrap_or_default();
            assert!(err.starts_with("--mix"), "{bad}: {err}");
        }
    }
}
