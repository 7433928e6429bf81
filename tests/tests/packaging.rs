//! The systemd units shipped in the .deb packages are valid, hardened, and
//! start the daemons the way their docs say.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn units() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/systemd");
    let mut units: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "service"))
        .collect();
    units.sort();
    assert_eq!(units.len(), 2, "one unit per daemon in {}", dir.display());
    units
}

#[test]
fn systemd_units_pass_systemd_analyze_verify() {
    let probe = Command::new("systemd-analyze").arg("--version").output();
    if probe.is_err() {
        let msg = "systemd-analyze not installed: skipping the unit check (apt-get install systemd to run it)";
        assert!(std::env::var("CI").is_err(), "under CI=true: {msg}");
        eprintln!("{msg}");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    // verify insists the ExecStart binary exists: point it at one that does.
    let stand_in = std::env::current_exe().unwrap();
    for unit in units() {
        let text = std::fs::read_to_string(&unit).unwrap();
        let name = unit.file_name().unwrap();
        let binary = format!(
            "/usr/bin/{}",
            name.to_string_lossy().trim_end_matches(".service")
        );
        assert!(
            text.contains(&format!("ExecStart={binary} ")),
            "{name:?} starts {binary}"
        );
        let copy = tmp.path().join(name);
        std::fs::write(&copy, text.replace(&binary, &stand_in.to_string_lossy())).unwrap();
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg(&copy)
            .output()
            .unwrap();
        // verify exits 0 on unknown keys and bad values, only warning:
        // any word from it is a defect in the unit.
        assert!(
            out.status.success() && out.stderr.is_empty() && out.stdout.is_empty(),
            "{name:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn systemd_units_confine_the_daemons() {
    for unit in units() {
        let text = std::fs::read_to_string(&unit).unwrap();
        for line in [
            "ProtectSystem=strict",
            "NoNewPrivileges=yes",
            "CapabilityBoundingSet=",
            "PrivateTmp=yes",
            "UMask=0077",
            "StateDirectoryMode=0700",
            "LimitNOFILE=",
            "KillSignal=SIGTERM",
        ] {
            assert!(
                text.lines().any(|l| l.starts_with(line)),
                "{unit:?} lost {line}"
            );
        }
    }
}

#[test]
fn verifier_unit_lets_connected_mode_mirror_the_revocation_list() {
    // The relay worker replaces /etc/kaching/revocations.krl atomically: with
    // ProtectSystem=strict that folder must be listed as writable.
    let unit = units()
        .into_iter()
        .find(|u| u.ends_with("kaching-verifier.service"))
        .unwrap();
    let text = std::fs::read_to_string(unit).unwrap();
    assert!(text.contains("ReadWritePaths=/etc/kaching\n"));
    let defaults = kaching_verifier::Config::default();
    assert_eq!(
        defaults.revocations.parent(),
        Some(Path::new("/etc/kaching")),
        "the unit's writable folder must hold the default revocation list"
    );
}
