//! The real servers a test needs, found through the environment.
//!
//! `.ci/run` starts them and sets the variables. On a laptop without them a test
//! prints that it was skipped and why; under `CI` (the variable is set) a missing
//! server is a failure, so a CI run never passes by skipping.

/// The value of `var`, or `None` after printing why `test` is skipped.
///
/// # Panics
///
/// Under `CI` when `var` is unset: CI must not pass by skipping.
///
/// ```
/// use scalekit_test_support::services::required;
/// // SCALEKIT_EXAMPLE_URL is not set here (and CI is not set in doc tests run by hand).
/// if std::env::var_os("CI").is_none() {
///     assert_eq!(required("SCALEKIT_EXAMPLE_URL", "a_test", "a made-up server"), None);
/// }
/// ```
pub fn required(var: &str, test: &str, what: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => Some(v),
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "{test}: {var} is not set under CI (it needs {what}; .ci/run sets it)"
            );
            eprintln!("skipped {test}: {var} is not set (it needs {what})");
            None
        }
    }
}

/// Whether `test` can run, given `can` (what the host lacks, if anything):
/// `false` after printing why it is skipped.
///
/// # Panics
///
/// Under `CI` when `can` is an error: CI must not pass by skipping.
///
/// ```
/// use scalekit_test_support::services::runnable;
/// assert!(runnable("a_test", Ok::<(), String>(())));
/// if std::env::var_os("CI").is_none() {
///     assert!(!runnable("a_test", Err("no such tool here")));
/// }
/// ```
pub fn runnable<E: std::fmt::Display>(test: &str, can: Result<(), E>) -> bool {
    match can {
        Ok(()) => true,
        Err(why) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "{test}: {why} (under CI, .ci/run provides it)"
            );
            eprintln!("skipped {test}: {why}");
            false
        }
    }
}

/// `SCALEKIT_REDIS_URL` (a single Redis server), or `None` after saying why
/// `test` is skipped.
pub fn redis_url(test: &str) -> Option<String> {
    required("SCALEKIT_REDIS_URL", test, "a Redis server")
}

/// `SCALEKIT_PG_URL` (a PostgreSQL database), or `None` after saying why `test`
/// is skipped.
pub fn pg_url(test: &str) -> Option<String> {
    required("SCALEKIT_PG_URL", test, "a PostgreSQL server")
}

/// `SCALEKIT_REDIS_CLUSTER_URLS` (a Redis Cluster's nodes, comma-separated), or
/// `None` after saying why `test` is skipped.
pub fn redis_cluster_urls(test: &str) -> Option<String> {
    required(
        "SCALEKIT_REDIS_CLUSTER_URLS",
        test,
        "a Redis Cluster (deploy/services.sh up starts one)",
    )
}
