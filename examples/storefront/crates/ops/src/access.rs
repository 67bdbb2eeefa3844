//! Who may read the ops routes (`/ops`, `/ops/ops.js`, `/ops/data.json`,
//! `/metrics`): the stage file's `[ops]` section chooses.
//!
//! ```toml
//! [ops]
//! # "open": anyone who reaches the server; "token": the token in token_env.
//! access = "token"
//! token_env = "SCALEKIT_ADMIN_TOKEN"
//! ```
//!
//! - **open** (also without the section): stage 1, one process on loopback
//!   (`127.0.0.1:8080`), where whoever can reach the port can read the database
//!   file as well; the figures are the point of the demo.
//! - **token**: a request must carry the token, as `Authorization: Bearer
//!   <token>` (Prometheus' `authorization` or `bearer_token`, the gateway, `storefront
//!   evolve`) or as HTTP Basic with the token as the password and any user name
//!   (a browser asks for it: the answer without it is a 401 with
//!   `WWW-Authenticate: Basic`). Tokens are compared in constant time (SHA-256
//!   digests, every byte), as the admin pages do. If the variable is unset or
//!   empty the routes are closed (403, and a warning at start): a stage that asks
//!   for protection never falls back to open. Stages 2 to 7 choose `token`, with
//!   the admin token's variable, so one secret opens `/ops` and `/admin`.
//!
//! A stage-4 gateway reads its instances' `/ops/data.json` with the same token
//! (the instances inherit the gateway's environment). Putting the routes on an
//! address of their own is left to a deployment (a firewall rule or a proxy in
//! front that serves only the shop's paths).

use std::sync::Arc;
use storefront_contract::section::{Invalid, Section};

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64ct::{Base64, Encoding};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::Ops;

/// The `[ops]` section of a stage file.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct OpsConfig {
    /// Who may read the ops routes.
    pub access: AccessMode,
    /// The environment variable that holds the token (`access = "token"` only).
    #[serde(default)]
    pub token_env: Option<String>,
}

/// `ops.access` of a stage file.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AccessMode {
    /// Anyone who reaches the server.
    Open,
    /// Requests with the token.
    Token,
}

impl Section for OpsConfig {
    /// Checks the section; `Err((field, message))`.
    fn check(&self) -> Result<(), Invalid> {
        match (self.access, self.token_env.as_deref()) {
            (AccessMode::Token, None | Some("")) => Err((
                "ops.token_env",
                "access = \"token\" needs the environment variable that holds the token, like token_env = \"SCALEKIT_ADMIN_TOKEN\"".into(),
            )),
            (AccessMode::Open, Some(_)) => Err((
                "ops.token_env",
                "access = \"open\" takes no token: remove token_env, or set access = \"token\"".into(),
            )),
            _ => Ok(()),
        }
    }
}

/// The access in force on a recorder's ops routes ([`Ops::set_access`]).
#[derive(Clone, Default)]
pub enum OpsAccess {
    /// Anyone.
    #[default]
    Open,
    /// Requests that carry the token.
    Token {
        /// The token, for clients of other instances' routes ([`Self::authorization`]).
        token: Arc<str>,
        /// Its SHA-256.
        digest: [u8; 32],
    },
    /// Nobody: the stage asks for a token and the variable is not set.
    Closed {
        /// The variable to set.
        env: String,
    },
}

impl std::fmt::Debug for OpsAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Open => f.write_str("Open"),
            Self::Token { .. } => f.write_str("Token(..)"),
            Self::Closed { env } => f.debug_struct("Closed").field("env", env).finish(),
        }
    }
}

fn digest(token: &[u8]) -> [u8; 32] {
    Sha256::digest(token).into()
}

impl OpsAccess {
    /// Only requests with `token` (an empty one closes the routes).
    ///
    /// ```
    /// use axum::http::{header, HeaderMap};
    /// use storefront_ops::OpsAccess;
    /// let access = OpsAccess::token("s3cret");
    /// let mut headers = HeaderMap::new();
    /// assert!(!access.allows(&headers));
    /// headers.insert(header::AUTHORIZATION, "Bearer s3cret".parse().unwrap());
    /// assert!(access.allows(&headers));
    /// ```
    pub fn token(token: &str) -> Self {
        if token.is_empty() {
            return Self::Closed { env: String::new() };
        }
        Self::Token {
            token: token.into(),
            digest: digest(token.as_bytes()),
        }
    }

    /// The access a stage's `[ops]` section asks for, with the token from its
    /// environment variable. Logs what it chose.
    pub fn from_config(config: Option<&OpsConfig>) -> Self {
        let Some(c) = config.filter(|c| c.access == AccessMode::Token) else {
            return Self::Open;
        };
        let env = c.token_env.clone().unwrap_or_default();
        match std::env::var(&env) {
            Ok(token) if !token.is_empty() => {
                tracing::info!("/ops, /ops/data.json and /metrics need the token in {env}");
                Self::token(&token)
            }
            _ => {
                tracing::warn!(
                    "/ops, /ops/data.json and /metrics are closed: this stage protects them with the token in {env}, which is not set"
                );
                Self::Closed { env }
            }
        }
    }

    /// Whether a request with `headers` may read the ops routes.
    pub fn allows(&self, headers: &HeaderMap) -> bool {
        match self {
            Self::Open => true,
            Self::Closed { .. } => false,
            Self::Token { digest: want, .. } => headers
                .get_all(header::AUTHORIZATION)
                .iter()
                .filter_map(|v| given_token(v.as_bytes()))
                .any(|given| same(want, &digest(&given))),
        }
    }

    /// `None` for a request that may read the ops routes; else the answer: 401
    /// (asking for the token) or 403 (closed).
    pub fn refusal(&self, headers: &HeaderMap) -> Option<Response> {
        if self.allows(headers) {
            return None;
        }
        let no_store = (header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        Some(match self {
            Self::Closed { env } => (
                StatusCode::FORBIDDEN,
                [no_store],
                format!(
                    "The ops routes are closed: this stage protects them with a token, and the server has none ({}). Set it and restart.\n",
                    if env.is_empty() { "empty token" } else { env.as_str() }
                ),
            )
                .into_response(),
            _ => (
                StatusCode::UNAUTHORIZED,
                [
                    no_store,
                    (
                        header::WWW_AUTHENTICATE,
                        HeaderValue::from_static("Basic realm=\"storefront ops\", charset=\"UTF-8\""),
                    ),
                ],
                "The ops routes need the ops token: send Authorization: Bearer <token>, or sign in with any user name and the token as the password.\n",
            )
                .into_response(),
        })
    }

    /// `Authorization: Bearer <token>` for reading another process's ops routes
    /// under the same access (the gateway polls its instances with it); `None`
    /// when there is no token.
    pub fn authorization(&self) -> Option<HeaderValue> {
        match self {
            Self::Token { token, .. } => HeaderValue::try_from(format!("Bearer {token}")).ok(),
            _ => None,
        }
    }
}

/// The token in an `Authorization` value: `Bearer <token>`, or `Basic` with the
/// token as the password.
fn given_token(value: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(value).ok()?.trim();
    let (scheme, rest) = text.split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(rest.as_bytes().to_vec());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        // A token of up to 1 KiB, with a user name beside it.
        let mut buf = [0u8; 1536];
        let pair = Base64::decode(rest, &mut buf).ok()?;
        let colon = pair.iter().position(|&b| b == b':')?;
        return Some(pair[colon + 1..].to_vec());
    }
    None
}

/// Whether two digests are equal, looking at every byte.
fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

/// An extractor that lets a request through when the recorder's access allows
/// it, and answers 401 or 403 otherwise.
#[derive(Clone, Copy, Debug)]
pub struct Authorized;

impl<S> FromRequestParts<S> for Authorized
where
    Arc<Ops>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Arc::<Ops>::from_ref(state).access().refusal(&parts.headers) {
            None => Ok(Self),
            Some(refusal) => Err(refusal),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(header::AUTHORIZATION, v);
        }
        h
    }

    #[test]
    fn bearer_and_basic_carry_the_token() {
        let access = OpsAccess::token("s3cret");
        assert!(access.allows(&with("Bearer s3cret")));
        assert!(access.allows(&with("bearer  s3cret ")));
        // "ops:s3cret" and ":s3cret"
        assert!(access.allows(&with("Basic b3BzOnMzY3JldA==")));
        assert!(access.allows(&with("Basic OnMzY3JldA==")));
        for bad in [
            "",
            "Bearer",
            "Bearer s3cre",
            "Bearer s3cret2",
            "s3cret",
            "Basic czNjcmV0", // "s3cret": no user name
            "Basic !!!",
            "Digest s3cret",
        ] {
            assert!(!access.allows(&with(bad)), "{bad:?}");
        }
        assert!(OpsAccess::Open.allows(&HeaderMap::new()));
        assert!(!OpsAccess::token("").allows(&with("Bearer ")));
        assert_eq!(
            access
                .authorization()
                .as_ref()
                .and_then(|v| v.to_str().ok()),
            Some("Bearer s3cret")
        );
        assert!(!format!("{access:?}").contains("s3cret"));
    }

    #[test]
    fn refusals_say_what_to_do() {
        let no = OpsAccess::token("t").refusal(&HeaderMap::new());
        assert_eq!(
            no.as_ref().map(Response::status),
            Some(StatusCode::UNAUTHORIZED)
        );
        assert!(no.is_some_and(|r| r.headers().contains_key(header::WWW_AUTHENTICATE)));
        let closed = OpsAccess::Closed { env: "X".into() }.refusal(&with("Bearer t"));
        assert_eq!(closed.map(|r| r.status()), Some(StatusCode::FORBIDDEN));
        assert!(OpsAccess::token("t").refusal(&with("Bearer t")).is_none());
    }

    #[test]
    fn the_section_is_checked() {
        let c = |access, env: Option<&str>| OpsConfig {
            access,
            token_env: env.map(str::to_owned),
        };
        assert!(c(AccessMode::Open, None).check().is_ok());
        assert!(c(AccessMode::Token, Some("T")).check().is_ok());
        assert!(c(AccessMode::Token, None).check().is_err());
        assert!(c(AccessMode::Token, Some("")).check().is_err());
        assert!(c(AccessMode::Open, Some("T")).check().is_err());
    }
}
