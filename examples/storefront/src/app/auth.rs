//! Accounts: input rules, argon2 password hashes, session tokens and the extractor
//! that finds the signed-in user (cookie for pages, `Authorization: Bearer` for the API).

use argon2::password_hash::rand_core::{OsRng, RngCore};
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use axum::extract::FromRequestParts;
use axum::http::header::{AUTHORIZATION, COOKIE};
use axum::http::request::Parts;
use axum::response::IntoResponse;

use super::error::AppError;
use super::AppState;
use crate::store::User;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "sf_session";

/// Hashes and checks passwords with argon2id.
#[derive(Clone, Debug)]
pub struct Passwords {
    params: Params,
}

impl Passwords {
    /// OWASP's recommended argon2id cost (19 MiB, 2 passes): tens of milliseconds a hash.
    pub fn recommended() -> Self {
        Self {
            params: Params::default(),
        }
    }

    /// The cheapest cost argon2 accepts: for tests and seeded demo accounts only.
    pub fn fast_insecure() -> Self {
        Self {
            params: Params::new(8, 1, 1, None).unwrap_or_default(),
        }
    }

    fn argon2(&self) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params.clone())
    }

    /// The PHC string of `password` with a fresh random salt.
    pub fn hash(&self, password: &str) -> Result<String, AppError> {
        let salt = SaltString::generate(&mut OsRng);
        self.argon2()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| AppError::Internal(format!("cannot hash a password: {e}")))
    }

    /// Whether `password` matches the PHC string `hash` (whatever cost it was made with).
    pub fn verify(&self, password: &str, hash: &str) -> bool {
        PasswordHash::new(hash)
            .map(|parsed| {
                self.argon2()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            })
            .unwrap_or(false)
    }
}

/// A new random session token: 32 bytes from the OS, in hex.
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn plausible_token(token: &str) -> bool {
    token.len() == 64 && token.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Normalises and checks an email address: spaces trimmed, lower case, one `@` with text on
/// both sides and a dot in the domain, at most 254 bytes.
pub fn valid_email(email: &str) -> Result<String, AppError> {
    // Spaces only: a tab or line break at either end is refused, not trimmed away.
    let email = email.trim_matches(' ').to_lowercase();
    let ok = email.len() <= 254
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && match email.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && !domain.contains('@')
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
            }
            None => false,
        };
    if ok {
        Ok(email)
    } else {
        Err(AppError::invalid(
            "email",
            "enter an email address like name@example.com",
        ))
    }
}

/// Checks a display name: 1 to 80 characters after trimming spaces, no control
/// characters (not even at the ends).
pub fn valid_name(name: &str) -> Result<String, AppError> {
    let name = name.trim_matches(' ');
    let count = name.chars().count();
    if count == 0 || count > 80 || name.chars().any(char::is_control) {
        return Err(AppError::invalid(
            "name",
            "enter a name of 1 to 80 characters",
        ));
    }
    Ok(name.to_owned())
}

/// Checks a new password: 8 to 128 characters.
pub fn valid_password(password: &str) -> Result<(), AppError> {
    let count = password.chars().count();
    if !(8..=128).contains(&count) {
        return Err(AppError::invalid(
            "password",
            "use a password of 8 to 128 characters",
        ));
    }
    Ok(())
}

/// The session token a request carries, if any: `Authorization: Bearer` first, then
/// the session cookie.
pub fn request_token(parts: &Parts) -> Option<String> {
    if let Some(token) = parts
        .headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    {
        return Some(token.trim().to_owned());
    }
    parts
        .headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|header| {
            header.split(';').find_map(|pair| {
                let (name, value) = pair.trim().split_once('=')?;
                (name == SESSION_COOKIE).then(|| value.to_owned())
            })
        })
}

/// The signed-in user, if the request carries a live session.
#[derive(Clone, Debug)]
pub struct MaybeUser(pub Option<User>, pub Option<String>);

impl FromRequestParts<AppState> for MaybeUser {
    /// A database failure while looking the session up: JSON for API clients (they
    /// send `Authorization`), a page for browsers.
    type Rejection = axum::response::Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Some(token) = request_token(parts).filter(|t| plausible_token(t)) else {
            return Ok(Self(None, None));
        };
        match state.store.session_user(&token, super::now()).await {
            Ok(user) => Ok(Self(user, Some(token))),
            Err(e) if parts.headers.contains_key(AUTHORIZATION) => {
                Err(super::ApiError::from(e).into_response())
            }
            Err(e) => Err(super::PageError::from(e).into_response()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(
            valid_email("  Ann@Example.COM ").ok().as_deref(),
            Some("ann@example.com")
        );
        for bad in [
            "",
            "ann",
            "@example.com",
            "ann@",
            "ann@example",
            "a b@example.com",
            "a@b@c.d",
            "a@.com",
        ] {
            assert!(valid_email(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn passwords_round_trip() {
        let p = Passwords::fast_insecure();
        let hash = p.hash("correct horse").unwrap_or_default();
        assert!(p.verify("correct horse", &hash));
        assert!(!p.verify("wrong horse", &hash));
        assert!(!p.verify("x", "not a hash"));
    }

    #[test]
    fn tokens_are_64_hex_digits() {
        let t = new_token();
        assert!(plausible_token(&t));
        assert_ne!(t, new_token());
        assert!(!plausible_token("abc"));
    }
}
