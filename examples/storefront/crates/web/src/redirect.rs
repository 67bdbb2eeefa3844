//! Redirect targets that come from a request (`next` after login): only a path on
//! this site, else `/`.
//!
//! A browser reads a `Location` more loosely than it looks: it drops tabs and
//! line breaks anywhere (`/\t/evil` becomes `//evil`, another host), reads `\`
//! as `/` (`/\evil` is `//evil`), and a proxy or framework in between may
//! percent-decode once more (`/%2F%2Fevil`). A control character in a header
//! value does not even make a response (it was a 500 after the session was
//! made). So the rule is strict, and the same for the text as given and for
//! every percent-decoding of it (up to [`DECODE_ROUNDS`]):
//!
//! - 1 to [`MAX_LEN`] bytes, each printable ASCII (`!` to `~`): no control
//!   character, no space of any kind, nothing outside ASCII (so no look-alike
//!   of `/` such as `／` or `∕`);
//! - starts with `/`;
//! - no `\` and no `//` anywhere (so neither `//host` nor `/\host`, and no
//!   `scheme://` either).
//!
//! Our own links (`/cart`, `/orders/12`, `/products/7`) pass; anything else
//! falls back to `/`, which is never worse than a refusal for the person
//! signing in.

/// The longest target accepted, in bytes.
pub const MAX_LEN: usize = 512;

/// How many rounds of percent-decoding are checked too.
pub const DECODE_ROUNDS: usize = 3;

/// `next` if it is a same-origin path by the rules above, else `/`.
///
/// ```
/// use storefront_web::redirect::same_origin_or_root;
/// assert_eq!(same_origin_or_root(Some("/orders/12")), "/orders/12");
/// assert_eq!(same_origin_or_root(Some("//evil.example")), "/");
/// assert_eq!(same_origin_or_root(Some("/%09/evil.example")), "/");
/// assert_eq!(same_origin_or_root(None), "/");
/// ```
pub fn same_origin_or_root(next: Option<&str>) -> String {
    next.and_then(same_origin_path).unwrap_or("/").to_owned()
}

/// `candidate` if it is a same-origin path by the rules above.
pub fn same_origin_path(candidate: &str) -> Option<&str> {
    if candidate.is_empty() || candidate.len() > MAX_LEN {
        return None;
    }
    let mut text = candidate.as_bytes().to_vec();
    for _ in 0..=DECODE_ROUNDS {
        if !plain_local_path(&text) {
            return None;
        }
        let decoded = percent_decode(&text);
        if decoded == text {
            break;
        }
        text = decoded;
    }
    Some(candidate)
}

fn plain_local_path(path: &[u8]) -> bool {
    path.first() == Some(&b'/')
        && path.iter().all(|b| b.is_ascii_graphic() && *b != b'\\')
        && !path.windows(2).any(|w| w == b"//")
}

/// `%XX` (two hexadecimal digits) replaced by its byte; anything else kept.
fn percent_decode(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        if text[i] == b'%' && i + 2 < text.len() {
            if let (Some(h), Some(l)) = (hex(text[i + 1]), hex(text[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(text[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_targets_fall_back_to_the_root() {
        let long = format!("/{}", "a".repeat(MAX_LEN));
        for bad in [
            "",
            "/\u{0}",
            "//evil.example",
            "///evil.example",
            "/\\evil.example",
            "\\/evil.example",
            "\\\\evil.example",
            "/%09/evil.example",
            "/\t/evil.example",
            "\t/",
            "/\n/evil.example",
            "/orders\r\nSet-Cookie: x=1",
            "/orders%0D%0ASet-Cookie:x=1",
            "/ /evil.example",
            "/%20/evil.example",
            "/%5Cevil.example",
            "/%5cevil.example",
            "/%2F%2Fevil.example",
            "/%2f/evil.example",
            "/%252F%252Fevil.example",
            "/%25252F%25252Fevil.example",
            "https://evil.example",
            "http:evil.example",
            "javascript:alert(1)",
            "data:text/html,hi",
            "evil.example",
            ".",
            "?next=/",
            "#/",
            "/\u{ff0f}evil.example",
            "/\u{2215}evil.example",
            "\u{ff0f}\u{ff0f}evil.example",
            "/\u{a0}/evil.example",
            "/\u{2028}",
            "/\u{85}",
            "/%E2%88%95evil.example",
            "/%00",
            "/search?q=red%20kite",
            "/a/../\u{7f}",
            long.as_str(),
        ] {
            assert_eq!(same_origin_or_root(Some(bad)), "/", "{bad:?}");
        }
    }

    #[test]
    fn our_own_paths_pass() {
        for good in [
            "/",
            "/cart",
            "/orders",
            "/orders/12",
            "/products/7",
            "/search?q=red+kite&page=2",
            "/a:b",
            "/%",
            "/%G0",
            "/100%25",
        ] {
            assert_eq!(same_origin_or_root(Some(good)), good, "{good:?}");
        }
        assert_eq!(
            same_origin_or_root(Some(&format!("/{}", "a".repeat(MAX_LEN - 1)))).len(),
            MAX_LEN
        );
    }
}
