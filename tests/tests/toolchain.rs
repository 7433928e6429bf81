//! The README's promise about the Rust toolchain is true of Cargo.lock.
//!
//! `rust-version` in the workspace Cargo.toml and the README both name the
//! oldest Rust that builds and tests KACHING. A dependency bump can quietly
//! raise that floor; this test reads every locked package's own
//! `rust-version` through `cargo metadata` and fails when one needs more.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// "1.91" or "1.89.0" as a comparable (major, minor, patch).
fn version(text: &str) -> (u32, u32, u32) {
    let mut parts = text.trim().split('.').map(|p| p.parse::<u32>().unwrap());
    let major = parts.next().unwrap();
    let minor = parts.next().unwrap_or(0);
    let patch = parts.next().unwrap_or(0);
    (major, minor, patch)
}

/// The workspace's declared `rust-version`.
fn declared() -> String {
    let manifest = std::fs::read_to_string(workspace().join("Cargo.toml")).unwrap();
    let line = manifest
        .lines()
        .find(|l| l.trim_start().starts_with("rust-version"))
        .expect("the workspace Cargo.toml declares rust-version");
    line.split('"').nth(1).unwrap().to_string()
}

#[test]
fn rust_version_covers_every_locked_dependency() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(workspace())
        .args([
            "metadata",
            "--locked",
            "--offline",
            "--format-version",
            "1",
            "--filter-platform",
            "x86_64-unknown-linux-gnu",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let used: std::collections::HashSet<&str> = meta["resolve"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap())
        .collect();
    let floor = declared();
    let mut too_new = Vec::new();
    for p in meta["packages"].as_array().unwrap() {
        let (Some(id), Some(needs)) = (p["id"].as_str(), p["rust_version"].as_str()) else {
            continue;
        };
        if used.contains(id) && version(needs) > version(&floor) {
            too_new.push(format!("{} {} needs Rust {needs}", p["name"], p["version"]));
        }
    }
    assert!(
        too_new.is_empty(),
        "Cargo.toml says rust-version = \"{floor}\" but the lock needs more: {too_new:?}; \
         raise rust-version (and the README) or pin older versions"
    );
}

#[test]
fn readme_names_the_declared_rust_version() {
    let readme = std::fs::read_to_string(workspace().join("README.md")).unwrap();
    let floor = declared();
    assert!(
        readme.contains(&format!("Rust toolchain ({floor} or newer)")),
        "README must say \"Rust toolchain ({floor} or newer)\", as Cargo.toml's rust-version does"
    );
}
