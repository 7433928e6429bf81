//! The README's first command: the demo runs the whole story and says so.

use std::process::{Command, Stdio};

fn demo() -> Command {
    Command::new(env!("CARGO_BIN_EXE_kaching-demo"))
}

#[test]
fn demo_tells_the_whole_story_and_keeps_its_folder() {
    let dir = tempfile::tempdir().unwrap();
    let kept = dir.path().join("explore");
    let out = demo().arg("--keep").arg(&kept).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in [
        // Commands are echoed so they can be pasted: quotes kept.
        "$ licensegen init \"$VENDOR\" --issuer 'Demo Vendor'",
        "--customer 'Acme Robotics'",
        // Tier names without debug quotes.
        "suggests an upgrade evaluation → standard",
        // Which node count includes the overage.
        "10 licensed + 1 overage = 11 before a node is refused",
        "status    suspended — license suspended by the vendor",
        "reinstated license",
        "docs/sales-ops.md",
    ] {
        assert!(
            text.contains(line),
            "the demo no longer shows {line:?}:\n{text}"
        );
    }
    // Refusal reasons are whole, not cut mid-word.
    assert!(!text.contains("..."), "a reason was truncated:\n{text}");
    assert!(text.contains("remove a node or upgrade"), "{text}");
    // The folder is kept with a config a customer admin could run.
    assert!(kept.join("site/verifier.toml").is_file());
    assert!(kept.join("vendor/ledger.sqlite").is_file());
}

#[test]
fn demo_refuses_to_run_in_a_folder_that_holds_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("mine.txt"), "keep me").unwrap();
    let out = demo().arg("--keep").arg(dir.path()).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is not empty"), "{err}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("mine.txt")).unwrap(),
        "keep me"
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn demo_into_a_closed_pipe_ends_quietly() {
    let mut child = demo()
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The reader goes away before the demo writes its first line.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
