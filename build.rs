//! Link settings for the `outrigger` binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=build/symbol-order.txt");
    println!("cargo:rerun-if-env-changed=OUTRIGGER_NO_SYMBOL_ORDER");
    let target = std::env::var("TARGET").unwrap_or_default();
    if !target.ends_with("-linux-gnu") {
        return;
    }
    // Pack relative relocations (DT_RELR): the PIE binary's ~480 KB table of
    // them, which the dynamic loader reads at every start and which then
    // stays resident, shrinks to a few KB; idle RSS falls by about as much.
    // GNU ld >= 2.38 and lld write it, glibc >= 2.36 loads it (Debian
    // bookworm, the image's base, has both); older GNU ld warns and ignores
    // the option.
    println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    // Lay out the functions that start-up and serving run together at the
    // start of .text (scripts/symbol-order.sh makes the list). The kernel
    // maps code in 64 KiB blocks around each page touched: scattered, they
    // kept ~5 MB of the binary resident at idle; together, ~1.5 MB. Release
    // builds only, and only with a linker that takes the option (lld, which
    // rustc uses by default on x86_64-unknown-linux-gnu since 1.90; mold);
    // GNU ld refuses it, so a trial link decides. The symbol names carry
    // hashes that change with the compiler version: the list is made with
    // the toolchain the image pins (Dockerfile), and names not found are
    // skipped.
    let order = Path::new(env!("CARGO_MANIFEST_DIR")).join("build/symbol-order.txt");
    let release = std::env::var("PROFILE").is_ok_and(|p| p == "release");
    if release && std::env::var_os("OUTRIGGER_NO_SYMBOL_ORDER").is_none() && order.exists() && links_with(&order) {
        println!("cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}", order.display());
        println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    }
}

/// Whether an empty program links with the symbol-ordering options, with
/// the same compiler, target, linker and flags as this build.
fn links_with(order: &Path) -> bool {
    let Some(out) = std::env::var_os("OUT_DIR").map(PathBuf::from) else { return false };
    let src = out.join("probe.rs");
    if std::fs::write(&src, "fn main() {}\n").is_err() {
        return false;
    }
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let mut cmd = Command::new(rustc);
    cmd.arg("--target").arg(std::env::var("TARGET").unwrap_or_default());
    cmd.arg("--crate-type=bin").arg("-o").arg(out.join("probe")).arg(&src);
    if let Ok(flags) = std::env::var("CARGO_ENCODED_RUSTFLAGS") {
        cmd.args(flags.split('\x1f').filter(|f| !f.is_empty()));
    }
    if let Ok(linker) = std::env::var("RUSTC_LINKER") {
        cmd.arg(format!("-Clinker={linker}"));
    }
    cmd.arg(format!("-Clink-arg=-Wl,--symbol-ordering-file={}", order.display()));
    cmd.arg("-Clink-arg=-Wl,--no-warn-symbol-ordering");
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    cmd.status().is_ok_and(|s| s.success())
}
