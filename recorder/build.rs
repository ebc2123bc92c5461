//! Builds the preload library (`recorder/preload`, a cdylib) with a nested
//! `cargo build --release` into its own target directory under `OUT_DIR` (no
//! lock shared with the outer build), and copies it to
//! `$OUT_DIR/liballoctrace_preload.so` for `include_bytes!`. Re-runs only when
//! the preload or ABI sources change, or what else the nested build reads from
//! the workspace: the vendored crates (`[patch.crates-io]`), the workspace
//! manifest (patches, release profile) and the lock file.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
    for p in [
        "preload/src",
        "preload/Cargo.toml",
        "abi/src",
        "abi/Cargo.toml",
        "../vendor",
        "../Cargo.toml",
        "../Cargo.lock",
    ] {
        println!("cargo:rerun-if-changed={}", manifest_dir.join(p).display());
    }
    println!("cargo:rerun-if-env-changed=ALLOCTRACE_PRELOAD_SO");
    let dest = out_dir.join("liballoctrace_preload.so");
    // A prebuilt library may be supplied (packaging, cross builds).
    if let Ok(prebuilt) = env::var("ALLOCTRACE_PRELOAD_SO") {
        std::fs::copy(&prebuilt, &dest).expect("copy ALLOCTRACE_PRELOAD_SO");
        emit_hash(&dest);
        return;
    }
    let target_dir = out_dir.join("preload-target");
    let manifest = manifest_dir.join("preload/Cargo.toml");
    let built = target_dir.join("release/liballoctrace_preload.so");
    let ok =
        nested_build(&manifest, &target_dir, false) || nested_build(&manifest, &target_dir, true);
    // Fail the build rather than ship a `record` without its library: the
    // nested cargo's own errors are printed above this message.
    assert!(
        ok && built.exists(),
        "could not build the preload library (recorder/preload); set ALLOCTRACE_PRELOAD_SO=/path/to/liballoctrace_preload.so to embed a prebuilt one"
    );
    std::fs::copy(&built, &dest).expect("copy the preload library");
    emit_hash(&dest);
}

/// The library's content hash (names its cache directory), computed here
/// rather than over megabytes at every `record`.
fn emit_hash(lib: &Path) {
    let bytes = std::fs::read(lib).expect("read the preload library");
    let h = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &x| {
        (h ^ x as u64).wrapping_mul(0x100_0000_01b3)
    });
    println!("cargo:rustc-env=ALLOCTRACE_PRELOAD_HASH={h:016x}");
}

fn nested_build(manifest: &Path, target_dir: &Path, offline: bool) -> bool {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.arg("build")
        .arg("--release")
        .arg("--manifest-path")
        .arg(manifest)
        .arg("--target-dir")
        .arg(target_dir);
    if offline {
        cmd.arg("--offline");
    }
    // Settings meant for the outer build only.
    for var in [
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_MAKEFLAGS",
        "MAKEFLAGS",
        "MFLAGS",
    ] {
        cmd.env_remove(var);
    }
    matches!(cmd.status(), Ok(s) if s.success())
}
