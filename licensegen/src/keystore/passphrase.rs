//! Where a passphrase comes from: `--passphrase-file`, `KACHING_PASSPHRASE`,
//! or a terminal prompt (asked twice when creating a key). Passphrases live
//! in `SecretString`s, wiped on drop, and are never echoed or logged.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use age::secrecy::{ExposeSecret, SecretString};
use anyhow::{Context, Result};
use zeroize::Zeroizing;

/// Environment variable holding the passphrase, for automation.
pub const PASSPHRASE_ENV: &str = "KACHING_PASSPHRASE";

/// How the user supplies a passphrase.
#[derive(Debug, Clone, Default)]
pub struct PassphraseSource {
    /// `--passphrase-file`: its first line is the passphrase.
    pub file: Option<PathBuf>,
}

impl PassphraseSource {
    /// A passphrase to create a key with (prompted twice on a terminal).
    pub fn new_passphrase(&self) -> Result<SecretString> {
        self.new_passphrase_for("the new vendor key")
    }

    /// A passphrase to create `what` with, e.g. "root key 2 of 3".
    pub fn new_passphrase_for(&self, what: &str) -> Result<SecretString> {
        if let Some(p) = self.non_interactive()? {
            return Ok(p);
        }
        let first = prompt(&format!("Passphrase for {what}: "))?;
        if first.expose_secret().chars().count() < 8 {
            return Err(crate::error::usage(
                "passphrase too short: use at least 8 characters (a few random words is best)",
            ));
        }
        let second = prompt("Repeat the passphrase: ")?;
        if first.expose_secret() != second.expose_secret() {
            return Err(crate::error::usage(
                "the two passphrases differ: run the command again",
            ));
        }
        Ok(first)
    }

    /// The passphrase of an existing key file.
    pub fn existing_passphrase(&self, key_file: &Path) -> Result<SecretString> {
        if let Some(p) = self.non_interactive()? {
            return Ok(p);
        }
        let name = key_file.file_name().map_or_else(
            || key_file.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        prompt(&format!("Passphrase for {name}: "))
    }

    /// Whether the passphrase comes from a file or the environment (one
    /// passphrase for every key made in this run) rather than prompts.
    pub fn is_non_interactive(&self) -> bool {
        self.file.is_some() || std::env::var_os(PASSPHRASE_ENV).is_some()
    }

    fn non_interactive(&self) -> Result<Option<SecretString>> {
        if let Some(path) = &self.file {
            return read_passphrase_file(path).map(Some);
        }
        if let Ok(value) = std::env::var(PASSPHRASE_ENV) {
            let value = Zeroizing::new(value);
            if value.is_empty() {
                return Err(crate::error::usage(format!(
                    "{PASSPHRASE_ENV} is set but empty: set the passphrase or unset the variable"
                )));
            }
            return Ok(Some(SecretString::from(value.to_string())));
        }
        Ok(None)
    }
}

/// The passphrase unlocks the vendor key, so its file follows the private
/// key rule: no access for group or others. A pipe (`<(pass show vendor)`)
/// is fine: it exists only for this process.
fn check_passphrase_file(path: &Path) -> Result<()> {
    let is_pipe = std::fs::metadata(path).is_ok_and(|m| {
        #[cfg(unix)]
        {
            std::os::unix::fs::FileTypeExt::is_fifo(&m.file_type())
        }
        #[cfg(not(unix))]
        {
            let _ = m;
            false
        }
    });
    if is_pipe {
        return Ok(());
    }
    kaching_kit::secret::check_private(path, "passphrase file")
        .map_err(|e| crate::error::usage(e.to_string()))
}

fn read_passphrase_file(path: &Path) -> Result<SecretString> {
    check_passphrase_file(path)?;
    let text = Zeroizing::new(
        std::fs::read_to_string(path)
            .with_context(|| format!("cannot read passphrase file {}", path.display()))?,
    );
    let line = text.lines().next().unwrap_or_default();
    if line.is_empty() {
        return Err(crate::error::usage(format!(
            "passphrase file {} is empty: put the passphrase on its first line",
            path.display()
        )));
    }
    Ok(SecretString::from(line.to_string()))
}

fn prompt(text: &str) -> Result<SecretString> {
    if !std::io::stdin().is_terminal() {
        return Err(crate::error::usage(format!(
            "no passphrase: not at a terminal, so pass --passphrase-file FILE or set {PASSPHRASE_ENV}"
        )));
    }
    let answer = rpassword::prompt_password(text).context("cannot read the passphrase")?;
    Ok(SecretString::from(answer))
}
