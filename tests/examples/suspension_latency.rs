//! Suspension latency: from `licensegen publish` to the connected verifier's
//! `/v1/events` reporting the new state, over loopback (DESIGN §7: < 2 s).
//!
//! ```text
//! cargo run --release -p kaching-e2e --example suspension_latency [ROUNDS]
//! ```
//!
//! Each round suspends (or reinstates) the license with `licensegen`, then
//! times `licensegen publish` and the SSE `status` event carrying the new
//! state. Two numbers per round: from the start of `publish` (the whole
//! path: HTTP PUT, relay commit, long-poll wake-up, verifier verification
//! and commit, SSE) and from `publish` returning (what an operator waits
//! after the command prints; 0 when the event arrived first). Bounded:
//! ROUNDS (default 20, at most 200), each waiting at most a minute.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::time::{Duration, Instant};

use kaching_core::wire::verifier::VerifierStatus;
use kaching_e2e::{decode_value, install, verifier_config, Relay, Vendor, Verifier};
use tokio::sync::mpsc;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("ROUNDS must be a number"))
        .unwrap_or(20)
        .clamp(1, 200);
    let vendor = Vendor::new().await;
    let lic = vendor.issue_connected("latency", "1h").await;
    let mut relay = Relay::start(&vendor.root, &vendor.public_pem()).await;
    let dir = vendor.root.join("cluster");
    install(&dir, &vendor, &lic);
    let mut v = Verifier::start(verifier_config(&dir, Some(&relay))).await;
    v.wait_relay_contact().await;
    // Make sure the relay holds a list, so every round is an update.
    assert_eq!(vendor.publish(&relay).await, 0);

    // Read events on their own task, stamping each on arrival.
    let mut events = v.events().await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some((kind, data)) = events.next().await {
            if kind == "status" {
                let s: VerifierStatus = decode_value("a status event", &data);
                let state = s.status.state;
                if tx.send((Instant::now(), state)).is_err() {
                    break;
                }
            }
        }
    });

    let mut from_start = Vec::new();
    let mut from_return = Vec::new();
    for round in 0..rounds {
        let (cmd, want) = if round % 2 == 0 {
            ("suspend", "suspended")
        } else {
            ("reinstate", "active")
        };
        assert_eq!(vendor.licensegen(&[cmd, &lic.id]).await, 0);
        while rx.try_recv().is_ok() {} // nothing stale counts
        let start = Instant::now();
        assert_eq!(vendor.publish(&relay).await, 0);
        let returned = Instant::now();
        let seen = tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                let (at, state) = rx.recv().await.expect("event stream ended");
                if state == want {
                    return at;
                }
            }
        })
        .await
        .expect("no event within 60 s");
        from_start.push(seen.duration_since(start));
        from_return.push(seen.saturating_duration_since(returned));
    }
    v.stop().await;
    relay.stop().await;
    report("publish start -> SSE event", &mut from_start);
    report("publish return -> SSE event", &mut from_return);
}

fn report(what: &str, d: &mut [Duration]) {
    d.sort();
    let ms = |x: Duration| x.as_secs_f64() * 1000.0;
    println!(
        "{what}: rounds {}, median {:.1} ms, p90 {:.1} ms, max {:.1} ms",
        d.len(),
        ms(d[d.len() / 2]),
        ms(d[(d.len() * 9 / 10).min(d.len() - 1)]),
        ms(d[d.len() - 1]),
    );
}
