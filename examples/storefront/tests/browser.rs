//! The shop in a real browser: Debian's headless chromium, driven through
//! chromedriver over WebDriver (fantoccini). A person's whole visit: sign up,
//! browse a category, search, open a product, add it to the cart, check out, and
//! find the order in the order history.
//!
//! Needs `chromedriver` and `chromium` (Debian's `chromium-driver` and `chromium`;
//! `.ci/run` installs them). Without them the test is skipped with a message, and
//! under `CI` it fails.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use storefront::app::{router, AppConfig, AppState, Passwords};

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
