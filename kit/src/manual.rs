//! Shell completions and man pages, generated from a binary's clap
//! definition so they never drift from `--help`.

use std::path::{Path, PathBuf};

/// Why man pages could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum ManualError {
    /// Rendering or printing failed.
    #[error("cannot render the man page")]
    Render(#[source] std::io::Error),
    /// The output folder could not be made.
    #[error("cannot create {}", dir.display())]
    Create {
        /// The folder.
        dir: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A page could not be written.
    #[error("cannot write man pages into {}", dir.display())]
    Write {
        /// The folder.
        dir: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// `completions <shell>`: prints the completion script of `cmd` for `shell`.
pub fn completions(mut cmd: clap::Command, shell: clap_complete::Shell) -> std::io::Result<()> {
    let name = cmd.get_name().to_string();
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut cmd, name, &mut buf);
    crate::stdout::print(&String::from_utf8_lossy(&buf))
}

/// `man [--out DIR]`: the top page on stdout, or one page per command into
/// `dir` (created when missing), saying so on stderr.
pub fn man(cmd: clap::Command, dir: Option<&Path>) -> Result<(), ManualError> {
    match dir {
        None => {
            let mut buf = Vec::new();
            clap_mangen::Man::new(cmd)
                .render(&mut buf)
                .map_err(ManualError::Render)?;
            crate::stdout::print(&String::from_utf8_lossy(&buf)).map_err(ManualError::Render)
        }
        Some(dir) => {
            let err = |source| (dir.to_path_buf(), source);
            std::fs::create_dir_all(dir)
                .map_err(err)
                .map_err(|(dir, source)| ManualError::Create { dir, source })?;
            clap_mangen::generate_to(cmd, dir)
                .map_err(err)
                .map_err(|(dir, source)| ManualError::Write { dir, source })?;
            eprintln!("wrote man pages into {}", dir.display());
            Ok(())
        }
    }
}
