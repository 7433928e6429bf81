//! What licensegen writes opens in tools nobody here wrote: documents name
//! the alg the vendor chose (EdDSA −8 by default) and stock pycose verifies
//! them; the private key inside `vendor.key` is PKCS#8 v1, which OpenSSL
//! reads. Tests that need python3 + PyPI or openssl print one `skipped:`
//! line and pass without them, except under `CI=true`, where they fail.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use coset::TaggedCborSerializable;

use kaching_testkit::{pip_venv, skip, venv_bin};

use super::common::{stderr, stdout, Env, PASS};

/// The alg value in a document's protected header (either spelling).
fn alg_of(path: &Path) -> i64 {
    let bytes = std::fs::read(path).unwrap();
    let binary = if kaching_core::armor::is_armored(&bytes) {
        kaching_core::armor::dearmor(&bytes, None).unwrap()
    } else {
        bytes
    };
    let sign1 = coset::CoseSign1::from_tagged_slice(&binary).unwrap();
    match sign1.protected.header.alg {
        Some(coset::Algorithm::Assigned(a)) => a as i64,
        other => panic!("{}: alg {other:?}", path.display()),
    }
}

#[test]
fn documents_name_eddsa_by_default_and_ed25519_when_the_vendor_sets_it() {
    let env = Env::new();
    let list = env.dir.join("revocations.cose");
    let list_asc = env.dir.join("revocations.asc");
    let (id, default) = env.issue(&["--customer", "Alg Co", "--tier", "standard"]);
    assert_eq!(alg_of(&default), -8, "a license names EdDSA by default");
    assert_eq!(alg_of(&list), -8, "so does init's revocation list");
    let config = env.dir.join("kaching.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("\nalg = \"EdDSA\"\n"), "{text}");
    std::fs::write(
        &config,
        text.replace("alg = \"EdDSA\"", "alg = \"Ed25519\""),
    )
    .unwrap();

    let (_, ed25519) = env.issue(&["--customer", "Alg Co", "--tier", "standard", "--armor"]);
    assert_eq!(
        alg_of(&ed25519),
        -19,
        "a license names the vendor's setting"
    );
    env.cmd()
        .args(["suspend", &id[..8], "--reason", "alg test"])
        .assert()
        .success();
    assert_eq!(alg_of(&list), -19, "and so does the next revocation list");
    assert_eq!(alg_of(&list_asc), -19);
    // Both spellings verify, and the list (-19) applies to the -8 license.
    let verify = |file: &Path| env.cmd().arg("verify").arg(file).output().unwrap();
    let out = verify(&ed25519);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = verify(&default);
    assert_eq!(out.status.code(), Some(12), "suspended: {}", stdout(&out));
    let out = env.cmd().args(["key", "show"]).output().unwrap();
    assert!(
        stdout(&out).contains("algorithm:   Ed25519, signed as Ed25519 (COSE -19)\n"),
        "{}",
        stdout(&out)
    );

    std::fs::write(&config, text.replace("alg = \"EdDSA\"", "alg = \"ES256\"")).unwrap();
    let out = env.cmd().args(["key", "show"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(
            "alg = \"ES256\" is not one KACHING signs with: use \"EdDSA\" (COSE -8, the default, which stock COSE libraries verify) or \"Ed25519\" (COSE -19)"
        ),
        "{}",
        stderr(&out)
    );
}

/// Decrypts `vendor.key` with the age library, as `age -d` would.
fn age_decrypt(path: &Path, passphrase: &str) -> String {
    let file = std::fs::read(path).unwrap();
    let decryptor = age::Decryptor::new(age::armor::ArmoredReader::new(&file[..])).unwrap();
    let id = age::scrypt::Identity::new(age::secrecy::SecretString::from(passphrase.to_string()));
    let mut plain = String::new();
    decryptor
        .decrypt(std::iter::once(&id as &dyn age::Identity))
        .unwrap()
        .read_to_string(&mut plain)
        .unwrap();
    plain
}

/// Runs `openssl ARGS` with `input` on stdin; `None` when there is no openssl.
fn openssl(args: &[&str], input: &[u8]) -> Option<Output> {
    let mut child = match Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => panic!("cannot run openssl: {e}"),
    };
    // openssl may exit before reading (e.g. `version`): a broken pipe is fine.
    let _ = child.stdin.take().unwrap().write_all(input);
    Some(child.wait_with_output().unwrap())
}

#[test]
fn vendor_key_holds_a_pkcs8_v1_key_that_openssl_reads() {
    let env = Env::new();
    let pem = age_decrypt(&env.dir.join("vendor.key"), PASS);
    let lines: Vec<&str> = pem.lines().collect();
    // PKCS#8 v1: `30 2e 02 01 00 30 05 06 03 2b 65 70 04 22 04 20` + seed,
    // 48 bytes, one 64-column line whose first 20 characters encode the
    // first 15 bytes (v2 would start `MFECAQEw`: version 1, 83 bytes).
    assert_eq!(lines.len(), 3, "{pem}");
    assert_eq!(lines[0], "-----BEGIN PRIVATE KEY-----");
    assert!(lines[1].starts_with("MC4CAQAwBQYDK2VwBCIE") && lines[1].len() == 64);
    assert_eq!(lines[2], "-----END PRIVATE KEY-----");
    let public = std::fs::read_to_string(env.dir.join("vendor.pub")).unwrap();
    let key = kaching_core::SecretKey::from_pkcs8_pem(&pem).unwrap();
    assert_eq!(key.public().to_pem(), public);

    // `age -d vendor.key | openssl pkey -noout`: the vendor's way out to an
    // HSM or another tool (docs/sales-ops.md).
    if openssl(&["version"], b"").is_none() {
        return skip(
            "skipped: vendor_key_holds_a_pkcs8_v1_key_that_openssl_reads needs the openssl binary; install openssl to run it",
        );
    }
    let out = openssl(&["pkey", "-noout"], pem.as_bytes()).unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let out = openssl(&["pkey", "-pubout"], pem.as_bytes()).unwrap();
    assert_eq!(stdout(&out), public, "openssl derives vendor.pub");
}

/// The fixture vendor key as KACHING wrote private keys before v1: PKCS#8 v2
/// (`OneAsymmetricKey`, with the public key). Its public key is
/// fixtures/keys/vendor-test.pub.
const V2_PEM: &str = "-----BEGIN PRIVATE KEY-----
MFECAQEwBQYDK2VwBCIEIEtBQ0hJTkcgVEVTVC1PTkxZIHZlbmRvciBrZXkgMDAx
gSEADZjYHSnOmxx2+Qa175+eJ3VQW1RbipaEXQ3F0pJZAPU=
-----END PRIVATE KEY-----
";

#[test]
fn vendor_key_written_as_pkcs8_v2_by_earlier_versions_still_unlocks() {
    let env = Env::new();
    let mut recipient =
        age::scrypt::Recipient::new(age::secrecy::SecretString::from(PASS.to_string()));
    recipient.set_work_factor(4);
    let encryptor =
        age::Encryptor::with_recipients(std::iter::once(&recipient as &dyn age::Recipient))
            .unwrap();
    let armored =
        age::armor::ArmoredWriter::wrap_output(Vec::new(), age::armor::Format::AsciiArmor).unwrap();
    let mut w = encryptor.wrap_output(armored).unwrap();
    w.write_all(V2_PEM.as_bytes()).unwrap();
    let sealed = w.finish().unwrap().finish().unwrap();
    std::fs::write(env.dir.join("vendor.key"), sealed).unwrap();
    let public = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/keys/vendor-test.pub");
    std::fs::copy(&public, env.dir.join("vendor.pub")).unwrap();

    let (_, file) = env.issue(&["--customer", "Old Key Co", "--tier", "standard"]);
    let keys =
        kaching_core::TrustedKeys::from_pem_bundle(&std::fs::read_to_string(public).unwrap())
            .unwrap();
    let license = kaching_core::verify_license(&std::fs::read(file).unwrap(), &keys).unwrap();
    assert_eq!(license.kid.to_hex(), "86bdf61e30cf28eb");
}

/// The pinned pycose: 1.1 decodes nothing with cbor2 6.x.
const PYCOSE: [&str; 2] = ["pycose==1.1.0", "cbor2<6"];

/// The python of a venv with stock pycose from PyPI, made once and cached
/// in `target/pycose-venv`; `Err` says why it cannot be made.
fn pycose_python() -> Result<PathBuf, String> {
    pip_venv("pycose-venv", &PYCOSE).map(|venv| venv_bin(&venv, "python"))
}

fn pycose_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/pycose_verify.py")
}

#[test]
fn interop_pycose_verifies_fresh_license_and_revocation_list() {
    let python = match pycose_python() {
        Ok(python) => python,
        Err(why) => {
            return skip(&format!(
                "skipped: pycose interop needs python3 and PyPI ({why}); run .ci/run, or \
                 `cargo test -p licensegen --test cli interop_pycose` where both are available"
            ))
        }
    };
    let env = Env::new();
    let (id, license) = env.issue(&["--customer", "Interop Co", "--tier", "standard"]);
    let (_, armored) = env.issue(&[
        "--customer",
        "Interop Co",
        "--tier",
        "enterprise",
        "--armor",
    ]);
    env.cmd()
        .args(["suspend", &id[..8], "--reason", "pycose interop"])
        .assert()
        .success();
    let docs = [
        license,
        armored,
        env.dir.join("revocations.cose"),
        env.dir.join("revocations.asc"),
    ];
    let pycose = |files: &[PathBuf]| {
        Command::new(&python)
            .arg(pycose_script())
            .arg(env.dir.join("vendor.pub"))
            .args(files)
            .output()
            .unwrap()
    };
    let out = pycose(&docs);
    let said = format!("{}{}", stdout(&out), stderr(&out));
    assert!(out.status.success(), "{said}");
    for doc in &docs {
        let line = format!(
            "ok {}: verified by pycose (alg EDDSA -8); tampered copies refused\n",
            doc.display()
        );
        assert!(said.contains(&line), "{said}");
    }

    // The script is not vacuous: a tampered file fails it.
    let mut bytes = std::fs::read(&docs[0]).unwrap();
    let at = bytes.len() - 70; // inside the payload, before the signature
    bytes[at] ^= 0x01;
    let tampered = env.tmp.path().join("tampered.license");
    std::fs::write(&tampered, bytes).unwrap();
    let out = pycose(&[tampered]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stdout(&out).contains("stock pycose does not verify it"));
}
