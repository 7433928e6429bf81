//! Pins the vendor's root of trust into the binary: when the build runs
//! with `KACHING_PINNED_ROOT=/path/to/root-v1.root` (armored or binary), its
//! bytes are embedded and the verifier trusts nothing else (docs/verifier.md
//! "Pinned and development builds"). Without it, the build is a development
//! build. The bytes are checked when the verifier starts.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=KACHING_PINNED_ROOT");
    let Some(out) = std::env::var_os("OUT_DIR").map(PathBuf::from) else {
        panic!("cargo sets OUT_DIR for build scripts");
    };
    let bytes = match std::env::var_os("KACHING_PINNED_ROOT") {
        Some(path) if !path.is_empty() => {
            let path = PathBuf::from(path);
            println!("cargo:rerun-if-changed={}", path.display());
            let bytes = std::fs::read(&path).unwrap_or_else(|e| {
                panic!(
                    "KACHING_PINNED_ROOT={}: cannot read the root to pin ({e}); \
                     export the vendor's root with `licensegen root show --out FILE`",
                    path.display()
                )
            });
            if bytes.is_empty() || bytes.len() > 64 * 1024 {
                panic!(
                    "KACHING_PINNED_ROOT={}: {} bytes is not a root document",
                    path.display(),
                    bytes.len()
                );
            }
            bytes
        }
        _ => Vec::new(),
    };
    if let Err(e) = std::fs::write(out.join("pinned_root.bin"), bytes) {
        panic!("cannot write the pinned root into {}: {e}", out.display());
    }
}
