//! The routing configuration loader: any text either loads or fails with a
//! position inside the text, never a panic; whatever loads builds a router
//! (with the built-in engine), and routing keys, ranges and scans through it
//! never panics either.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scalekit_shard::{Engines, Op, Query, RouterConfig};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match RouterConfig::from_toml(text) {
        Ok(config) => {
            let Ok(router) = config.build(&Engines::new()) else { return };
            let tables: Vec<String> = router.tables().map(str::to_owned).collect();
            let now = 1_795_482_000;
            for t in &tables {
                for key in [0i64, -1, 42, i64::MIN, i64::MAX, 1_795_482_000] {
                    for col in ["id", "user_id", "created_at", "key", "k"] {
                        let owned = router.locate(t, &Query::key(col, key));
                        let lent = router.locate_with(t, &Query::key(col, key), |d, n| (d.to_owned(), n.to_owned()));
                        assert_eq!(
                            owned.map(|t| (t.database.to_string(), t.table.to_string())),
                            lent,
                            "locate and locate_with disagree"
                        );
                        let _ = router.locate(t, &Query::key(col, "acme"));
                        let _ = router.route_at(t, &Query::range(col, key..), Op::Read, now);
                        let _ = router.route_at(t, &Query::range(col, ..=key), Op::Write, now);
                        let _ = router.route_at(t, &Query::key(col, key), Op::Write, now);
                        let _ = router.route_at(t, &Query::key(col, key), Op::Read, now);
                        let _ = router.route_at(t, &Query::range(col, key..key), Op::Read, now);
                    }
                }
                let _ = router.route_at(t, &Query::all(), Op::Write, now);
                let _ = router.time_tables(t, now);
            }
            let _ = router.stats();
        }
        Err(e) => {
            assert!(e.line() >= 1 && e.column() >= 1);
            assert!(e.line() <= text.split('\n').count(), "line {} outside the text", e.line());
            assert!(!e.to_string().is_empty());
        }
    }
});
