//! Test harness: a fresh vendor directory per test, and a `licensegen`
//! command preset with a fast (test-only) scrypt work factor.

#![allow(dead_code, clippy::unwrap_used)] // test helpers: a panic is the failure report

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use tempfile::TempDir;

pub const PASS: &str = "correct horse battery staple";

pub struct Env {
    pub tmp: TempDir,
    pub dir: PathBuf,
}

/// A bare command: no vendor directory, no passphrase.
pub fn bare(cwd: &Path) -> Command {
    let mut c = Command::cargo_bin("licensegen").unwrap();
    c.current_dir(cwd)
        .env("KACHING_TEST_SCRYPT_LOG_N", "4")
        .env_remove("KACHING_PASSPHRASE")
        .env_remove("KACHING_DIR")
        .env_remove("KACHING_IDENTITY");
    c
}

impl Env {
    /// A temp folder with a vendor directory `vendor/` in it.
    pub fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("vendor");
        bare(tmp.path())
            .args(["init", "vendor", "--issuer", "Example Software"])
            .env("KACHING_PASSPHRASE", PASS)
            .assert()
            .success();
        Env { tmp, dir }
    }

    /// A command run from the temp folder with KACHING_DIR and the passphrase set.
    pub fn cmd(&self) -> Command {
        let mut c = bare(self.tmp.path());
        c.env("KACHING_DIR", &self.dir)
            .env("KACHING_PASSPHRASE", PASS);
        c
    }

    /// Issues a license; returns its id and file.
    pub fn issue(&self, args: &[&str]) -> (String, PathBuf) {
        let out = self.cmd().arg("issue").args(args).output().unwrap();
        assert!(
            out.status.success(),
            "issue failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        parse_issued(&String::from_utf8(out.stdout).unwrap())
    }

    /// Every file under the vendor directory with its bytes.
    pub fn snapshot(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        let mut m = BTreeMap::new();
        walk(&self.dir, &mut m);
        m
    }

    pub fn pubkey(&self) -> kaching_core::TrustedKeys {
        let pem = std::fs::read_to_string(self.dir.join("vendor.pub")).unwrap();
        kaching_core::TrustedKeys::from_pem_bundle(&pem).unwrap()
    }

    /// The revocation list version on disk.
    pub fn revocation_version(&self) -> u64 {
        let bytes = std::fs::read(self.dir.join("revocations.cose")).unwrap();
        kaching_core::verify_revocation_list(&bytes, &self.pubkey())
            .unwrap()
            .list
            .version
    }
}

fn walk(dir: &Path, m: &mut BTreeMap<PathBuf, Vec<u8>>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            walk(&p, m);
        } else {
            m.insert(p.clone(), std::fs::read(&p).unwrap());
        }
    }
}

/// Reads the id and file from `issue` output.
pub fn parse_issued(stdout: &str) -> (String, PathBuf) {
    let id = stdout
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("issued license "))
        .unwrap()
        .to_string();
    let file = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("file"))
        .unwrap()
        .trim()
        .into();
    (id, file)
}

pub fn stdout(out: &std::process::Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

pub fn stderr(out: &std::process::Output) -> String {
    String::from_utf8(out.stderr.clone()).unwrap()
}
