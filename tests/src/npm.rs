//! Node packages from npm for tests (playwright-core for the web page's browser tests), each
//! under `$TASKFLOW_CI_CACHE` (see [`crate::pyvenv::cache_dir`]) in a directory named after
//! the pinned version, installed once and reused by later runs. Needs `node` and `npm`, and
//! the npm registry the first time.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::Mutex,
};

/// The `--prefix` directory holding `package@version` (its `node_modules/<package>`),
/// installing it first when absent. Serialised: the tests of one binary run in parallel.
pub fn package(package: &str, version: &str) -> PathBuf {
    static INSTALL: Mutex<()> = Mutex::new(());
    let _guard = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    let prefix = crate::pyvenv::cache_dir().join(format!("{package}-{version}"));
    if installed(&prefix, package, version) {
        return prefix;
    }
    eprintln!("installing {package}@{version} into {}", prefix.display());
    let _ = std::fs::remove_dir_all(&prefix);
    std::fs::create_dir_all(&prefix).expect("create the npm cache directory");
    let ok = Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--prefix"])
        .arg(&prefix)
        .arg(format!("{package}@{version}"))
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "npm install {package}@{version} failed (node and npm are required)"
    );
    assert!(
        installed(&prefix, package, version),
        "{package}@{version} missing after npm install"
    );
    prefix
}

/// Whether `prefix` holds exactly `package@version` (a half-finished install has no
/// matching `package.json`).
fn installed(prefix: &Path, package: &str, version: &str) -> bool {
    let manifest = prefix
        .join("node_modules")
        .join(package)
        .join("package.json");
    std::fs::read_to_string(manifest)
        .ok()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .is_some_and(|v| v["version"] == version)
}
