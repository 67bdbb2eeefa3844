//! Impression events: one per evaluation of a toggle whose `impressionData` is on,
//! handed to the listeners registered with
//! [`FlagsBuilder::on_impression`](crate::FlagsBuilder::on_impression), as
//! Unleash's SDKs emit their `impression` event.

use crate::context::Context;
use std::sync::Arc;

/// Which call produced an impression (Unleash's `eventType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ImpressionKind {
    /// [`Flags::is_enabled`](crate::Flags::is_enabled): Unleash's `isEnabled`.
    IsEnabled,
    /// [`Flags::variant`](crate::Flags::variant) or
    /// [`Flags::evaluate`](crate::Flags::evaluate): Unleash's `getVariant`.
    GetVariant,
}

impl ImpressionKind {
    /// Unleash's name for it: `isEnabled` or `getVariant`.
    pub fn as_str(self) -> &'static str {
        match self {
            ImpressionKind::IsEnabled => "isEnabled",
            ImpressionKind::GetVariant => "getVariant",
        }
    }
}

/// One evaluation of a toggle with `impressionData: true`.
///
/// It borrows everything from the evaluation, so emitting one allocates nothing;
/// a listener that keeps it copies what it needs. Evaluations of parents (for
/// dependent toggles) and through a [`FlagsSnapshot`](crate::FlagsSnapshot) emit
/// none, and neither do toggles that do not exist.
///
/// ```
/// use scalekit_flags::{Context, Flags, ImpressionKind};
/// use std::sync::{Arc, Mutex};
///
/// let seen = Arc::new(Mutex::new(Vec::new()));
/// let sink = seen.clone();
/// let flags = Flags::builder()
///     .on_impression(move |e| {
///         sink.lock().unwrap().push((e.feature_name.to_owned(), e.enabled, e.kind, e.variant.map(str::to_owned)));
///     })
///     .build();
/// flags.load_json(r#"{"features":[
///   {"name":"tracked","enabled":true,"impressionData":true},
///   {"name":"quiet","enabled":true}]}"#, "inline").unwrap();
/// let ctx = Context::new().user_id("42");
/// flags.is_enabled("tracked", &ctx);
/// flags.variant("tracked", &ctx);
/// flags.is_enabled("quiet", &ctx); // impressionData is off: no event
/// assert_eq!(*seen.lock().unwrap(), vec![
///     ("tracked".to_owned(), true, ImpressionKind::IsEnabled, None),
///     ("tracked".to_owned(), true, ImpressionKind::GetVariant, Some("disabled".to_owned())),
/// ]);
/// ```
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct ImpressionEvent<'a> {
    /// The toggle evaluated.
    pub feature_name: &'a str,
    /// Whether it was on.
    pub enabled: bool,
    /// The variant handed out (`disabled` when none), for [`ImpressionKind::GetVariant`].
    pub variant: Option<&'a str>,
    /// The context it was evaluated for.
    pub context: &'a Context,
    /// Which call it was.
    pub kind: ImpressionKind,
}

/// A listener registered with
/// [`FlagsBuilder::on_impression`](crate::FlagsBuilder::on_impression).
pub(crate) type ImpressionHook = Arc<dyn Fn(&ImpressionEvent<'_>) + Send + Sync>;
