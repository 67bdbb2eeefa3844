//! App instance processes for tests (the built `storefront` binary), killed when
//! dropped, and a small HTTP client with a deadline on every request.

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// A loopback address with a port that was free a moment ago.
pub fn free_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    listener.local_addr().expect("local addr")
}

/// App instances started from a stage file; killed (and reaped) on drop.
pub struct Instances {
    pub children: Vec<Option<Child>>,
    pub addrs: Vec<SocketAddr>,
    pub dir: tempfile::TempDir,
}

impl Instances {
    /// Starts `n` instances of `storefront instance --config <stage_toml>`.
    pub fn start(stage_toml: &str, n: usize) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("stage.toml");
        std::fs::write(&config, stage_toml).expect("write stage file");
        let mut me = Self {
            children: Vec::new(),
            addrs: Vec::new(),
            dir,
        };
        for k in 1..=n {
            let addr = free_addr();
            let child = Command::new(env!("CARGO_BIN_EXE_storefront"))
                .arg("instance")
                .arg("--config")
                .arg(&config)
                .arg("--data-dir")
                .arg(me.dir.path())
                .arg("--number")
                .arg(k.to_string())
                .arg("--addr")
                .arg(addr.to_string())
                .env("RUST_LOG", "warn,sqlx=error")
                .stdout(Stdio::null())
                .spawn()
                .expect("start an instance");
            me.children.push(Some(child));
            me.addrs.push(addr);
        }
        me
    }

    /// `kill -9` instance `index` (from 0).
    pub fn kill(&mut self, index: usize) {
        if let Some(mut child) = self.children[index].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Instances {
    fn drop(&mut self) {
        for i in 0..self.children.len() {
            self.kill(i);
        }
    }
}

/// A reply, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// An HTTP/1 client; every request must complete within 10 s.
#[derive(Clone)]
pub struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Default for Http {
    fn default() -> Self {
        Self {
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }
}

impl Http {
    /// Sends a request; `Err` for a transport failure.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<serde_json::Value>,
    ) -> Result<Reply, String> {
        let mut req = Request::builder().method(method).uri(url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let body = match body {
            Some(json) => {
                req = req.header("content-type", "application/json");
                Bytes::from(json.to_string())
            }
            None => Bytes::new(),
        };
        let req = req.body(Full::new(body)).map_err(|e| e.to_string())?;
        let fut = async {
            let resp = self.client.request(req).await.map_err(|e| e.to_string())?;
            let (parts, body) = resp.into_parts();
            let bytes = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
            Ok(Reply {
                status: parts.status,
                headers: parts.headers,
                body: String::from_utf8_lossy(&bytes).into_owned(),
            })
        };
        tokio::time::timeout(Duration::from_secs(10), fut)
            .await
            .unwrap_or_else(|_| panic!("{url}: no answer within 10 s"))
    }

    pub async fn get(&self, url: &str) -> Result<Reply, String> {
        self.send(Method::GET, url, &[], None).await
    }
}
