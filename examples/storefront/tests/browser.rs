//! The shop in a real browser: Debian's headless chromium, driven through
//! chromedriver over WebDriver (fantoccini). A person's whole visit: sign up,
//! browse a category, search, open a product, add it to the cart, check out, and
//! find the order in the order history.
//!
//! Then forgery: a signed-in victim opens hostile pages served from another port
//! of the shop's host (the same site) and from another site (`localhost` against
//! the shop's `127.0.0.1`); they submit forms and send `fetch()` requests to add
//! to the cart, check out, sign the victim in as the attacker, and log out. None
//! of it may take effect.
//!
//! Needs `chromedriver` and `chromium` (Debian's `chromium-driver` and `chromium`;
//! `.ci/run` installs them). Without them the tests are skipped with a message, and
//! under `CI` they fail.
//!
//! A test here is one scenario told top to bottom against the real parts; a few
//! run past 100 lines, kept whole so that each step and its check stay together.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use storefront_web::{router, AppConfig, AppState, Passwords};

/// Kills chromedriver (and with it chromium) however the test ends.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts chromedriver and connects a headless chromium session to it.
async fn browser() -> Option<(Client, Driver)> {
    let driver = common::find_program("chromedriver", &["/usr/bin"]);
    let chromium = common::find_program("chromium", &["/usr/bin"]);
    let (Some(driver), Some(chromium)) = (driver, chromium) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "chromium and chromedriver must be installed under CI (.ci/run installs them)"
        );
        eprintln!("skipped: chromium or chromedriver not found (apt-get install chromium chromium-driver)");
        return None;
    };
    let port = common::procs::free_addr().port();
    let child = Command::new(driver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let guard = Driver(child);
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium.display().to_string(),
            "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--disable-gpu", "--window-size=1280,900"],
        }),
    );
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        match ClientBuilder::new(connector)
            .capabilities(caps.clone())
            .connect(&url)
            .await
        {
            Ok(client) => return Some((client, guard)),
            // chromedriver takes a moment to listen.
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("cannot open a chromium session through chromedriver: {e}"),
        }
    }
}

/// Waits (at most 15 s) until the browser's address ends with `needle`: a form
/// submitted by script or a click does not wait for the next page.
async fn arrive(c: &Client, needle: &str) -> Result<(), fantoccini::error::CmdError> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let url = c.current_url().await?;
        if url.as_str().ends_with(needle) {
            return Ok(());
        }
        assert!(
            Instant::now() < deadline,
            "the browser stayed at {url}, expected an address ending with {needle:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits (at most 15 s) for an element of the next page.
async fn appears(c: &Client, css: &str) -> Result<(), fantoccini::error::CmdError> {
    c.wait()
        .at_most(Duration::from_secs(15))
        .for_element(Locator::Css(css))
        .await
        .map(|_| ())
}

async fn text(c: &Client, css: &str) -> String {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no element {css}: {e}"))
        .text()
        .await
        .expect("element text")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_visitor_signs_up_searches_buys_and_finds_the_order() {
    let Some((c, _driver)) = browser().await else {
        return;
    };

    // The shop, in this process, on a port of its own.
    let (store, _dir) = common::sqlite().await;
    let ids = common::catalog(store.as_ref(), 12, 5).await;
    let mut state = AppState::new(store.clone(), AppConfig::default());
    state.passwords = Passwords::fast_insecure();
    let listener = tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .await
        .unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, router(state)).await });

    let visit = async {
        // Sign up.
        c.goto(&format!("{base}/signup")).await?;
        c.form(Locator::Css("form[action='/signup']"))
            .await?
            .set_by_name("name", "Ada")
            .await?
            .set_by_name("email", "ada@example.com")
            .await?
            .set_by_name("password", "correct horse battery")
            .await?
            .submit()
            .await?;
        appears(&c, "span.hello").await?;
        assert!(
            text(&c, "header nav").await.contains("Hi, Ada"),
            "signed in"
        );

        // Browse a category from the sidebar.
        c.find(Locator::LinkText("Toys")).await?.click().await?;
        arrive(&c, "category=toys").await?;
        let heading = text(&c, "section.listing h1").await;
        assert!(heading.contains("Toys"), "category page, got {heading:?}");
        let cards = c.find_all(Locator::Css("li.card")).await?;
        assert_eq!(cards.len(), 6, "six toys in the catalog");

        // Search from the header.
        c.form(Locator::Css("header form.search"))
            .await?
            .set_by_name("q", "blue novel")
            .await?
            .submit()
            .await?;
        arrive(&c, "/search?q=blue+novel").await?;
        let names: Vec<String> = {
            let mut v = Vec::new();
            for e in c.find_all(Locator::Css("li.card .name")).await? {
                v.push(e.text().await?);
            }
            v
        };
        assert_eq!(names.len(), 6, "six blue novels: {names:?}");
        assert!(names.iter().all(|n| n.contains("Blue Novel")));

        // Open one and add two to the cart.
        let wanted = ids[2];
        c.find(Locator::Css(&format!(
            "li.card a[href='/products/{wanted}']"
        )))
        .await?
        .click()
        .await?;
        appears(&c, "article.product").await?;
        let title = text(&c, "article.product h1").await;
        assert!(title.starts_with("Item 3"), "product page, got {title:?}");
        let quantity = c
            .find(Locator::Css("form.buy input[name='quantity']"))
            .await?;
        quantity.clear().await?;
        quantity.send_keys("2").await?;
        c.find(Locator::Css("form.buy button"))
            .await?
            .click()
            .await?;
        arrive(&c, "/cart").await?;
        appears(&c, "table.lines").await?;
        assert!(text(&c, "table.lines tfoot").await.contains("$6.00"));

        // Check out, see the confirmation, then the order in the history.
        c.find(Locator::Css("form.checkout button"))
            .await?
            .click()
            .await?;
        appears(&c, "p.success").await?;
        assert!(text(&c, "p.success").await.contains("order is placed"));
        let order_heading = text(&c, "main h1").await;
        c.find(Locator::LinkText("Orders")).await?.click().await?;
        arrive(&c, "/orders").await?;
        appears(&c, "h1").await?;
        let history = text(&c, "main").await;
        let order_no = order_heading.trim_start_matches("Order ");
        assert!(
            history.contains(order_no) && history.contains("$6.00"),
            "the order {order_no} in the history: {history}"
        );
        Ok::<_, fantoccini::error::CmdError>(())
    };
    let outcome = tokio::time::timeout(Duration::from_secs(120), visit).await;
    let _ = c.close().await;
    server.abort();
    match outcome {
        Ok(result) => result.expect("the visit"),
        Err(_) => panic!("the browser visit did not finish within 120 s"),
    }

    // What the browser did is in the database.
    let product = store.product(ids[2]).await.unwrap().unwrap();
    assert_eq!(product.stock, 3, "two of five sold");
}

/// The shop in this process on `127.0.0.1`, with a victim signed up through the
/// browser and an attacker's account made through the API.
struct Shop {
    base: String,
    store: std::sync::Arc<dyn storefront_storage::Store>,
    product: i64,
    victim: i64,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    _dir: tempfile::TempDir,
}

impl Drop for Shop {
    fn drop(&mut self) {
        self.server.abort();
    }
}

const ATTACKER_EMAIL: &str = "mallory@example.com";
const ATTACKER_PASSWORD: &str = "mallory's own secret";

async fn shop_with_victim(c: &Client) -> Result<Shop, fantoccini::error::CmdError> {
    let (store, dir) = common::sqlite().await;
    let ids = common::catalog(store.as_ref(), 4, 5).await;
    let mut state = AppState::new(store.clone(), AppConfig::default());
    state.passwords = Passwords::fast_insecure();
    let listener = tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .await
        .unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, router(state)).await });

    // The attacker's own account, through the API.
    let attacker = hyper_json_post(
        &format!("{base}/api/signup"),
        &json!({"name": "Mallory", "email": ATTACKER_EMAIL, "password": ATTACKER_PASSWORD}),
    )
    .await;
    assert_eq!(attacker, 201, "the attacker signs up");

    // The victim, through the browser.
    c.goto(&format!("{base}/signup")).await?;
    c.form(Locator::Css("form[action='/signup']"))
        .await?
        .set_by_name("name", "Victoria")
        .await?
        .set_by_name("email", "victoria@example.com")
        .await?
        .set_by_name("password", "victoria's long secret")
        .await?
        .submit()
        .await?;
    appears(c, "span.hello").await?;
    let victim = store
        .user_credentials("victoria@example.com")
        .await
        .unwrap()
        .expect("the victim's account")
        .0
        .id;
    Ok(Shop {
        base,
        store,
        product: ids[0],
        victim,
        server,
        _dir: dir,
    })
}

/// `POST url` with a JSON body; the status.
async fn hyper_json_post(url: &str, body: &serde_json::Value) -> u16 {
    use http_body_util::Full;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build(hyper_util::client::legacy::connect::HttpConnector::new());
    let req = axum::http::Request::post(url)
        .header("content-type", "application/json")
        .body(Full::new(axum::body::Bytes::from(body.to_string())))
        .unwrap();
    client.request(req).await.unwrap().status().as_u16()
}

/// A server of hostile pages on a port of its own: `path -> HTML`.
async fn hostile_server(
    pages: std::collections::HashMap<String, String>,
) -> (u16, tokio::task::JoinHandle<std::io::Result<()>>) {
    let pages = std::sync::Arc::new(pages);
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
        let pages = pages.clone();
        async move {
            match pages.get(uri.path()) {
                Some(html) => axum::response::Html(html.clone()).into_response(),
                None => axum::http::StatusCode::NOT_FOUND.into_response(),
            }
        }
    });
    let listener = tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .await
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    (
        port,
        tokio::spawn(async move { axum::serve(listener, app).await }),
    )
}

use axum::response::IntoResponse as _;

/// A page that submits a form to `action` as soon as it loads; `cookie`, if
/// given, is set on the page's host first (cookies do not keep ports apart).
fn auto_form(action: &str, fields: &[(&str, &str)], cookie: Option<&str>) -> String {
    let inputs: String = fields
        .iter()
        .map(|(n, v)| format!("<input type=\"hidden\" name=\"{n}\" value=\"{v}\">"))
        .collect();
    let toss = cookie
        .map(|c| format!("document.cookie = {};", json!(c)))
        .unwrap_or_default();
    format!(
        "<!doctype html><title>You won!</title><form method=\"post\" action=\"{action}\">{inputs}</form>\
         <script>{toss} document.forms[0].submit();</script>"
    )
}

/// A page that sends each request with `fetch()` (no-cors, with the browser's
/// cookies), one after another, then sets its title to `done`.
fn fetches(requests: &[(String, &str, &str)]) -> String {
    let list: Vec<serde_json::Value> = requests
        .iter()
        .map(|(url, body, content_type)| json!([url, body, content_type]))
        .collect();
    format!(
        "<!doctype html><title>loading</title><script>
(async () => {{
  for (const [url, body, type] of {list}) {{
    const init = {{ method: 'POST', mode: 'no-cors', credentials: 'include' }};
    if (type) init.headers = {{ 'Content-Type': type }};
    if (body) init.body = body;
    try {{ await fetch(url, init); }} catch (e) {{}}
  }}
  document.title = 'done';
}})();
</script>",
        list = serde_json::Value::Array(list)
    )
}

/// The token the shop expects with a form for the browser whose `sf_csrf`
/// cookie is `value`: the hex SHA-256 of a fixed prefix and the value (the
/// derivation is public; knowing it is what a cookie-tossing attacker needs).
fn token_for(value: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new()
        .chain_update(b"storefront csrf v1\0")
        .chain_update(value.as_bytes())
        .finalize();
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Opens a hostile page and waits until what it started is over: the browser is
/// on the shop (a form was submitted) or the page's title says `done`.
async fn attack(c: &Client, page: &str, shop: &str) -> Result<(), fantoccini::error::CmdError> {
    c.goto(page).await?;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let url = c.current_url().await?;
        let ready = c
            .execute("return document.readyState", vec![])
            .await?
            .as_str()
            .map(str::to_owned)
            .unwrap_or_default();
        if url.as_str().starts_with(shop) && ready == "complete" {
            return Ok(());
        }
        if !url.as_str().starts_with(shop) && c.title().await? == "done" {
            return Ok(());
        }
        assert!(
            Instant::now() < deadline,
            "the hostile page {page} did not finish (at {url})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Who the shop's header greets, in the browser.
async fn greeting(c: &Client, shop: &str) -> Result<String, fantoccini::error::CmdError> {
    c.goto(&format!("{shop}/")).await?;
    appears(c, "header nav").await?;
    Ok(text(c, "header nav").await)
}

/// Every forgery against `shop` from pages at `hostile` (`http://host:port`).
async fn forgeries_fail(
    c: &Client,
    shop: &Shop,
    hostile: &str,
    same_site: bool,
) -> Result<(), fantoccini::error::CmdError> {
    let s = &shop.base;
    let product = shop.product.to_string();
    let cart_lines = || async {
        shop.store
            .cart(shop.victim)
            .await
            .unwrap()
            .lines
            .iter()
            .map(|l| l.quantity)
            .sum::<i64>()
    };
    let orders = || async { shop.store.orders(shop.victim).await.unwrap().len() };
    let victim_signed_in = || async {
        let nav = greeting(c, s).await?;
        assert!(
            nav.contains("Hi, Victoria"),
            "the victim is still signed in as themselves (from {hostile}): {nav}"
        );
        Ok::<_, fantoccini::error::CmdError>(())
    };

    // Add to the cart: a form, then fetch() to the page and to the API.
    attack(c, &format!("{hostile}/form/cart-add"), s).await?;
    assert_eq!(
        cart_lines().await,
        0,
        "a form from {hostile} added to the cart"
    );
    attack(c, &format!("{hostile}/fetch/cart-add"), s).await?;
    assert_eq!(
        cart_lines().await,
        0,
        "fetch() from {hostile} added to the cart"
    );

    // The victim puts one in the cart; the attacker tries to check it out.
    c.goto(&format!("{s}/products/{product}")).await?;
    appears(c, "form.buy button").await?;
    c.find(Locator::Css("form.buy button"))
        .await?
        .click()
        .await?;
    arrive(c, "/cart").await?;
    appears(c, "table.lines").await?;
    assert_eq!(cart_lines().await, 1, "the victim's own add");
    attack(c, &format!("{hostile}/form/checkout"), s).await?;
    assert_eq!(orders().await, 0, "a form from {hostile} placed an order");
    attack(c, &format!("{hostile}/fetch/checkout"), s).await?;
    assert_eq!(orders().await, 0, "fetch() from {hostile} placed an order");
    assert_eq!(cart_lines().await, 1, "the cart is as the victim left it");

    // Sign the victim in as the attacker.
    attack(c, &format!("{hostile}/form/login"), s).await?;
    victim_signed_in().await?;
    attack(c, &format!("{hostile}/fetch/login"), s).await?;
    victim_signed_in().await?;
    if same_site {
        // A page on the same host can set the shop's cookies (ports do not
        // separate them): it picks the pre-session cookie and sends its token.
        attack(c, &format!("{hostile}/toss/login"), s).await?;
        victim_signed_in().await?;
    }

    // Log the victim out.
    attack(c, &format!("{hostile}/form/logout"), s).await?;
    victim_signed_in().await?;
    attack(c, &format!("{hostile}/fetch/logout"), s).await?;
    victim_signed_in().await?;
    assert_eq!((cart_lines().await, orders().await), (1, 0));
    Ok(())
}

/// The hostile pages against the shop at `s`.
fn hostile_pages(s: &str, product: &str) -> std::collections::HashMap<String, String> {
    let login = [("email", ATTACKER_EMAIL), ("password", ATTACKER_PASSWORD)];
    let login_body = format!(
        "email={}&password={}",
        ATTACKER_EMAIL.replace('@', "%40"),
        ATTACKER_PASSWORD.replace(' ', "+").replace('\'', "%27")
    );
    let form_type = "application/x-www-form-urlencoded";
    let tossed = "0123456789abcdef0123456789abcdef";
    let tossed_token = token_for(tossed);
    let mut toss_fields = login.to_vec();
    toss_fields.push(("csrf", &tossed_token));
    [
        (
            "/form/cart-add",
            auto_form(
                &format!("{s}/cart/add"),
                &[("product_id", product), ("quantity", "2")],
                None,
            ),
        ),
        (
            "/fetch/cart-add",
            fetches(&[
                (
                    format!("{s}/cart/add"),
                    &format!("product_id={product}&quantity=2"),
                    form_type,
                ),
                (
                    format!("{s}/api/cart/items"),
                    &format!("{{\"product_id\": {product}, \"quantity\": 2}}"),
                    "text/plain",
                ),
            ]),
        ),
        (
            "/form/checkout",
            auto_form(&format!("{s}/checkout"), &[], None),
        ),
        (
            "/fetch/checkout",
            fetches(&[
                (format!("{s}/checkout"), "", form_type),
                (format!("{s}/api/checkout"), "", ""),
            ]),
        ),
        (
            "/form/login",
            auto_form(&format!("{s}/login"), &login, None),
        ),
        (
            "/fetch/login",
            fetches(&[(format!("{s}/login"), &login_body, form_type)]),
        ),
        (
            "/toss/login",
            auto_form(
                &format!("{s}/login"),
                &toss_fields,
                Some(&format!("sf_csrf={tossed}; path=/")),
            ),
        ),
        ("/form/logout", auto_form(&format!("{s}/logout"), &[], None)),
        (
            "/fetch/logout",
            fetches(&[
                (format!("{s}/logout"), "", form_type),
                (format!("{s}/api/logout"), "", ""),
            ]),
        ),
    ]
    .into_iter()
    .map(|(path, html)| (path.to_owned(), html))
    .collect()
}

/// Runs the forgeries from `host` (`127.0.0.1` for the same site, `localhost`
/// for another) in a browser of its own.
async fn forgeries_from(host: &str) {
    let Some((c, _driver)) = browser().await else {
        return;
    };
    let outcome = tokio::time::timeout(Duration::from_secs(180), async {
        let shop = shop_with_victim(&c).await?;
        let (port, hostile_task) =
            hostile_server(hostile_pages(&shop.base, &shop.product.to_string())).await;
        let hostile = format!("http://{host}:{port}");
        let result = forgeries_fail(&c, &shop, &hostile, host == "127.0.0.1").await;
        hostile_task.abort();
        result
    })
    .await;
    let _ = c.close().await;
    match outcome {
        Ok(result) => result.expect("the forgeries"),
        Err(_) => panic!("the forgeries did not finish within 180 s"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_requests_from_another_port_change_nothing() {
    forgeries_from("127.0.0.1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_requests_from_another_site_change_nothing() {
    forgeries_from("localhost").await;
}
