//! licensegen's user-facing messages as data: one TOML per case under
//! `tests/cmd/`, each with the exact arguments, stdout, stderr and exit code.
//! Cases run without the caller's environment, in a scratch folder or over
//! the shared fixtures, so they need no secrets and read no clock.
//! `TRYCMD=overwrite cargo test -p licensegen --test cli_cases` rewrites the
//! expected output after a deliberate change; review the diff.

#[test]
fn cli_cases() {
    trycmd::TestCases::new()
        .default_bin_path(env!("CARGO_BIN_EXE_licensegen"))
        .case("tests/cmd/*.toml");
}
