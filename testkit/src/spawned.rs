//! A daemon binary run as a child process, as an operator would.

use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::{Json, WAIT};

/// A spawned daemon that printed `listening on ADDR`; killed on drop.
pub struct Spawned {
    /// The child process (stdout already consumed up to the address line).
    pub child: Child,
    /// A client for it.
    pub json: Json,
    /// The address as it announced it (`127.0.0.1:PORT`), for raw TCP.
    pub addr: String,
}

impl Spawned {
    /// Spawns `cmd` (stdout piped, killed on drop) and waits for its
    /// `listening on ADDR` line; panics with what it printed otherwise.
    pub async fn start(mut cmd: Command) -> Spawned {
        cmd.stdout(Stdio::piped()).kill_on_drop(true);
        let mut child = cmd.spawn().expect("cannot spawn the daemon");
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut lines = BufReader::new(stdout).lines();
        let mut seen = Vec::new();
        let addr = tokio::time::timeout(WAIT, async {
            while let Some(line) = lines.next_line().await.ok().flatten() {
                if let Some(addr) = line.strip_prefix("listening on ") {
                    return Some(addr.trim().to_string());
                }
                seen.push(line);
            }
            None
        })
        .await;
        let addr = match addr {
            Ok(Some(addr)) => addr,
            _ => panic!("the daemon never said `listening on ADDR`; it printed {seen:?}"),
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let base = if addr.starts_with("http") {
            addr.clone()
        } else {
            format!("http://{addr}")
        };
        Spawned {
            child,
            json: Json::new(base),
            addr,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_announced_address_becomes_the_base_url() {
        let mut cmd = Command::new("sh");
        cmd.args([
            "-c",
            "echo starting; echo 'listening on 127.0.0.1:7741'; sleep 30",
        ]);
        let mut d = Spawned::start(cmd).await;
        assert_eq!(d.json.base, "http://127.0.0.1:7741");
        assert_eq!(d.addr, "127.0.0.1:7741");
        d.child.kill().await.unwrap();
    }

    #[tokio::test]
    #[should_panic(expected = "never said `listening on ADDR`")]
    async fn a_daemon_that_exits_silently_is_reported_with_what_it_printed() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo 'error: no config'"]);
        Spawned::start(cmd).await;
    }
}
