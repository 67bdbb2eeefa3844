//! What the tools need of the stages, provided by whoever knows them (the
//! storefront binary's stage crate): [`StageCatalog`].

use async_trait::async_trait;

/// A stage's prose, from its folder's `about.md`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct About {
    /// The stage's title.
    pub title: String,
    /// What the stage adds and why (paragraphs).
    pub adds: String,
    /// Why it may not pay on one small machine (empty when the file says nothing).
    pub caveat: String,
}

/// A stage file made ready for one isolated run: its databases point at a
/// schema of the run's own, its caches at a Redis namespace of the run's own,
/// and the per-client limits are lifted (every customer of a run comes from one
/// address).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Prepared {
    /// The stage file's text, to pass with `serve --config`.
    pub text: String,
    /// The environment variable the stage reads its ops token from, if its ops
    /// routes are protected.
    pub ops_token_env: Option<String>,
    /// The databases (URLs) that hold the run's schema, dropped by
    /// [`StageCatalog::release`].
    pub schemas: Vec<String>,
    /// The schema's (and the Redis namespace's) name.
    pub tag: String,
}

/// The built-in stages, as the tools see them.
#[async_trait]
pub trait StageCatalog: Send + Sync + std::fmt::Debug {
    /// The built-in stages' numbers, in order.
    fn numbers(&self) -> Vec<u32>;

    /// Stage `number`'s prose, if the stage is built in.
    fn about(&self, number: u32) -> Option<About>;

    /// Why `evolve` cannot run stage `number` (`None`: it can).
    fn not_evolvable(&self, _number: u32) -> Option<String> {
        None
    }

    /// Stage `number`'s file made ready for one run named `tag` (lower-case
    /// letters, digits and `_`): the schemas are created here.
    async fn prepare(&self, number: u32, tag: &str) -> Result<Prepared, String>;

    /// Undoes [`StageCatalog::prepare`]: drops the run's schemas (best effort).
    async fn release(&self, prepared: &Prepared);
}
