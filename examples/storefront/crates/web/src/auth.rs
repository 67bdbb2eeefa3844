//! Accounts: input rules, argon2 password hashes, session tokens and the extractor
//! that finds the signed-in user (cookie for pages, `Authorization: Bearer` for the API).
//!
//! - **Emails** are compared in one form: trimmed, Unicode NFC, lower case
//!   ([`valid_email`]), so the NFC and NFD spellings of an address (`é` as one code
//!   point or as `e` and a combining accent) are one account.
//! - **New passwords** ([`valid_password`]): 8 to 128 characters, not one of the
//!   10,000 most common passwords (SecLists' list, in `data/`, compared without
//!   regard to case), and not the account's email, the email's local part or the
//!   name.
//! - **Hashes**: argon2id ([`Passwords`]); the attempts' limits, the hashing pool
//!   off the async threads and the equal work for unknown emails are in
//!   [`super::signin`].

use std::collections::HashSet;
use std::sync::{Arc, LazyLock, OnceLock};

use argon2::password_hash::rand_core::{OsRng, RngCore};
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use axum::extract::FromRequestParts;
use axum::http::header::{AUTHORIZATION, COOKIE};
use axum::http::request::Parts;
use axum::response::IntoResponse;

use super::error::AppError;
use super::AppState;
use storefront_storage::User;

/// The session cookie's name.
pub use storefront_contract::cookies::SESSION as SESSION_COOKIE;

/// Hashes and checks passwords with argon2id.
///
/// The methods are plain blocking calls (tens of milliseconds each at the
/// recommended cost): the shop runs them through [`super::signin::HashPool`],
/// off the async worker threads. Clones share the dummy hash.
#[derive(Clone, Debug)]
pub struct Passwords {
    params: Params,
    /// A hash of a random password at this cost, made on first use: an unknown
    /// email is checked against it, so that it costs what a known one does.
    dummy: Arc<OnceLock<String>>,
}

impl Passwords {
    /// OWASP's recommended argon2id cost (19 MiB, 2 passes): tens of milliseconds a hash.
    pub fn recommended() -> Self {
        Self::with_params(Params::default())
    }

    /// The cheapest cost argon2 accepts: for tests and seeded demo accounts only.
    pub fn fast_insecure() -> Self {
        Self::with_params(Params::new(8, 1, 1, None).unwrap_or_default())
    }

    fn with_params(params: Params) -> Self {
        Self {
            params,
            dummy: Arc::default(),
        }
    }

    /// Checks `password` against a hash of a random password made at this cost
    /// (once, on first use): the same work as [`verify`](Self::verify) against an
    /// account's hash of this cost, with the answer always `false`.
    pub fn verify_dummy(&self, password: &str) -> bool {
        let dummy = self.dummy.get_or_init(|| {
            let mut secret = [0u8; 32];
            OsRng.fill_bytes(&mut secret);
            let secret: String = secret.iter().map(|b| format!("{b:02x}")).collect();
            self.hash(&secret).unwrap_or_default()
        });
        // Verified even when hashing failed above (then the hash does not parse
        // and this is quick), and the answer is `false` whatever it says.
        let _ = self.verify(password, dummy);
        false
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

/// The one form an email address is stored and looked up in: spaces trimmed, Unicode
/// NFC, lower case (and NFC again: lowering can undo it). ASCII addresses, nearly
/// all of them, come out as their ASCII lower case, as before NFC was applied.
///
/// ```
/// use storefront_web::auth::normalise_email;
///
/// let nfc = "Ren\u{e9}@Example.com"; // é as one code point
/// let nfd = "rene\u{301}@example.COM "; // e and a combining acute accent
/// assert_eq!(normalise_email(nfc), normalise_email(nfd));
/// assert_eq!(normalise_email(" Ann@Example.COM"), "ann@example.com");
/// ```
pub fn normalise_email(email: &str) -> String {
    use unicode_normalization::UnicodeNormalization as _;
    // Spaces only: a tab or line break at either end is refused, not trimmed away.
    let email = email.trim_matches(' ');
    if email.is_ascii() {
        return email.to_ascii_lowercase();
    }
    let lower = email.nfc().collect::<String>().to_lowercase();
    lower.nfc().collect()
}

/// How the shop spelled `email` before NFC was applied (trimmed, lower case):
/// accounts made then with a decomposed address are stored in this form, so a
/// login that finds no account under [`normalise_email`] looks here too.
pub(crate) fn legacy_email(email: &str) -> String {
    email.trim_matches(' ').to_lowercase()
}

/// Normalises ([`normalise_email`]) and checks an email address: one `@` with
/// text on both sides and a dot in the domain, at most 254 bytes.
pub fn valid_email(email: &str) -> Result<String, AppError> {
    let email = normalise_email(email);
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

/// SecLists' 10,000 most common passwords (see `data/README.md`), lower case.
static COMMON_PASSWORDS: LazyLock<HashSet<String>> = LazyLock::new(|| {
    include_str!("../data/common-passwords.txt")
        .lines()
        .map(|line| line.trim().to_lowercase())
        .filter(|line| !line.is_empty())
        .collect()
});

/// Whether `password` is one of the 10,000 most common passwords, compared
/// without regard to case.
pub fn is_common_password(password: &str) -> bool {
    COMMON_PASSWORDS.contains(&password.to_lowercase())
}

/// Checks a new password for the account `email` (normalised) named `name`: 8
/// to 128 characters, not one of the 10,000 most common passwords, and not the
/// email, its local part or the name (compared without regard to case or to
/// the spaces around it).
///
/// ```
/// use storefront_web::auth::valid_password;
///
/// assert!(valid_password("correct horse battery", "ann@example.com", "Ann").is_ok());
/// assert!(valid_password("short", "ann@example.com", "Ann").is_err());
/// assert!(valid_password("Password1", "ann@example.com", "Ann").is_err()); // common
/// assert!(valid_password("ann@example.com", "ann@example.com", "Ann").is_err());
/// ```
pub fn valid_password(password: &str, email: &str, name: &str) -> Result<(), AppError> {
    let count = password.chars().count();
    if !(8..=128).contains(&count) {
        return Err(AppError::invalid(
            "password",
            "use a password of 8 to 128 characters",
        ));
    }
    if is_common_password(password) {
        return Err(AppError::invalid(
            "password",
            "this password is one of the 10,000 most common ones, which attackers try \
             first: choose another (a few unrelated words make a strong one)",
        ));
    }
    let guessable = normalise_email(password);
    let local = email.split_once('@').map_or(email, |(local, _)| local);
    if guessable == email || guessable == local || guessable == normalise_email(name) {
        return Err(AppError::invalid(
            "password",
            "the password must not be your email address or your name: choose another",
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
    fn nfc_and_nfd_spellings_are_one_email() {
        let nfc = valid_email("Ren\u{e9}@example.com").unwrap_or_default();
        let nfd = valid_email("RENE\u{301}@EXAMPLE.COM").unwrap_or_default();
        assert_eq!(nfc, "ren\u{e9}@example.com");
        assert_eq!(nfc, nfd);
        // Lowering can decompose: the result is NFC again.
        use unicode_normalization::UnicodeNormalization as _;
        let odd = normalise_email("\u{130}STANBUL@example.com");
        assert_eq!(odd, odd.nfc().collect::<String>());
        assert_eq!(legacy_email(" Ann@X.com "), "ann@x.com");
    }

    #[test]
    fn the_password_policy_refuses_common_and_personal_passwords() {
        assert_eq!(COMMON_PASSWORDS.len(), 10_000);
        for common in [
            "password",
            "PASSWORD1",
            "12345678",
            "iloveyou",
            "Sunshine",
            "qwertyuiop",
        ] {
            let err = valid_password(common, "ann@example.com", "Ann").err();
            assert!(
                err.as_ref()
                    .is_some_and(|e| e.to_string().contains("most common")),
                "{common}: {err:?}"
            );
        }
        for (password, email, name) in [
            ("ann@example.com", "ann@example.com", "Ann"),
            (" ANN@Example.com", "ann@example.com", "Ann"),
            ("annabelle", "annabelle@example.com", "Ann"),
            ("Annabelle Lee", "ann@example.com", "annabelle lee"),
        ] {
            let err = valid_password(password, email, name).err();
            assert!(
                err.is_some_and(|e| e.to_string().contains("email address or your name")),
                "{password:?} for {email} {name}"
            );
        }
        assert!(valid_password("correct horse battery", "ann@example.com", "Ann").is_ok());
        assert!(valid_password("\u{e9}t\u{e9} \u{e0} Paris", "ann@example.com", "Ann").is_ok());
        let long = "x".repeat(129);
        assert!(valid_password(&long, "ann@example.com", "Ann").is_err());
    }

    #[test]
    fn passwords_round_trip() {
        let p = Passwords::fast_insecure();
        let hash = p.hash("correct horse").unwrap_or_default();
        assert!(p.verify("correct horse", &hash));
        assert!(!p.verify("wrong horse", &hash));
        assert!(!p.verify("x", "not a hash"));
        assert!(!p.verify_dummy("correct horse"));
        assert!(p.dummy.get().is_some_and(|d| d.starts_with("$argon2id$")));
    }

    #[test]
    fn tokens_are_64_hex_digits() {
        let t = new_token();
        assert!(plausible_token(&t));
        assert_ne!(t, new_token());
        assert!(!plausible_token("abc"));
    }
}
