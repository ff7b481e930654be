//! Link settings for the `outrigger` binary.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    // Pack relative relocations (DT_RELR): the PIE binary's ~480 KB table of
    // them, which the dynamic loader reads at every start and which then
    // stays resident, shrinks to a few KB; idle RSS falls by about as much.
    // GNU ld >= 2.38 and lld write it, glibc >= 2.36 loads it (Debian
    // bookworm, the image's base, has both); older GNU ld warns and ignores
    // the option.
    let target = std::env::var("TARGET").unwrap_or_default();
    if target.ends_with("-linux-gnu") {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
