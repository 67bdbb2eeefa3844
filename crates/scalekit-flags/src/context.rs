//! The evaluation context: who is asking, from where, and when.

/// What a toggle is evaluated against: Unleash's context fields plus free-form
/// properties. Build it once per request; evaluation borrows it and never copies it.
///
/// All values and property names live in one string buffer, so a context costs two
/// allocations however many fields it has, and evaluation reads it from a few
/// contiguous cache lines.
///
/// ```
/// use scalekit_flags::Context;
/// let ctx = Context::new()
///     .user_id("42")
///     .session_id("s-1")
///     .remote_address("10.1.2.3")
///     .property("country", "NO");
/// assert_eq!(ctx.get("country"), Some("NO"));
/// assert_eq!(ctx.get("userId"), Some("42"));
/// assert_eq!(ctx.user_id_str(), Some("42"));
/// assert_eq!(ctx.properties().collect::<Vec<_>>(), vec![("country", "NO")]);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Context {
    buf: String,
    /// userId, sessionId, remoteAddress, environment, appName, currentTime.
    fields: [Span; 6],
    /// The first properties, inline (no pointer to follow when evaluating).
    inline: [(Span, Span); INLINE],
    inline_len: u8,
    /// Properties beyond the first [`INLINE`].
    more: Vec<(Span, Span)>,
}

const INLINE: usize = 6;

/// A slice of the context's buffer; `len == u32::MAX` means unset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Span {
    start: u32,
    len: u32,
}

impl Default for Span {
    fn default() -> Self {
        Span {
            start: 0,
            len: u32::MAX,
        }
    }
}

/// A context field, resolved once at compile time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Field {
    UserId,
    SessionId,
    RemoteAddress,
    Environment,
    AppName,
    CurrentTime,
    Property(Name),
}

/// A property name with its [`short_key`], compared with a context's property
/// names as two words (and, past 16 bytes, the rest).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Name {
    text: Box<str>,
    key: (u64, u64),
}

impl Name {
    fn new(text: &str) -> Self {
        Name {
            key: short_key(text.as_bytes()),
            text: text.into(),
        }
    }

    /// Whether `b` is this name.
    #[inline(always)]
    fn is(&self, b: &[u8]) -> bool {
        b.len() == self.text.len()
            && same_key(short_key(b), self.key)
            && (b.len() <= 16 || bytes_eq(b, self.text.as_bytes()))
    }
}

impl Field {
    pub(crate) fn parse(name: &str) -> Field {
        match name {
            "userId" => Field::UserId,
            "sessionId" => Field::SessionId,
            "remoteAddress" => Field::RemoteAddress,
            "environment" => Field::Environment,
            "appName" => Field::AppName,
            "currentTime" => Field::CurrentTime,
            other => Field::Property(Name::new(other)),
        }
    }

    #[inline(always)]
    fn slot(&self) -> Option<usize> {
        Some(match self {
            Field::UserId => 0,
            Field::SessionId => 1,
            Field::RemoteAddress => 2,
            Field::Environment => 3,
            Field::AppName => 4,
            Field::CurrentTime => 5,
            Field::Property(_) => return None,
        })
    }
}

impl Context {
    /// An empty context.
    pub fn new() -> Self {
        Self::default()
    }

    fn push(&mut self, s: &str) -> Span {
        let start = self.buf.len();
        self.buf.push_str(s);
        // Contexts over 4 GiB are not a use case; saturate rather than wrap.
        Span {
            start: u32::try_from(start).unwrap_or(u32::MAX),
            len: u32::try_from(s.len()).unwrap_or(0).min(u32::MAX - 1),
        }
    }

    #[inline]
    fn text(&self, s: Span) -> Option<&str> {
        if s.len == u32::MAX {
            return None;
        }
        let start = s.start as usize;
        self.buf.get(start..start + s.len as usize)
    }

    /// Sets `userId`.
    pub fn user_id(mut self, v: impl AsRef<str>) -> Self {
        self.fields[0] = self.push(v.as_ref());
        self
    }

    /// Sets `sessionId`.
    pub fn session_id(mut self, v: impl AsRef<str>) -> Self {
        self.fields[1] = self.push(v.as_ref());
        self
    }

    /// Sets `remoteAddress`.
    pub fn remote_address(mut self, v: impl AsRef<str>) -> Self {
        self.fields[2] = self.push(v.as_ref());
        self
    }

    /// Sets `environment`.
    pub fn environment(mut self, v: impl AsRef<str>) -> Self {
        self.fields[3] = self.push(v.as_ref());
        self
    }

    /// Sets `appName`.
    pub fn app_name(mut self, v: impl AsRef<str>) -> Self {
        self.fields[4] = self.push(v.as_ref());
        self
    }

    /// Sets `currentTime` (RFC 3339, for example `2024-05-01T12:00:00Z`). When it is
    /// not set, date constraints use the wall clock.
    pub fn current_time(mut self, v: impl AsRef<str>) -> Self {
        self.fields[5] = self.push(v.as_ref());
        self
    }

    /// Sets a property (replacing an earlier value of the same name). A known field
    /// name (`userId`, `sessionId`, ...) sets that field.
    pub fn property(mut self, name: impl AsRef<str>, value: impl AsRef<str>) -> Self {
        self.set(name.as_ref(), value.as_ref());
        self
    }

    /// Sets any field or property by its Unleash name.
    pub fn set(&mut self, name: &str, value: &str) {
        let field = Field::parse(name);
        match field.slot() {
            Some(i) => self.fields[i] = self.push(value),
            None => {
                let existing = self.props().position(|(k, _)| self.text(*k) == Some(name));
                let v = self.push(value);
                match existing {
                    Some(i) if i < INLINE => self.inline[i].1 = v,
                    Some(i) => self.more[i - INLINE].1 = v,
                    None => {
                        let k = self.push(name);
                        let n = usize::from(self.inline_len);
                        if n < INLINE {
                            self.inline[n] = (k, v);
                            self.inline_len += 1;
                        } else {
                            self.more.push((k, v));
                        }
                    }
                }
            }
        }
    }

    /// Any field or property by its Unleash name.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.field(&Field::parse(name))
    }

    /// `userId`.
    pub fn user_id_str(&self) -> Option<&str> {
        self.text(self.fields[0])
    }

    #[inline]
    fn props(&self) -> impl Iterator<Item = &(Span, Span)> + '_ {
        self.inline[..usize::from(self.inline_len)]
            .iter()
            .chain(self.more.iter())
    }

    /// The properties (fields other than Unleash's six), in the order first set.
    pub fn properties(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.props()
            .filter_map(|(k, v)| Some((self.text(*k)?, self.text(*v)?)))
    }

    #[inline]
    pub(crate) fn builtin(&self, i: usize) -> Option<&str> {
        self.text(self.fields[i])
    }

    #[inline]
    pub(crate) fn field(&self, f: &Field) -> Option<&str> {
        match f {
            Field::Property(name) => self.find_property(name),
            // One span read indexed by the field, not one inlined read per field.
            builtin => self.fields.get(builtin.slot()?).and_then(|s| self.text(*s)),
        }
    }

    /// The property `name`: the inline ones first, compared by length and then
    /// key, then (out of line) the rest.
    #[inline]
    fn find_property(&self, name: &Name) -> Option<&str> {
        let n = usize::from(self.inline_len).min(INLINE);
        for (k, v) in &self.inline[..n] {
            if k.len as usize == name.text.len() && self.key_is(*k, name) {
                return self.text(*v);
            }
        }
        if self.more.is_empty() {
            None
        } else {
            self.property_beyond_inline(name)
        }
    }

    #[inline(never)]
    fn property_beyond_inline(&self, name: &Name) -> Option<&str> {
        self.more
            .iter()
            .find(|(k, _)| self.key_is(*k, name))
            .and_then(|(_, v)| self.text(*v))
    }

    /// Whether the property name at `k` is `name`.
    #[inline(always)]
    fn key_is(&self, k: Span, name: &Name) -> bool {
        let start = k.start as usize;
        self.buf
            .as_bytes()
            .get(start..start.saturating_add(k.len as usize))
            .is_some_and(|key| name.is(key))
    }
}

/// The first and last eight bytes of `b`, as two words (overlapping when `b` is
/// shorter than 16 bytes; the first and last four, or the first, middle and last
/// byte, when it is shorter than eight). With the length they determine a string
/// of at most 16 bytes, so two such strings are equal when their lengths and keys
/// are.
#[inline(always)]
pub(crate) fn short_key(b: &[u8]) -> (u64, u64) {
    let n = b.len();
    if let (Some(a), Some(z)) = (b.first_chunk::<8>(), b.last_chunk::<8>()) {
        (u64::from_le_bytes(*a), u64::from_le_bytes(*z))
    } else if let (Some(a), Some(z)) = (b.first_chunk::<4>(), b.last_chunk::<4>()) {
        (
            u64::from(u32::from_le_bytes(*a)),
            u64::from(u32::from_le_bytes(*z)),
        )
    } else {
        let at = |i: usize| u64::from(b.get(i).copied().unwrap_or(0));
        (at(0) | at(n / 2) << 8 | at(n.wrapping_sub(1)) << 16, 0)
    }
}

/// Whether two [`short_key`]s are equal, compared as integers (a comparison the
/// compiler may turn into vector loads of a key just stored word by word, which
/// stalls on store forwarding).
#[inline(always)]
pub(crate) fn same_key(a: (u64, u64), b: (u64, u64)) -> bool {
    ((a.0 ^ b.0) | (a.1 ^ b.1)) == 0
}

/// String equality that rejects on length and first byte before comparing the rest.
/// Short strings are compared eight bytes at a time inline rather than through a
/// `memcmp` call.
#[cfg(test)]
fn fast_eq(a: &str, b: &str) -> bool {
    bytes_eq(a.as_bytes(), b.as_bytes())
}

/// String equality on bytes: rejects on length and first byte before comparing the
/// rest, eight bytes at a time inline rather than through a `memcmp` call.
#[inline]
pub(crate) fn bytes_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() || a.first() != b.first() {
        return false;
    }
    if a.len() > 64 {
        return a == b;
    }
    let mut ca = a.chunks_exact(8);
    let mut cb = b.chunks_exact(8);
    for (x, y) in (&mut ca).zip(&mut cb) {
        if u64::from_ne_bytes([x[0], x[1], x[2], x[3], x[4], x[5], x[6], x[7]])
            != u64::from_ne_bytes([y[0], y[1], y[2], y[3], y[4], y[5], y[6], y[7]])
        {
            return false;
        }
    }
    ca.remainder()
        .iter()
        .zip(cb.remainder())
        .all(|(x, y)| x == y)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_replaces_and_get_reads_every_field() {
        let mut c = Context::new().property("a", "1").user_id("u");
        c.set("a", "2");
        c.set("sessionId", "s");
        c.set("currentTime", "2024-01-01T00:00:00Z");
        assert_eq!(c.get("a"), Some("2"));
        assert_eq!(c.get("sessionId"), Some("s"));
        assert_eq!(c.get("userId"), Some("u"));
        assert_eq!(c.get("currentTime"), Some("2024-01-01T00:00:00Z"));
        assert_eq!(c.get("environment"), None);
        assert_eq!(c.get("b"), None);
        assert_eq!(c.properties().count(), 1);
    }

    proptest::proptest! {
        #[test]
        fn short_key_determines_short_strings(a in "[ab\u{e9}]{0,12}", b in "[ab\u{e9}]{0,12}") {
            let (x, y) = (a.as_bytes(), b.as_bytes());
            if x.len() == y.len() && x.len() <= 16 {
                proptest::prop_assert_eq!(same_key(short_key(x), short_key(y)), x == y);
            }
        }

        #[test]
        fn properties_are_found_by_name(a in "p[ab]{0,24}", b in "p[ab]{0,24}") {
            let c = Context::new().property("q", "0").property(&a, "1");
            proptest::prop_assert_eq!(c.get(&b), (a == b).then_some("1"));
        }

        #[test]
        fn bytes_eq_is_equality(a in ".{0,80}", b in ".{0,80}") {
            proptest::prop_assert_eq!(fast_eq(&a, &b), a == b);
            proptest::prop_assert!(fast_eq(&a, &a.clone()));
        }
    }
}
