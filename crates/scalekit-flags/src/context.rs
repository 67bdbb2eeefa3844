//! The evaluation context: who is asking, from where, and when.

/// What a toggle is evaluated against: Unleash's context fields plus free-form
/// properties. Build it once per request; evaluation borrows it and never copies it.
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
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Context {
    /// `userId`.
    pub user_id: Option<String>,
    /// `sessionId`.
    pub session_id: Option<String>,
    /// `remoteAddress` (an IPv4 or IPv6 address).
    pub remote_address: Option<String>,
    /// `environment`.
    pub environment: Option<String>,
    /// `appName`.
    pub app_name: Option<String>,
    /// `currentTime` (RFC 3339). When absent, date constraints use the wall clock.
    pub current_time: Option<String>,
    /// Any other field, by name.
    pub properties: Vec<(String, String)>,
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
    Property(Box<str>),
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
            other => Field::Property(other.into()),
        }
    }
}

impl Context {
    /// An empty context.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `userId`.
    pub fn user_id(mut self, v: impl Into<String>) -> Self {
        self.user_id = Some(v.into());
        self
    }

    /// Sets `sessionId`.
    pub fn session_id(mut self, v: impl Into<String>) -> Self {
        self.session_id = Some(v.into());
        self
    }

    /// Sets `remoteAddress`.
    pub fn remote_address(mut self, v: impl Into<String>) -> Self {
        self.remote_address = Some(v.into());
        self
    }

    /// Sets `environment`.
    pub fn environment(mut self, v: impl Into<String>) -> Self {
        self.environment = Some(v.into());
        self
    }

    /// Sets `appName`.
    pub fn app_name(mut self, v: impl Into<String>) -> Self {
        self.app_name = Some(v.into());
        self
    }

    /// Sets `currentTime` (RFC 3339, for example `2024-05-01T12:00:00Z`).
    pub fn current_time(mut self, v: impl Into<String>) -> Self {
        self.current_time = Some(v.into());
        self
    }

    /// Sets a property (replacing an earlier value of the same name). A known field
    /// name (`userId`, `sessionId`, ...) sets that field.
    pub fn property(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.set(name.into(), value.into());
        self
    }

    /// Sets any field or property by name.
    pub fn set(&mut self, name: String, value: String) {
        match name.as_str() {
            "userId" => self.user_id = Some(value),
            "sessionId" => self.session_id = Some(value),
            "remoteAddress" => self.remote_address = Some(value),
            "environment" => self.environment = Some(value),
            "appName" => self.app_name = Some(value),
            "currentTime" => self.current_time = Some(value),
            _ => match self.properties.iter_mut().find(|(k, _)| *k == name) {
                Some(slot) => slot.1 = value,
                None => self.properties.push((name, value)),
            },
        }
    }

    /// Any field or property by its Unleash name.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.field(&Field::parse(name))
    }

    #[inline]
    pub(crate) fn field(&self, f: &Field) -> Option<&str> {
        match f {
            Field::UserId => self.user_id.as_deref(),
            Field::SessionId => self.session_id.as_deref(),
            Field::RemoteAddress => self.remote_address.as_deref(),
            Field::Environment => self.environment.as_deref(),
            Field::AppName => self.app_name.as_deref(),
            Field::CurrentTime => self.current_time.as_deref(),
            Field::Property(name) => {
                self.properties.iter().find(|(k, _)| k.as_str() == &**name).map(|(_, v)| v.as_str())
            }
        }
    }
}
