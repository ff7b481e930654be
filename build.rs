//! Link settings for the `outrigger` binary.

use std::path::Path;
use std::process::Command;

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
    // kept ~5 MB of the binary resident at idle; together, ~1.5 MB. Only
    // where the linker is lld (rustc's default on x86_64-unknown-linux-gnu
    // since 1.90), which knows the option; GNU ld does not.
    let order = Path::new(env!("CARGO_MANIFEST_DIR")).join("build/symbol-order.txt");
    if target == "x86_64-unknown-linux-gnu"
        && rustc_minor().is_some_and(|m| m >= 90)
        && std::env::var_os("OUTRIGGER_NO_SYMBOL_ORDER").is_none()
        && order.exists()
    {
        println!("cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}", order.display());
        println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    }
}

/// The minor version of the rustc building this crate (1.x).
fn rustc_minor() -> Option<u32> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let out = Command::new(rustc).arg("--version").output().ok()?;
    let version = String::from_utf8(out.stdout).ok()?;
    version.split_whitespace().nth(1)?.split('.').nth(1)?.parse().ok()
}
