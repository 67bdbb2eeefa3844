//! What the storefront's server and its clients share on the wire, so that a
//! client (the load generator, `evolve`, the gateway) depends on this crate and
//! never on the server's web or storage code; and what the stage file's
//! sections give the composition root ([`section`]). No I/O; serde for the
//! figures.
//!
//! | module | what |
//! | --- | --- |
//! | [`cookies`] | the cookies' names |
//! | [`form`] | percent-encoding of query and form values |
//! | [`markup`] | escaping text for HTML and SVG |
//! | [`demo`] | what the seeded demo accounts sign in with |
//! | [`time`] | the date format of pages and reports |
//! | [`ops`] | the figures of `/ops/data.json`: [`ops::Snapshot`] and its parts, the picture's pieces |
//! | [`section`] | what a stage file's section gives the composition root: its check and its pieces of the picture |

pub mod ops;
pub mod section;

pub mod cookies {
    //! The cookies' names, as the server sets them and clients send them back.

    /// The session cookie (an opaque token; the server keeps its SHA-256).
    pub const SESSION: &str = "sf_session";
    /// The anti-forgery cookie before sign-in (the seed of the forms' token).
    pub const CSRF: &str = "sf_csrf";
    /// The admin token's cookie.
    pub const ADMIN: &str = "sk_admin";
    /// The session's last write position (stage 5's read-your-writes): a client
    /// keeps it as it keeps the session cookie.
    pub const WAL: &str = "sk_wal";
}

pub mod markup {
    //! Escaping text for HTML and SVG (the pages' pictures, the reports' charts).

    /// Escapes text for XML or HTML content and attributes.
    ///
    /// ```
    /// use storefront_contract::markup::escape;
    /// assert_eq!(escape("<a href='x'>&</a>"), "&lt;a href=&#39;x&#39;&gt;&amp;&lt;/a&gt;");
    /// ```
    pub fn escape(text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        for c in text.chars() {
            match c {
                '&' => out.push_str("&amp;"),
                '<' => out.push_str("&lt;"),
                '>' => out.push_str("&gt;"),
                '"' => out.push_str("&quot;"),
                '\'' => out.push_str("&#39;"),
                c => out.push(c),
            }
        }
        out
    }
}

pub mod form {
    //! Percent-encoding of query-string and form values.

    /// Percent-encodes a query-string or form value: unreserved characters
    /// (RFC 3986) stay, every other byte becomes `%XX`.
    ///
    /// ```
    /// use storefront_contract::form::url_encode;
    /// assert_eq!(url_encode("red shoes & co"), "red%20shoes%20%26%20co");
    /// assert_eq!(url_encode("é"), "%C3%A9");
    /// ```
    pub fn url_encode(value: &str) -> String {
        const HEX: &[u8; 16] = b"0123456789ABCDEF";
        let mut out = String::with_capacity(value.len());
        for b in value.bytes() {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                out.push(char::from(b));
            } else {
                out.push('%');
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 0xF)]));
            }
        }
        out
    }
}

pub mod demo {
    //! The seeded demo accounts, which the load generator signs in as.

    /// Every seeded demo account's password.
    pub const PASSWORD: &str = "storefront";
}

pub mod time {
    //! The date format of pages and reports.

    /// Seconds since the Unix epoch now (0 if the clock is before it).
    pub fn now() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
    }

    /// `unix` seconds as `YYYY-MM-DD HH:MM UTC` (proleptic Gregorian).
    ///
    /// ```
    /// use storefront_contract::time::date;
    /// assert_eq!(date(0), "1970-01-01 00:00 UTC");
    /// assert_eq!(date(951_782_400), "2000-02-29 00:00 UTC");
    /// ```
    pub fn date(unix: i64) -> String {
        let days = unix.div_euclid(86_400);
        let secs = unix.rem_euclid(86_400);
        // Howard Hinnant's days-to-civil.
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5 + 1;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        let y = yoe + era * 400 + i64::from(m <= 2);
        format!(
            "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
            secs / 3600,
            secs % 3600 / 60
        )
    }
}
