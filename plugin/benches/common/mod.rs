//! What the plugin benches share: argument parsing and the tiny test model on disk.

use std::path::PathBuf;

/// The value after `name` in `args`, parsed, or `default`.
pub fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().unwrap_or_else(|_| panic!("{name}: cannot parse {v:?}")))
        .unwrap_or(default)
}

/// `--json PATH`, if given.
pub fn json_path(args: &[String]) -> Option<PathBuf> {
    args.iter().position(|a| a == "--json").and_then(|i| args.get(i + 1)).map(PathBuf::from)
}

/// Writes the tiny test model (from `$MRT_FIXTURES` or `../shared/fixtures`) into a scratch
/// folder named by `tag`, with the engine's cache beside it, and returns the folder.
pub fn tiny_model_dir(tag: &str) -> PathBuf {
    let fixtures = std::env::var_os("MRT_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures"));
    let dir = std::env::temp_dir().join(format!("mrt-live-bench-{tag}-{}", std::process::id()));
    std::env::set_var("MRT_CACHE_DIR", dir.join("cache"));
    mrt::tiny_model::write(&dir, &fixtures).expect("writing the tiny model from the golden fixtures");
    dir
}
