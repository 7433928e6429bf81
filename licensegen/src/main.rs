//! The `licensegen` binary: everything lives in the library's `run`.

fn main() -> std::process::ExitCode {
    licensegen::run(std::env::args_os())
}
