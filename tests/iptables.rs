//! `outrigger iptables`: the rules it prints, and (where this test may make
//! a network namespace: root with `ip` and `iptables`) the rules it applies.

use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_outrigger");

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn outrigger(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

/// `--dry-run` prints the redirects to the outbound (15001) and inbound
/// (15006) listeners, the proxy's UID exclusion and the admin port's, and
/// honours the flags.
#[test]
fn dry_run_prints_the_rules() {
    let out = outrigger(&["iptables", "--dry-run"]);
    assert!(out.status.success());
    let s = stdout(&out);
    assert!(s.starts_with("#!/bin/sh\n"), "{s}");
    assert!(s.contains("-A OUTRIGGER_OUTPUT -p tcp -j REDIRECT --to-ports 15001\n"), "{s}");
    assert!(s.contains("-A OUTRIGGER_INBOUND -p tcp -j REDIRECT --to-ports 15006\n"), "{s}");
    assert!(s.contains("-A OUTRIGGER_OUTPUT -m owner --uid-owner 1337 -j RETURN\n"), "{s}");
    assert!(s.contains("-A OUTRIGGER_INBOUND -p tcp --dport 9901 -j RETURN\n"), "{s}");

    let out = outrigger(&[
        "iptables",
        "--dry-run",
        "--proxy-uid",
        "2000",
        "--outbound-port",
        "16001",
        "--inbound-port",
        "16006",
        "--exclude-ports",
        "8443,9090",
        "--iptables",
        "iptables-nft",
    ]);
    let s = stdout(&out);
    assert!(s.contains("iptables-nft -t nat -A OUTRIGGER_OUTPUT -m owner --uid-owner 2000 -j RETURN\n"), "{s}");
    assert!(s.contains("--to-ports 16001\n") && s.contains("--to-ports 16006\n"), "{s}");
    assert!(s.contains("--dport 8443 -j RETURN\n") && s.contains("--dport 9090 -j RETURN\n"), "{s}");
    assert!(!s.contains("1337") && !s.contains("15001"), "{s}");
}

/// `--uninstall --dry-run` removes the jumps and both chains.
#[test]
fn dry_run_uninstall_removes_everything() {
    let s = stdout(&outrigger(&["iptables", "--dry-run", "--uninstall"]));
    for needle in ["-D PREROUTING -p tcp -j OUTRIGGER_INBOUND", "-D OUTPUT -p tcp -j OUTRIGGER_OUTPUT"] {
        assert!(s.contains(needle), "{s}");
    }
    for chain in ["OUTRIGGER_INBOUND", "OUTRIGGER_OUTPUT"] {
        assert!(s.contains(&format!("-X {chain}")), "{s}");
    }
    assert!(!s.contains("REDIRECT"), "{s}");
}

/// A network namespace of this test's own, deleted on drop.
struct Netns(String);

impl Netns {
    /// None where namespaces cannot be made here (not root, no `ip`).
    fn new() -> Option<Netns> {
        let name = format!("outrigger-test-{}", std::process::id());
        let ok = Command::new("ip").args(["netns", "add", &name]).stderr(Stdio::null()).status();
        matches!(ok, Ok(s) if s.success()).then_some(Netns(name))
    }

    fn exec(&self, args: &[&str]) -> Output {
        Command::new("ip").args(["netns", "exec", &self.0]).args(args).output().unwrap()
    }

    fn nat_rules(&self) -> String {
        let out = self.exec(&["iptables", "-t", "nat", "-S"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        stdout(&out)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// Applied for real in a fresh namespace: running it twice leaves one copy
/// of every rule, the dry-run script applies exactly the same rules, and
/// `--uninstall` leaves nothing behind. Skipped (with a note) where this
/// machine cannot make a namespace or has no iptables, unless
/// `OUTRIGGER_REQUIRE_NETNS` is set (CI sets it: there, a skip is a failure).
#[test]
fn applies_idempotently_in_a_network_namespace() {
    let skip = |why: &str| {
        assert!(std::env::var_os("OUTRIGGER_REQUIRE_NETNS").is_none(), "cannot run: {why}");
        eprintln!("skipped: {why}");
    };
    let Some(ns) = Netns::new() else {
        return skip("cannot create a network namespace (needs root and iproute2)");
    };
    if !ns.exec(&["iptables", "-t", "nat", "-S"]).status.success() {
        return skip("no usable iptables");
    }
    let install = ["iptables", "--exclude-outbound-ports", "5432"];
    for _ in 0..2 {
        let out = ns.exec(&[&[BIN][..], &install[..]].concat());
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let applied = ns.nat_rules();
    assert_eq!(applied.matches("-j OUTRIGGER_INBOUND").count(), 1, "{applied}");
    assert_eq!(applied.matches("-j OUTRIGGER_OUTPUT").count(), 1, "{applied}");
    assert_eq!(applied.matches("REDIRECT").count(), 2, "{applied}");
    assert!(applied.contains("-A OUTRIGGER_OUTPUT -m owner --uid-owner 1337 -j RETURN"), "{applied}");
    assert!(applied.contains("--dport 5432 -j RETURN"), "{applied}");

    let out = ns.exec(&[BIN, "iptables", "--uninstall"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!ns.nat_rules().contains("OUTRIGGER"), "{}", ns.nat_rules());

    let script = stdout(&outrigger(&[&install[..], &["--dry-run"]].concat()));
    let sh = Command::new("ip").args(["netns", "exec", &ns.0, "sh", "-c", &script]).output().unwrap();
    assert!(sh.status.success(), "{}", String::from_utf8_lossy(&sh.stderr));
    assert_eq!(ns.nat_rules(), applied);
}
