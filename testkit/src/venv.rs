//! Tools from PyPI in throwaway venvs, for checks with software nobody here
//! wrote (pycose, schemathesis). Each venv is made once per cargo target
//! folder, pinned by its requirements, and skipped with one clear line where
//! python3 or PyPI is missing, except under `CI=true`, where that fails.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Says why a check did not run, on the terminal (not captured by the
/// test harness), or fails when `CI=true`: there it must run.
pub fn skip(line: &str) {
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{line} (CI=true: this check must run here)"
    );
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// The cargo target folder the running test binary lives in
/// (`…/debug/deps/name-…`).
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.ancestors()
        .nth(3)
        .map(Path::to_path_buf)
        .unwrap_or_else(std::env::temp_dir)
}

/// A program installed in `venv` (`python`, `schemathesis`, …).
pub fn venv_bin(venv: &Path, program: &str) -> PathBuf {
    if cfg!(windows) {
        venv.join("Scripts").join(format!("{program}.exe"))
    } else {
        venv.join("bin").join(program)
    }
}

/// Runs a setup command; `Err` says what failed, with its last line.
fn run(cmd: &mut Command, what: &str) -> Result<(), String> {
    match cmd.output() {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => {
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            let last = text.lines().last().unwrap_or_default().to_string();
            Err(format!("{what} failed: {last}"))
        }
        Err(e) => Err(format!("cannot run {what} ({e})")),
    }
}

/// The folder of a venv with `requirements` from PyPI, made once with
/// `python3 -m venv` and pip and cached in `target/NAME`; `Err` says why it
/// cannot be made.
pub fn pip_venv(name: &str, requirements: &[&str]) -> Result<PathBuf, String> {
    let target = target_dir();
    let venv = target.join(name);
    let stamp = |dir: &Path| dir.join("kaching-requirements.txt");
    let wanted = requirements.join("\n");
    let ready = |dir: &Path| {
        std::fs::read_to_string(stamp(dir)).ok().as_deref() == Some(wanted.as_str())
            && venv_bin(dir, "python").exists()
    };
    if ready(&venv) {
        return Ok(venv);
    }
    // Built aside and renamed into place: test runs sharing the target
    // folder never see half a venv.
    let staging = target.join(format!("{name}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    let made = run(
        Command::new("python3").args(["-m", "venv"]).arg(&staging),
        "python3 -m venv",
    )
    .and_then(|()| {
        run(
            Command::new(venv_bin(&staging, "python"))
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                ])
                .args(["--retries", "1", "--timeout", "30"])
                .args(requirements),
            &format!("pip install {} from PyPI", requirements.join(" ")),
        )
    })
    .and_then(|()| std::fs::write(stamp(&staging), &wanted).map_err(|e| e.to_string()));
    if let Err(why) = made {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(why);
    }
    if !ready(&venv) {
        let _ = std::fs::remove_dir_all(&venv); // one with other requirements
    }
    if std::fs::rename(&staging, &venv).is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    if ready(&venv) {
        Ok(venv)
    } else {
        Err(format!("could not set up {}", venv.display()))
    }
}
