//! What a request can fail with, and how each face shows it: a JSON body for the
//! API ([`ApiError`]), a friendly page for people ([`PageError`]).

use std::fmt;

use askama::Template;
use axum::extract::rejection::{FormRejection, JsonRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use serde_json::json;

use storefront_storage::StoreError;

/// A failed request, before it is shown.
#[derive(Debug)]
#[non_exhaustive]
pub enum AppError {
    /// Input that cannot be accepted: which field and what to do about it.
    Invalid {
        /// The field (`email`, `quantity`, `body`, ...).
        field: &'static str,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// The request body or query could not be read (wrong type, bad JSON...).
    Malformed(StatusCode, String),
    /// The address does not take this method: 405.
    MethodNotAllowed(String),
    /// The request needs a signed-in user.
    Unauthorized,
    /// Wrong email or password.
    BadCredentials,
    /// Nothing is at this address.
    NotFound(String),
    /// The request conflicts with the current state (email taken, out of stock...).
    Conflict(&'static str, String),
    /// Our fault: logged, shown as a generic 500.
    Internal(String),
    /// The database is unavailable: 503.
    Unavailable(String),
    /// The request may not be made this way (a form without its anti-forgery
    /// token, a request from another site): 403, with what to do.
    Forbidden(String),
    /// Too many sign-in attempts (per account or per client address): 429 with
    /// `Retry-After`.
    TooManyAttempts {
        /// Whose attempts, and when to try again.
        message: String,
        /// Seconds until an attempt can succeed.
        retry_after_secs: u64,
    },
    /// Every password-hashing slot is taken and the queue is full: 503 with
    /// `Retry-After`.
    Busy {
        /// Seconds to wait before trying again.
        retry_after_secs: u64,
    },
}

impl AppError {
    /// An [`AppError::Invalid`].
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid {
            field,
            message: message.into(),
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Malformed(status, _) => *status,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::Unauthorized | Self::BadCredentials => StatusCode::UNAUTHORIZED,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict(..) => StatusCode::CONFLICT,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Unavailable(_) | Self::Busy { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::TooManyAttempts { .. } => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    /// The `Retry-After` seconds this answer carries, if any.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Self::TooManyAttempts {
                retry_after_secs, ..
            }
            | Self::Busy { retry_after_secs } => Some(*retry_after_secs),
            _ => None,
        }
    }

    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Invalid { .. } => "invalid_input",
            Self::Malformed(..) => "malformed_request",
            Self::MethodNotAllowed(_) => "method_not_allowed",
            Self::Unauthorized => "unauthorized",
            Self::BadCredentials => "bad_credentials",
            Self::NotFound(_) => "not_found",
            Self::Conflict(code, _) => code,
            Self::Internal(_) => "internal",
            Self::Unavailable(_) => "unavailable",
            Self::Forbidden(_) => "forbidden",
            Self::TooManyAttempts { .. } => "too_many_attempts",
            Self::Busy { .. } => "busy",
        }
    }

    fn field(&self) -> Option<&'static str> {
        match self {
            Self::Invalid { field, .. } => Some(field),
            _ => None,
        }
    }

    fn log(&self) {
        match self {
            Self::Internal(detail) => tracing::error!(%detail, "request failed"),
            Self::Unavailable(detail) => tracing::warn!(%detail, "database unavailable"),
            _ => {}
        }
    }
}

impl fmt::Display for AppError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Invalid { field, message } => write!(f, "{field}: {message}"),
            Self::Malformed(_, message)
            | Self::MethodNotAllowed(message)
            | Self::NotFound(message)
            | Self::Conflict(_, message)
            | Self::Forbidden(message)
            | Self::TooManyAttempts { message, .. } => f.write_str(message),
            Self::Busy { retry_after_secs } => write!(
                f,
                "the shop is checking many passwords at once; please try again in {retry_after_secs} s"
            ),
            Self::Unauthorized => f.write_str("sign in first"),
            Self::BadCredentials => f.write_str("wrong email or password"),
            Self::Internal(_) => f.write_str("something went wrong on our side; please try again"),
            Self::Unavailable(_) => {
                f.write_str("the shop's database is unavailable; please try again")
            }
        }
    }
}

impl std::error::Error for AppError {}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::EmailTaken => Self::Conflict("email_taken", e.to_string()),
            StoreError::NoSuchProduct(_) => Self::NotFound(e.to_string()),
            StoreError::EmptyCart => Self::Conflict("empty_cart", e.to_string()),
            StoreError::OutOfStock { .. } => Self::Conflict("out_of_stock", e.to_string()),
            StoreError::Database(
                sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed,
            ) => Self::Unavailable(e.to_string()),
            StoreError::Database(ref db) if refused_data(db) => Self::refused_data(&e),
            StoreError::Loader(inner) => match &*inner {
                StoreError::NoSuchProduct(_) => Self::NotFound(inner.to_string()),
                StoreError::Database(db) if refused_data(db) => Self::refused_data(&inner),
                StoreError::Database(
                    sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed,
                ) => Self::Unavailable(inner.to_string()),
                _ => Self::Internal(inner.to_string()),
            },
            other => Self::Internal(other.to_string()),
        }
    }
}

impl AppError {
    /// A statement the database refused for its data: the client's input, since
    /// everything else the shop binds is its own. Logged, since the checks at the
    /// edge should have caught it first.
    fn refused_data(e: &StoreError) -> Self {
        tracing::warn!(detail = %e, "the database refused a request's data; check the input validation");
        Self::invalid(
            "input",
            "the shop cannot store or search for this text or number; remove unusual characters or shorten it",
        )
    }
}

/// Whether the database refused the data of a statement rather than failed:
/// PostgreSQL's SQLSTATE class 22 (data exception: a NUL in text, a number out of
/// range, an invalid byte sequence), SQLite's `SQLITE_TOOBIG` and
/// `SQLITE_MISMATCH`. Such an error says nothing about the server's health, so it
/// must not become a 500 that a gateway's breaker counts as the instance failing.
fn refused_data(e: &sqlx::Error) -> bool {
    let sqlx::Error::Database(db) = e else {
        return false;
    };
    if let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
        return pg.code().starts_with("22");
    }
    if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
        // The primary result code (the low byte of an extended one).
        let primary = db
            .code()
            .and_then(|c| c.parse::<i64>().ok())
            .map(|c| c & 0xff);
        return matches!(primary, Some(18 | 20));
    }
    false
}

macro_rules! from_rejection {
    ($($t:ty),*) => {$(
        impl From<$t> for AppError {
            fn from(r: $t) -> Self {
                Self::Malformed(r.status(), r.body_text())
            }
        }
    )*};
}
from_rejection!(JsonRejection, QueryRejection, PathRejection, FormRejection);

/// An [`AppError`] shown as JSON: `{"error": {"code", "message", "field"?}}`.
#[derive(Debug)]
pub struct ApiError(pub AppError);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let e = self.0;
        e.log();
        let mut body = json!({ "code": e.code(), "message": e.to_string() });
        if let Some(field) = e.field() {
            body["field"] = json!(field);
        }
        let mut response = (e.status(), Json(json!({ "error": body }))).into_response();
        set_retry_after(&mut response, &e);
        response
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    title: &'a str,
    user: Option<storefront_storage::User>,
    status: u16,
    reason: &'a str,
    message: String,
}

/// An [`AppError`] shown as a page a person can act on.
#[derive(Debug)]
pub struct PageError(pub AppError);

macro_rules! into_faces {
    ($($t:ty),*) => {$(
        impl From<$t> for ApiError {
            fn from(e: $t) -> Self {
                Self(e.into())
            }
        }
        impl From<$t> for PageError {
            fn from(e: $t) -> Self {
                Self(e.into())
            }
        }
    )*};
}
into_faces!(
    AppError,
    StoreError,
    JsonRejection,
    QueryRejection,
    PathRejection,
    FormRejection
);

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let e = self.0;
        e.log();
        let status = e.status();
        let reason = status.canonical_reason().unwrap_or("Error");
        let page = ErrorPage {
            title: reason,
            user: None,
            status: status.as_u16(),
            reason,
            message: e.to_string(),
        };
        let mut response = match page.render() {
            Ok(html) => (status, Html(html)).into_response(),
            Err(_) => (status, e.to_string()).into_response(),
        };
        set_retry_after(&mut response, &e);
        response
    }
}

/// Adds `Retry-After` to `response` when `e` says when to come back.
pub(crate) fn set_retry_after(response: &mut Response, e: &AppError) {
    if let Some(secs) = e.retry_after_secs() {
        response.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            axum::http::HeaderValue::from(secs),
        );
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        PageError(self).into_response()
    }
}
