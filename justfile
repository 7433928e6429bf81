# Everyday commands. README, CI and docs use plain cargo, so `just` is optional.

# Build everything.
build:
    cargo build --workspace --all-targets

# The whole test suite (what CI runs after fmt and clippy).
test:
    cargo test --workspace

# Formatting and lints, as CI checks them.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# The end-to-end story on embedded defaults.
demo:
    cargo run -p kaching-demo

# Criterion benchmark: our verification vs bare verify_strict vs a JWT.
bench:
    cargo bench -p kaching-core --bench verify

# Regenerate fixtures (deterministic: same command, same bytes).
fixtures:
    cargo run -p kaching-core --example regen-fixtures

# Fuzz the decoders (needs cargo-fuzz; see docs/format.md).
fuzz target="license_decode" secs="60":
    cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run {{target}} -- -max_total_time={{secs}}

# Everything CI does.
ci:
    bash .ci/run

# .deb packages for the three binaries (cargo-deb; docs/install.md).
package:
    bash deploy/build-debs.sh

# Every issue-12 measurement with a tool in the repo (verifier writes,
# reload, leases and memory; relay heartbeats, memory and fan-out; CLI
# start-up against minisign), each against a same-run baseline, as one
# table of ratios. Loopback, bounded; ~3 min after the release build.
# BENCH_QUICK=1 for a smoke run.
bench-all:
    bash scripts/bench-all
