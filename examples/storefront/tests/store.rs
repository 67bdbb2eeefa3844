//! The storage contract, run against both backends: SQLite (always) and PostgreSQL
//! (with `SCALEKIT_PG_URL`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

#[path = "common/suite.rs"]
mod suite;

use suite::*;

/// Writes a `#[tokio::test]` per backend for each `async fn(Arc<dyn Store>)`.
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let (store, _dir) = crate::common::sqlite().await;
                    super::$name(store).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let Some((store, _schema)) = crate::common::postgres(stringify!($name)).await else { return };
                    super::$name(store).await;
                }
            )*
        }
    };
}

both_backends!(
    catalog_lists_pages_and_categories,
    search_matches_every_word_and_binds_input,
    accounts_and_sessions,
    cart_adds_caps_and_removes,
    checkout_writes_the_order_and_empties_the_cart,
    checkout_refuses_what_is_not_in_stock,
    concurrent_checkouts_never_oversell,
);
