//! The stage file's `[server]` section: where a process listens and its
//! connection limits (see the crate docs for each key).

use std::net::SocketAddr;

use serde::Deserialize;

/// The HTTP server's settings.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Where to listen.
    pub addr: SocketAddr,
    /// Products per listing page (1 to 100).
    #[serde(default = "default_page_size")]
    pub page_size: u32,
    /// How long a client has to send a request's headers, from when it connects
    /// (first request) or sends its first byte (later ones); then the connection is
    /// closed. See the [crate docs](crate).
    #[serde(default = "crate::default_header_read_timeout_ms")]
    pub header_read_timeout_ms: u64,
    /// How long a kept-alive connection may wait for its next request, and a
    /// response may wait for the client to read it.
    #[serde(default = "crate::default_idle_timeout_ms")]
    pub idle_timeout_ms: u64,
    /// How long a request's whole body may take to arrive after its headers.
    #[serde(default = "crate::default_body_timeout_ms")]
    pub body_timeout_ms: u64,
    /// Connections open at once, at most (lowered at start to what the process's
    /// file limit allows); past it, idle ones are closed, or new ones get a 503.
    #[serde(default = "crate::default_max_connections")]
    pub max_connections: u32,
    /// On SIGTERM or Ctrl-C, how long requests in flight have to finish before the
    /// remaining connections are dropped (`--drain-timeout` overrides it).
    #[serde(default = "crate::default_drain_timeout_ms")]
    pub drain_timeout_ms: u64,
}

fn default_page_size() -> u32 {
    24
}

impl ServerConfig {
    /// Checks the section; the first problem as (field, what to write instead).
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if !(1..=100).contains(&self.page_size) {
            return Err((
                "server.page_size",
                format!(
                    "{}: use a number of products per page from 1 to 100",
                    self.page_size
                ),
            ));
        }
        self.check_connections()
    }
}
