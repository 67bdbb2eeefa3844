//! The file's shape, as serde reads it (every value with its place in the
//! text).

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFile {
    #[serde(default)]
    pub(crate) epoch: u64,
    pub(crate) databases: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    pub(crate) hot_keys: usize,
    #[serde(default)]
    pub(crate) tables: BTreeMap<String, Spanned<RawTable>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTable {
    pub(crate) database: Option<Spanned<String>>,
    pub(crate) broadcast: Option<Spanned<bool>>,
    pub(crate) bind: Option<Spanned<String>>,
    pub(crate) databases: Option<Spanned<RawDim>>,
    pub(crate) tables: Option<Spanned<RawDim>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum ShardList {
    Names(Vec<String>),
    Count(i64),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDim {
    pub(crate) key: Spanned<String>,
    pub(crate) hash: Option<Spanned<ShardList>>,
    pub(crate) engine: Option<Spanned<String>>,
    pub(crate) slots: Option<Spanned<i64>>,
    pub(crate) slot_hash: Option<Spanned<String>>,
    pub(crate) modulo: Option<Spanned<ShardList>>,
    pub(crate) ranges: Option<Spanned<Vec<Spanned<RawRange>>>>,
    pub(crate) time: Option<Spanned<String>>,
    pub(crate) retention: Option<Spanned<i64>>,
    pub(crate) ahead: Option<Spanned<i64>>,
    #[serde(default)]
    pub(crate) directory: BTreeMap<String, Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRange {
    pub(crate) from: Option<Spanned<i64>>,
    pub(crate) to: Option<Spanned<i64>>,
    pub(crate) shard: Spanned<String>,
}
