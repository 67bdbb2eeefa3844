//! [`watch_file`]: a task that reloads a file when its content changes.

use crate::error::FlagsError;
use crate::flags::Flags;
use crate::sources::backoff::fingerprint;
use scalekit_core::Clock;
use std::path::PathBuf;
use std::time::Duration;

/// Watches a file (Unleash JSON, or our TOML form when it ends in `.toml`) and loads
/// it whenever its content changes. The first load happens at once.
///
/// The file is re-read every `interval` and compared by content, not by modification
/// time: that works on every file system, including network mounts and the
/// symlink swaps of Kubernetes config maps, where change notifications are
/// unreliable. Flag files are small, so a read a second costs next to nothing.
///
/// ```no_run
/// # async fn run() {
/// use scalekit_flags::{sources::watch_file, Flags};
/// use std::time::Duration;
/// let flags = Flags::new();
/// let task = watch_file(flags.clone(), "flags.toml", Duration::from_secs(1));
/// // ... serve; task.abort() to stop watching.
/// # }
/// ```
pub fn watch_file<C: Clock + 'static>(
    flags: Flags<C>,
    path: impl Into<PathBuf>,
    interval: Duration,
) -> tokio::task::JoinHandle<()> {
    let path = path.into();
    tokio::spawn(async move {
        let origin = path.display().to_string();
        let toml = path.extension().is_some_and(|e| e == "toml");
        let mut last: Option<u64> = None;
        let mut failing = false;
        let mut tick = tokio::time::interval(interval.max(Duration::from_millis(1)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match std::fs::read_to_string(&path) {
                Ok(text) => {
                    failing = false;
                    let fp = fingerprint(&text);
                    if last == Some(fp) {
                        continue;
                    }
                    last = Some(fp);
                    // Errors are reported through the store's events.
                    let _ = flags.load_text(&text, &origin, toml);
                }
                Err(source) => {
                    if !failing {
                        flags.source_failed(
                            &origin,
                            FlagsError::Io {
                                path: path.clone(),
                                source,
                            },
                        );
                        failing = true;
                    }
                }
            }
        }
    })
}
