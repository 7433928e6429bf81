//! Key ceremonies: a root held by several people (`root init --key-count`),
//! drafts signed one holder per run (`root sign`), keys given and taken
//! roles (`role add|remove`), and a separate revoker key signing suspensions
//! while the vendor key stays offline. Attacks are named `attack_*`.

use std::path::{Path, PathBuf};

use kaching_core::armor::dearmor;
use kaching_core::root::{verify_initial_root, Role, TrustChain};
use kaching_core::{DocKind, PublicKey};

use crate::common::{bare, stderr, stdout, Env, PASS};

/// Another passphrase: the revoker key's holder is not the vendor.
const REVOKER_PASS: &str = "online box passphrase";

fn root_bytes(p: &Path) -> Vec<u8> {
    dearmor(&std::fs::read(p).unwrap(), Some(DocKind::Root)).unwrap()
}

/// The vendor directory's chain, walked as a verifier walks it.
fn chain(env: &Env) -> TrustChain {
    let roots = env.dir.join("roots");
    let mut chain =
        TrustChain::new(verify_initial_root(&root_bytes(&roots.join("root-v1.root"))).unwrap());
    let mut n = 2;
    while roots.join(format!("root-v{n}.root")).exists() {
        let b = root_bytes(&roots.join(format!("root-v{n}.root")));
        assert_eq!(
            chain
                .update(
                    [b.as_slice()],
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap()
                        .as_secs()
                )
                .versions,
            vec![n]
        );
        n += 1;
    }
    chain
}

/// `root init --key-count 3 --threshold 2`: the three holders' key files.
fn two_of_three(env: &Env) -> Vec<PathBuf> {
    let out = env
        .cmd()
        .args(["root", "init", "--key-count", "3", "--threshold", "2"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("all 3 root keys get the one passphrase"),
        "a shared passphrase is pointed out: {}",
        stderr(&out)
    );
    let mut keys: Vec<PathBuf> = std::fs::read_dir(env.dir.join("root-keys"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "key"))
        .collect();
    keys.sort();
    assert_eq!(keys.len(), 3);
    keys
}

fn kid_of_pub(p: &Path) -> String {
    PublicKey::from_pem(&std::fs::read_to_string(p).unwrap())
        .unwrap()
        .kid()
        .to_hex()
}

/// `key new --out revoker.key` in the temp folder (no vendor directory needed).
fn revoker_key(env: &Env) -> PathBuf {
    let path = env.tmp.path().join("revoker.key");
    bare(env.tmp.path())
        .args(["key", "new", "--out", "revoker.key"])
        .env("KACHING_PASSPHRASE", REVOKER_PASS)
        .assert()
        .success();
    assert!(env.tmp.path().join("revoker.pub").exists());
    path
}

fn copy_dir(from: &Path, to: &Path, skip: &[&str]) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let name = e.file_name();
        if skip.iter().any(|s| name == *s) {
            continue;
        }
        if e.path().is_dir() {
            copy_dir(&e.path(), &to.join(&name), &[]);
        } else {
            std::fs::copy(e.path(), to.join(&name)).unwrap();
        }
    }
}

/// A holder signs `draft` with `key`, away from the vendor directory.
fn holder_signs(env: &Env, draft: &Path, key: &Path) -> std::process::Output {
    bare(env.tmp.path())
        .args(["root", "sign"])
        .arg(draft)
        .arg("--key")
        .arg(key)
        .env("KACHING_PASSPHRASE", PASS)
        .output()
        .unwrap()
}

#[test]
fn two_of_three_holders_hand_the_revoker_role_to_an_online_key() {
    let env = Env::new();
    let holders = two_of_three(&env);
    let v1 = chain(&env).current().root.clone();
    let vendor_kid = env.pubkey().iter().next().unwrap().kid();
    assert_eq!(v1.roles[&Role::Root].threshold, 2);
    assert_eq!(v1.roles[&Role::Root].kids.len(), 3);
    assert_eq!(v1.roles[&Role::Issuer].kids, vec![vendor_kid]);

    let revoker = revoker_key(&env);
    let revoker_kid = kid_of_pub(&revoker.with_extension("pub"));
    let out = env
        .cmd()
        .args(["role", "add", "revoker"])
        .arg(revoker.with_extension("pub"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let draft = env.dir.join("roots").join("root-v2.draft");
    assert!(stdout(&out).contains("2 of"), "{}", stdout(&out));
    // Take the vendor key out of the revoker role in the same version.
    env.cmd()
        .args(["role", "remove", "revoker", &vendor_kid.to_hex()])
        .assert()
        .success();

    // The draft travels: each holder signs on their own machine.
    let one = holder_signs(&env, &draft, &holders[0]);
    assert!(one.status.success(), "{}", stderr(&one));
    assert!(stdout(&one).contains("pass"), "{}", stdout(&one));
    assert!(!env.dir.join("roots").join("root-v2.root").exists());
    let two = holder_signs(&env, &draft, &holders[1]);
    assert!(two.status.success(), "{}", stderr(&two));
    assert!(
        stdout(&two).contains("root install"),
        "without the vendor directory the holder is told to bring it back: {}",
        stdout(&two)
    );
    let out = env.cmd().args(["root", "install"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!draft.exists(), "the installed draft is cleared");
    let v2 = chain(&env).current().root.clone();
    assert_eq!(v2.version, 2);
    assert_eq!(
        v2.roles[&Role::Revoker]
            .kids
            .iter()
            .map(|k| k.to_hex())
            .collect::<Vec<_>>(),
        vec![revoker_kid.clone()]
    );

    // Suspensions now need the revoker key; the vendor key is refused.
    let (id, _) = env.issue(&["--customer", "Acme", "--tier", "standard"]);
    let out = env.cmd().args(["suspend", &id]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("not a revoker in root v2") && stderr(&out).contains("--revoker-key"),
        "{}",
        stderr(&out)
    );
    // The online box holds a copy without the vendor key and root keys.
    let online = env.tmp.path().join("online");
    copy_dir(&env.dir, &online, &["vendor.key", "root-keys"]);
    let out = env
        .cmd()
        .env("KACHING_DIR", &online)
        .args(["issue", "--customer", "Initech", "--tier", "standard"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--revoker-key"), "{}", stderr(&out));
    let out = env
        .cmd()
        .env("KACHING_DIR", &online)
        .args(["suspend", &id, "--revoker-key"])
        .arg(&revoker)
        .env("KACHING_PASSPHRASE", REVOKER_PASS)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let env = Env {
        tmp: env.tmp,
        dir: online,
    };
    let list = std::fs::read(env.dir.join("revocations.cose")).unwrap();
    let revokers = chain(&env).current().root.keys_for(Role::Revoker);
    let verified = kaching_core::verify_revocation_list(&list, &revokers).unwrap();
    assert_eq!(verified.kid.to_hex(), revoker_kid);
    // The vendor's own tools read the list signed by the revoker key.
    env.cmd().args(["revocations", "show"]).assert().success();
}

#[test]
fn attack_root_draft_signed_by_a_key_of_no_root_is_refused() {
    let env = Env::new();
    let _holders = two_of_three(&env);
    let revoker = revoker_key(&env);
    env.cmd()
        .args(["root", "rotate", "--expires", "5y"])
        .assert()
        .success();
    let draft = env.dir.join("roots").join("root-v2.draft");
    let before = std::fs::read(&draft).unwrap();
    // In the vendor directory the current root is known: a key that is a
    // root key of neither version is refused before anything is written.
    let out = env
        .cmd()
        .args(["root", "sign", "--key"])
        .arg(&revoker)
        .env("KACHING_PASSPHRASE", REVOKER_PASS)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("count for nothing"),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read(&draft).unwrap(), before);
    // The vendor key (issuer and revoker, not a root key) cannot sign it either.
    let out = env.cmd().args(["root", "sign"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(std::fs::read(&draft).unwrap(), before);
}

#[test]
fn attack_root_holder_signing_twice_counts_once() {
    let env = Env::new();
    let holders = two_of_three(&env);
    env.cmd()
        .args(["root", "rotate", "--threshold", "3"])
        .assert()
        .success();
    let draft = env.dir.join("roots").join("root-v2.draft");
    assert!(holder_signs(&env, &draft, &holders[2]).status.success());
    let again = holder_signs(&env, &draft, &holders[2]);
    assert_eq!(again.status.code(), Some(2), "{}", stderr(&again));
    assert!(
        stderr(&again).contains("already signed"),
        "{}",
        stderr(&again)
    );
    // One signature, threshold 2: installing it is refused, nothing written.
    let out = env.cmd().args(["root", "install"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("nothing was installed"),
        "{}",
        stderr(&out)
    );
    assert!(!env.dir.join("roots").join("root-v2.root").exists());
    // `root show` tells the next holder where things stand.
    let show = env.cmd().args(["root", "show"]).output().unwrap();
    assert!(
        stdout(&show).contains("pending  root v2"),
        "{}",
        stdout(&show)
    );
}

#[test]
fn rotated_vendor_key_issues_nothing_until_the_holders_sign() {
    let env = Env::new();
    let holders = two_of_three(&env);
    let out = env.cmd().args(["key", "rotate"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("root draft"), "{}", stdout(&out));
    // Verifiers would refuse what the new key signs: licensegen refuses too.
    let out = env
        .cmd()
        .args(["issue", "--customer", "Acme", "--tier", "standard"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("is not an issuer in root v1"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("waiting for signatures"),
        "{}",
        stderr(&out)
    );
    // Two holders sign in the vendor directory: installed on the second.
    for h in &holders[..2] {
        let out = env
            .cmd()
            .args(["root", "sign", "--key"])
            .arg(h)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let chain = chain(&env);
    let issuer = &chain.current().root.roles[&Role::Issuer].kids;
    assert_eq!(issuer, &vec![env.pubkey().iter().next().unwrap().kid()]);
    let (_, file) = env.issue(&["--customer", "Acme", "--tier", "standard"]);
    let bytes = std::fs::read(&file).unwrap();
    let keys = chain.current().root.keys_for(Role::Issuer);
    kaching_core::verify_license(&bytes, &keys).unwrap();
}
