//! Text from a request, checked at the edge before it goes anywhere else.
//!
//! What the shop takes from a request, and where it is checked:
//!
//! | input | check |
//! | --- | --- |
//! | search words `q` | [`text`]: no control characters, at most 100 characters |
//! | category slug | lower-case ASCII letters, digits and dashes, at most 64 |
//! | page, per_page, quantity, ids, days | typed by the extractor (a number that does not fit is a 400), then a range (422) |
//! | name, email | no control characters, a length, an email shape ([`super::auth`]) |
//! | `next` after login | a same-origin path or `/` ([`super::redirect`]) |
//! | session token, admin token, `sk_wal` | a fixed shape, else ignored ([`super::auth`], [`super::admin`], [`super::wal`]) |
//! | JSON and form bodies, query strings | the extractor; a rejection is a 4xx in the face's format ([`super::error`]) |
//!
//! Control characters (Unicode `Cc`: U+0000 to U+001F and U+007F to U+009F)
//! are refused rather than dropped: nobody types them, PostgreSQL refuses NUL
//! in text (a 500 if it got that far), and SQLite's `LIKE` stops at one (a
//! search for `%00` matched every product).

use super::error::AppError;

/// `value` if it holds no control character and at most `max_chars`
/// characters; else [`AppError::Invalid`] for `field`, saying what to fix.
///
/// ```
/// use storefront_web::input::text;
/// assert_eq!(text("q", "red kite", 100).ok(), Some("red kite"));
/// assert!(text("q", "red\0kite", 100).is_err());
/// assert!(text("q", "\u{85}", 100).is_err());
/// assert!(text("q", &"x".repeat(101), 100).is_err());
/// ```
pub fn text<'a>(
    field: &'static str,
    value: &'a str,
    max_chars: usize,
) -> Result<&'a str, AppError> {
    let value = no_controls(field, value)?;
    // Counting stops early: a megabyte of text costs no more than the limit.
    if value.chars().nth(max_chars).is_some() {
        return Err(AppError::invalid(
            field,
            format!("use at most {max_chars} characters"),
        ));
    }
    Ok(value)
}

/// `value` if it holds no control character; else [`AppError::Invalid`] for
/// `field`. For text that is trimmed before its length is checked: a tab or a
/// line break is refused, not trimmed away.
pub fn no_controls<'a>(field: &'static str, value: &'a str) -> Result<&'a str, AppError> {
    if value.chars().any(char::is_control) {
        return Err(AppError::invalid(
            field,
            "remove the control characters (tabs, line breaks, NUL and the like)",
        ));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_and_length() {
        for bad in ["\0", "a\u{1}b", "\t", "\n", "x\u{7f}", "\u{9f}"] {
            assert!(text("f", bad, 10).is_err(), "{bad:?}");
        }
        for good in ["", "a b", "é", "🦀", "\u{202e}", "\u{2028}", "%00"] {
            assert_eq!(text("f", good, 10).ok(), Some(good), "{good:?}");
        }
        assert!(text("f", "ééé", 3).is_ok());
        assert!(text("f", "éééé", 3).is_err());
    }
}
