//! The storefront's stages: the stage file (`stages/NN-name/stage.toml`, each
//! section parsed and checked by the crate that uses it), the built-in stages,
//! and the composition root that builds what a stage file asks for.
//!
//! | module | what |
//! | --- | --- |
//! | [`config`] | [`StageConfig`](config::StageConfig): the stage file, its sections, the built-in stages |
//! | [`compose`] | [`build`](compose::build): one process of a stage, from its file to a serving [`App`](compose::App) |
//! | [`supervisor`] | stage 4 on: the gateway and the instance processes it keeps running |
//! | [`catalog`] | the built-in stages as the tools see them (prose, a file prepared for one run) |
//! | [`seed`] | a made-up catalog and accounts, in batches |

pub mod catalog;
pub mod compose;
pub mod config;
pub mod seed;
pub mod supervisor;
