//! A loopback HTTP/1.1 server for the HTTP source's tests: each route answers from
//! its own script (the last reply repeats), unknown routes answer 404, and every
//! request is recorded with its headers, body and (tokio) arrival time.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::time::Instant;

#[derive(Clone, Debug)]
pub(crate) struct Request {
    pub(crate) method: String,
    pub(crate) path: String,
    /// Header names lowercased.
    pub(crate) headers: BTreeMap<String, String>,
    pub(crate) body: String,
    pub(crate) at: Instant,
}

impl Request {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).expect("a JSON body")
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) etag: Option<String>,
    pub(crate) body: String,
}

pub(crate) fn reply(status: u16, body: &str) -> Reply {
    Reply {
        status,
        etag: None,
        body: body.into(),
    }
}

pub(crate) fn with_etag(status: u16, etag: &str, body: &str) -> Reply {
    Reply {
        status,
        etag: Some(etag.into()),
        body: body.into(),
    }
}

#[derive(Clone, Default)]
pub(crate) struct Server {
    pub(crate) url: String,
    routes: Arc<Mutex<HashMap<String, VecDeque<Reply>>>>,
    seen: Arc<Mutex<Vec<Request>>>,
}

impl Server {
    /// Starts the server on 127.0.0.1:0 (it runs until the runtime ends).
    pub(crate) async fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = Server {
            url,
            ..Server::default()
        };
        let s = server.clone();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let s = s.clone();
                tokio::spawn(async move { s.serve(sock).await });
            }
        });
        server
    }

    /// Appends replies to the script of `route` (`"GET /api/client/features"`).
    pub(crate) fn script(&self, route: &str, replies: impl IntoIterator<Item = Reply>) {
        self.routes
            .lock()
            .unwrap()
            .entry(route.to_owned())
            .or_default()
            .extend(replies);
    }

    pub(crate) fn requests(&self) -> Vec<Request> {
        self.seen.lock().unwrap().clone()
    }

    /// The requests to `route` (`"POST /api/client/metrics"`).
    pub(crate) fn to(&self, route: &str) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(|r| format!("{} {}", r.method, r.path) == route)
            .collect()
    }

    fn next(&self, route: &str) -> Reply {
        let mut routes = self.routes.lock().unwrap();
        match routes.get_mut(route) {
            Some(q) if q.len() > 1 => q.pop_front().unwrap(),
            Some(q) if q.len() == 1 => q[0].clone(),
            _ => reply(404, r#"{"name":"NotFoundError"}"#),
        }
    }

    async fn serve(&self, mut sock: tokio::net::TcpStream) {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            match sock.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let mut lines = head.lines();
        let first = lines.next().unwrap_or_default().to_owned();
        let mut parts = first.split(' ');
        let method = parts.next().unwrap_or_default().to_owned();
        let path = parts.next().unwrap_or_default().to_owned();
        let headers: BTreeMap<String, String> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_lowercase(), v.trim().to_owned()))
            .collect();
        let len: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        while buf.len() < head_end + len {
            match sock.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body = String::from_utf8_lossy(&buf[head_end..head_end + len]).to_string();
        let route = format!("{method} {path}");
        self.seen.lock().unwrap().push(Request {
            method,
            path,
            headers,
            body,
            at: Instant::now(),
        });
        let r = self.next(&route);
        let mut resp = format!(
            "HTTP/1.1 {} X\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
            r.status,
            r.body.len()
        );
        if let Some(e) = &r.etag {
            resp.push_str(&format!("etag: {e}\r\n"));
        }
        resp.push_str("\r\n");
        resp.push_str(&r.body);
        let _ = sock.write_all(resp.as_bytes()).await;
        let _ = sock.shutdown().await;
    }
}
