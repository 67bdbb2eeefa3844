//! Live sources: a watched file (tokio paused time), the HTTP poller against a
//! loopback server started here, and Redis (`SCALEKIT_REDIS_URL`).
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![cfg(any(feature = "watch", feature = "http", feature = "redis"))]

use scalekit_flags::{Context, Event, Flags};
use std::sync::{Arc, Mutex};

fn recording() -> (Flags, Arc<Mutex<Vec<Event>>>) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let flags = Flags::builder()
        .on_event(move |e| sink.lock().unwrap().push(e.clone()))
        .build();
    (flags, events)
}

fn state(name: &str) -> String {
    format!(r#"{{"version":2,"features":[{{"name":"{name}","enabled":true,"strategies":[]}}]}}"#)
}

fn temp_dir(tag: &str) -> std::path::PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let d = std::env::temp_dir().join(format!(
        "scalekit-flags-{tag}-{}-{nanos}",
        std::process::id()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[cfg(feature = "watch")]
#[tokio::test(start_paused = true)]
async fn watched_file_reloads_on_change_and_keeps_the_last_good_state() {
    use std::time::Duration;
    let dir = temp_dir("watch");
    let path = dir.join("flags.json");
    std::fs::write(&path, state("one")).unwrap();
    let (flags, events) = recording();
    let task = scalekit_flags::sources::watch_file(flags.clone(), &path, Duration::from_secs(1));
    let ctx = Context::new();
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(flags.is_enabled("one", &ctx));
    assert_eq!(flags.version(), 1);

    // Unchanged content is not re-applied.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(flags.version(), 1);

    std::fs::write(&path, "{\"features\": [ {\"name\": 1} ]}").unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        flags.is_enabled("one", &ctx),
        "a bad file must not replace the good state"
    );
    assert!(events
        .lock()
        .unwrap()
        .iter()
        .any(|e| matches!(e, Event::Rejected { .. })));

    std::fs::write(&path, state("two")).unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(flags.is_enabled("two", &ctx) && !flags.is_enabled("one", &ctx));

    std::fs::remove_file(&path).unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(flags.is_enabled("two", &ctx));
    let failed = events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| matches!(e, Event::SourceFailed { .. }))
        .count();
    assert_eq!(
        failed, 1,
        "a missing file is reported once, not every second"
    );
    task.abort();
    std::fs::remove_dir_all(&dir).ok();
}

#[cfg(feature = "http")]
mod http {
    use super::*;
    use scalekit_flags::sources::{FeaturesApi, FetchOutcome, HttpPoller};
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A loopback HTTP/1.1 server that answers each request with the next scripted
    /// response and records the request heads. It stops after the script.
    async fn server(
        script: Vec<(u16, Option<&'static str>, String)>,
    ) -> (String, Arc<Mutex<Vec<String>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            for (status, etag, body) in script {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let mut buf = vec![0u8; 8192];
                let mut n = 0;
                while !buf[..n].windows(4).any(|w| w == b"\r\n\r\n") && n < buf.len() {
                    match sock.read(&mut buf[n..]).await {
                        Ok(0) | Err(_) => break,
                        Ok(k) => n += k,
                    }
                }
                log.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&buf[..n]).to_lowercase());
                let reason = match status {
                    200 => "OK",
                    304 => "Not Modified",
                    _ => "Error",
                };
                let mut resp = format!(
                    "HTTP/1.1 {status} {reason}\r\nconnection: close\r\ncontent-length: {}\r\n",
                    body.len()
                );
                if let Some(e) = etag {
                    resp.push_str(&format!("etag: {e}\r\n"));
                }
                resp.push_str("\r\n");
                resp.push_str(&body);
                let _ = sock.write_all(resp.as_bytes()).await;
                let _ = sock.shutdown().await;
            }
        });
        (format!("http://{addr}"), seen)
    }

    /// One scripted conversation with the server, walked in order (each step
    /// depends on the state the one before left), so it stays one function.
    #[tokio::test]
    async fn etag_errors_and_bootstrap() {
        tokio::time::timeout(Duration::from_secs(20), async {
            let (url, seen) = server(vec![
                (200, Some("\"v1\""), state("one")),
                (304, None, String::new()),
                (500, None, "boom".into()),
                (200, Some("\"v3\""), "{ not json".into()),
                (200, Some("\"v4\""), state("four")),
            ])
            .await;
            let dir = temp_dir("http");
            let boot = dir.join("bootstrap.json");
            let (flags, events) = recording();
            let mut poller = HttpPoller::builder(&url)
                .token("secret")
                .app_name("shop")
                .bootstrap(&boot)
                .api(FeaturesApi::Full)
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap();
            let ctx = Context::new();

            assert_eq!(
                poller.fetch_once(&flags).await.unwrap(),
                FetchOutcome::Updated(1)
            );
            assert!(flags.is_enabled("one", &ctx));
            assert_eq!(poller.etag(), Some("\"v1\""));
            assert_eq!(
                std::fs::read_to_string(&boot).unwrap(),
                state("one"),
                "the last good state is kept on disk"
            );

            assert_eq!(
                poller.fetch_once(&flags).await.unwrap(),
                FetchOutcome::NotModified
            );
            assert!(poller.fetch_once(&flags).await.is_err());
            assert!(poller.fetch_once(&flags).await.is_err());
            assert!(
                flags.is_enabled("one", &ctx),
                "failures keep the last good state"
            );
            assert_eq!(
                poller.etag(),
                Some("\"v1\""),
                "a rejected body does not move the ETag"
            );
            assert_eq!(
                poller.fetch_once(&flags).await.unwrap(),
                FetchOutcome::Updated(2)
            );
            assert!(flags.is_enabled("four", &ctx));

            let heads = seen.lock().unwrap().clone();
            assert!(
                heads[0].starts_with("get /api/client/features "),
                "{}",
                heads[0]
            );
            assert!(
                heads[0].contains("authorization: secret")
                    && heads[0].contains("unleash-appname: shop")
            );
            assert!(!heads[0].contains("if-none-match"));
            assert!(heads[1].contains("if-none-match: \"v1\""));
            let ev = events.lock().unwrap().clone();
            assert_eq!(
                ev.iter()
                    .filter(|e| matches!(e, Event::SourceFailed { .. }))
                    .count(),
                1
            );
            assert_eq!(
                ev.iter()
                    .filter(|e| matches!(e, Event::Rejected { .. }))
                    .count(),
                1
            );

            // A restart while the server is down serves the bootstrap file.
            let (fresh, events) = recording();
            let down = {
                let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
                format!("http://{}", l.local_addr().unwrap())
            };
            let task = HttpPoller::builder(down)
                .bootstrap(&boot)
                .interval(Duration::from_secs(1))
                .send_metrics(false)
                .build()
                .unwrap()
                .spawn(fresh.clone());
            for _ in 0..200 {
                if events
                    .lock()
                    .unwrap()
                    .iter()
                    .any(|e| matches!(e, Event::SourceFailed { .. }))
                {
                    break;
                }
                tokio::task::yield_now().await;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            assert!(
                fresh.is_enabled("four", &ctx),
                "bootstrap state serves while the server is unreachable"
            );
            assert!(events
                .lock()
                .unwrap()
                .iter()
                .any(|e| matches!(e, Event::SourceFailed { .. })));
            task.abort();
            std::fs::remove_dir_all(&dir).ok();
        })
        .await
        .expect("the HTTP test is bounded");
    }
}

#[cfg(feature = "redis")]
mod redis_source {
    use super::*;
    use scalekit_core::redis::{RedisOptions, RedisTarget};
    use scalekit_flags::sources::RedisSource;
    use std::time::Duration;

    async fn until(what: &str, mut f: impl FnMut() -> bool) {
        for _ in 0..500 {
            if f() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("timed out waiting for {what}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_processes_share_live_config_through_redis() {
        let test = "two_processes_share_live_config_through_redis";
        if let Some(url) = scalekit_test_support::services::redis_url(test) {
            share_live_config(&url).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_processes_share_live_config_through_a_redis_cluster() {
        let test = "two_processes_share_live_config_through_a_redis_cluster";
        if let Some(urls) = scalekit_test_support::services::redis_cluster_urls(test) {
            share_live_config(&urls).await;
        }
    }

    async fn share_live_config(url: &str) {
        let target: RedisTarget = url.parse().unwrap();
        let options = RedisOptions::new(Duration::from_secs(2));
        let mut con =
            match tokio::time::timeout(Duration::from_secs(5), target.connect(&options)).await {
                Ok(Ok(c)) => c,
                other => {
                    let msg = format!("Redis at {url} is unreachable: {other:?}");
                    if std::env::var_os("CI").is_some() {
                        panic!("{msg}");
                    }
                    eprintln!("skipped: {msg}");
                    return;
                }
            };
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let key = format!("scalekit-test:{}:{nanos}:flags", std::process::id());
        let source = RedisSource::builder(url, &key).build().unwrap();
        let (a, a_events) = recording();
        let (b, _) = recording();
        let ta = source.clone().spawn(a.clone());
        let tb = source.clone().spawn(b.clone());
        let ctx = Context::new();

        tokio::time::timeout(Duration::from_secs(20), async {
            // Wait for both subscriptions: a publish before them would be missed by
            // the notification but is still read on subscribe.
            source.publish(&state("one")).await.unwrap();
            until("both stores to load v1", || {
                a.is_enabled("one", &ctx) && b.is_enabled("one", &ctx)
            })
            .await;

            source.publish("[flags.two]\n").await.unwrap();
            until("both stores to load the TOML state", || {
                a.is_enabled("two", &ctx) && b.is_enabled("two", &ctx)
            })
            .await;

            // publish refuses a bad state before it reaches Redis.
            assert!(source.publish("{\"features\": 5}").await.is_err());
            // A bad state written behind its back is rejected by every reader.
            let _: () = redis::cmd("SET")
                .arg(&key)
                .arg("{\"features\": 5}")
                .query_async(&mut con)
                .await
                .unwrap();
            let _: () = con
                .publish_cmd(&format!("{key}:changed"), "x")
                .query_async(&mut con.clone())
                .await
                .unwrap();
            until("the bad state to be rejected", || {
                a_events
                    .lock()
                    .unwrap()
                    .iter()
                    .any(|e| matches!(e, Event::Rejected { .. }))
            })
            .await;
            assert!(a.is_enabled("two", &ctx) && b.is_enabled("two", &ctx));
        })
        .await
        .expect("the Redis test is bounded");
        ta.abort();
        tb.abort();
        let _: () = redis::cmd("DEL")
            .arg(&key)
            .query_async(&mut con)
            .await
            .unwrap();
    }
}
