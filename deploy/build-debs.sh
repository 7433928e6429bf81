#!/usr/bin/env bash
# Builds target/debian/*.deb for kaching-verifier, kaching-relay and
# licensegen: stripped release binaries (licensegen and kaching-verifier as
# static PIE), hardened systemd units, default
# configs printed by the binaries themselves (so they never drift), man
# pages and shell completions. Needs cargo-deb (installed if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-deb >/dev/null || cargo install cargo-deb --locked
cargo build --release --locked -p kaching-relay
# licensegen and kaching-verifier ship as static PIE: glibc linked in,
# address-space randomisation kept; they start in about half the time
# (docs/install.md "Static binaries", docs/benchmarks.md). Asked of the
# binary alone: RUSTFLAGS would also reach build scripts and proc-macros.
for pkg in licensegen kaching-verifier; do
    cargo rustc --release --locked -p "$pkg" --bin "$pkg" -- -C target-feature=+crt-static
done
target="${CARGO_TARGET_DIR:-target}"
bin="$target/release"
bash scripts/static-pie-check "$bin/licensegen" "$bin/kaching-verifier"
out="$target/release/package"  # inside target/release/ so cargo-deb resolves it against the target dir
rm -rf "$out"
mkdir -p "$out/verifier/man" "$out/relay/man" "$out/licensegen/man"
"$bin/kaching-verifier" default-config > "$out/verifier/verifier.toml"
"$bin/kaching-verifier" man --out "$out/verifier/man"
for shell in bash zsh fish; do
    "$bin/kaching-verifier" completions "$shell" > "$out/verifier/completions.$shell"
done
"$bin/kaching-relay" default-config > "$out/relay/relay.toml"
"$bin/kaching-relay" man --out "$out/relay/man"
for shell in bash zsh fish; do
    "$bin/kaching-relay" completions "$shell" > "$out/relay/completions.$shell"
done
"$bin/licensegen" man --out "$out/licensegen/man"
"$bin/licensegen" completions bash > "$out/licensegen/licensegen.bash"
"$bin/licensegen" completions zsh > "$out/licensegen/_licensegen"
"$bin/licensegen" completions fish > "$out/licensegen/licensegen.fish"
for pkg in kaching-verifier kaching-relay licensegen; do
    cargo deb --no-build --locked -p "$pkg"
done
ls -l "$target"/debian/*.deb
