//! The registry of built-in stages, made from the folder tree: every folder
//! `stages/NN-name/` with a `stage.toml` is a stage, its `about.md` the prose that
//! `evolve` puts on the evolution page. Adding a stage is adding its folder; no
//! list in the code names the stages.

use std::fmt::Write as _;
use std::path::Path;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = std::env::var("CARGO_MANIFEST_DIR")?;
    let stages = Path::new(&root).join("../../stages");
    println!("cargo:rerun-if-changed={}", stages.display());
    let mut dirs: Vec<String> = std::fs::read_dir(&stages)
        .map_err(|e| format!("cannot read {}: {e}", stages.display()))?
        .filter_map(Result::ok)
        .filter(|e| e.path().join("stage.toml").is_file())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    dirs.sort();
    let mut out = String::from(
        "/// The stages shipped with the storefront, in order (made by `build.rs` from\n\
         /// the folders under `stages/`).\n\
         pub const BUILTIN: &[BuiltinStage] = &[\n",
    );
    for dir in &dirs {
        let folder = stages.join(dir);
        for file in ["stage.toml", "about.md"] {
            let path = folder.join(file);
            if !path.is_file() {
                return Err(format!("stage folder stages/{dir} has no {file}").into());
            }
            println!("cargo:rerun-if-changed={}", path.display());
        }
        let _ = writeln!(
            out,
            "    BuiltinStage {{ dir: {dir:?}, file: include_str!({:?}), about: include_str!({:?}) }},",
            folder.join("stage.toml").display().to_string(),
            folder.join("about.md").display().to_string(),
        );
    }
    out.push_str("];\n");
    let dest = Path::new(&std::env::var("OUT_DIR")?).join("stages.rs");
    std::fs::write(&dest, out).map_err(|e| format!("cannot write {}: {e}", dest.display()))?;
    Ok(())
}
