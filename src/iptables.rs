//! The iptables rules that put Outrigger in a pod's traffic path.
//!
//! A sidecar only sees what the kernel hands it. An init step (this module,
//! behind `outrigger iptables` and `deploy/iptables.sh`) adds NAT rules in
//! the pod's network namespace: the app's outbound TCP is REDIRECTed to the
//! outbound listener, TCP arriving for the pod's ports to the inbound
//! listener. The proxy's own connections (its UID), loopback traffic and the
//! admin port (kubelet probes, Prometheus) are left alone, or every request
//! would loop back into the proxy or the probes would hit the data path.
//!
//! Why one rule list, rendered two ways: the same [`Step`]s are either run
//! (each an `iptables` invocation through `std::process::Command`) or
//! printed as a POSIX shell script by `--dry-run`. What you read is what
//! gets applied, and the printed script can be piped to `sh` where the
//! binary cannot run.
//!
//! Idempotent: our rules live in two chains of our own, created or emptied
//! on every run, and the jumps into them are added only when missing, so
//! running the step twice (a restarted init container) leaves one copy.

use std::fmt::Write as _;
use std::process::{Command, Stdio};

/// Chain holding the inbound rules, jumped to from `PREROUTING`.
pub const INBOUND_CHAIN: &str = "OUTRIGGER_INBOUND";
/// Chain holding the outbound rules, jumped to from `OUTPUT`.
pub const OUTBOUND_CHAIN: &str = "OUTRIGGER_OUTPUT";

/// What to redirect where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    /// The proxy runs as this UID; its own connections are not redirected.
    pub proxy_uid: u32,
    /// Where the app's outbound TCP goes (the outbound listener's port).
    pub outbound_port: u16,
    /// Where the pod's inbound TCP goes (the inbound listener's port).
    pub inbound_port: u16,
    /// The admin port, reached directly (probes, scraping).
    pub admin_port: u16,
    /// More inbound destination ports left alone.
    pub exclude_ports: Vec<u16>,
    /// Outbound destination ports left alone (non-HTTP: databases, TLS).
    pub exclude_outbound_ports: Vec<u16>,
}

impl Default for Redirect {
    fn default() -> Self {
        Redirect {
            proxy_uid: 1337,
            outbound_port: 15001,
            inbound_port: 15006,
            admin_port: 9901,
            exclude_ports: Vec::new(),
            exclude_outbound_ports: Vec::new(),
        }
    }
}

/// One step of a plan: `iptables -t nat ARGS` and what its failure means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Must succeed.
    Run(Vec<String>),
    /// When the first fails, run the second, which must succeed.
    OrElse(Vec<String>, Vec<String>),
    /// Repeat until it fails (deletes every copy of a rule).
    WhileOk(Vec<String>),
    /// May fail.
    Try(Vec<String>),
}

fn args(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_owned).collect()
}

/// Creates `chain`, or empties it when it exists.
fn fresh_chain(chain: &str) -> Step {
    Step::OrElse(args(&format!("-N {chain}")), args(&format!("-F {chain}")))
}

/// Jumps from a built-in chain to ours, unless that jump is there already.
fn jump(from: &str, to: &str) -> Step {
    Step::OrElse(args(&format!("-C {from} -p tcp -j {to}")), args(&format!("-A {from} -p tcp -j {to}")))
}

fn append(chain: &str, rule: &str) -> Step {
    Step::Run(args(&format!("-A {chain} {rule}")))
}

impl Redirect {
    /// The steps that install (or refresh) the redirection.
    pub fn install(&self) -> Vec<Step> {
        let mut steps = vec![fresh_chain(INBOUND_CHAIN)];
        for port in std::iter::once(&self.admin_port).chain(&self.exclude_ports) {
            steps.push(append(INBOUND_CHAIN, &format!("-p tcp --dport {port} -j RETURN")));
        }
        steps.push(append(INBOUND_CHAIN, &format!("-p tcp -j REDIRECT --to-ports {}", self.inbound_port)));
        steps.push(fresh_chain(OUTBOUND_CHAIN));
        steps.push(append(OUTBOUND_CHAIN, &format!("-m owner --uid-owner {} -j RETURN", self.proxy_uid)));
        steps.push(append(OUTBOUND_CHAIN, "-o lo -j RETURN"));
        for port in &self.exclude_outbound_ports {
            steps.push(append(OUTBOUND_CHAIN, &format!("-p tcp --dport {port} -j RETURN")));
        }
        steps.push(append(OUTBOUND_CHAIN, &format!("-p tcp -j REDIRECT --to-ports {}", self.outbound_port)));
        steps.push(jump("PREROUTING", INBOUND_CHAIN));
        steps.push(jump("OUTPUT", OUTBOUND_CHAIN));
        steps
    }
}

/// The steps that remove every trace of the redirection.
pub fn uninstall() -> Vec<Step> {
    let mut steps = Vec::new();
    for (from, chain) in [("PREROUTING", INBOUND_CHAIN), ("OUTPUT", OUTBOUND_CHAIN)] {
        steps.push(Step::WhileOk(args(&format!("-D {from} -p tcp -j {chain}"))));
        steps.push(Step::Try(args(&format!("-F {chain}"))));
        steps.push(Step::Try(args(&format!("-X {chain}"))));
    }
    steps
}

/// `steps` as a POSIX shell script for `bin` (`iptables`, `iptables-nft`).
pub fn script(bin: &str, steps: &[Step]) -> String {
    let cmd = |a: &[String]| format!("{bin} -t nat {}", a.join(" "));
    let mut out = String::from("#!/bin/sh\nset -e\n");
    for step in steps {
        let _ = match step {
            Step::Run(a) => writeln!(out, "{}", cmd(a)),
            Step::OrElse(a, b) => writeln!(out, "{} 2>/dev/null || {}", cmd(a), cmd(b)),
            Step::WhileOk(a) => writeln!(out, "while {} 2>/dev/null; do :; done", cmd(a)),
            Step::Try(a) => writeln!(out, "{} 2>/dev/null || true", cmd(a)),
        };
    }
    out
}

/// Why applying a plan stopped.
#[derive(Debug, thiserror::Error)]
#[error("`{command}` failed: {reason}")]
pub struct ApplyError {
    /// The command line that failed.
    pub command: String,
    /// Its stderr, or why it could not start.
    pub reason: String,
}

/// Runs `iptables -t nat ARGS`; Ok(false) when it ran and failed.
fn run(bin: &str, a: &[String], must: bool) -> Result<bool, ApplyError> {
    let out = Command::new(bin)
        .args(["-t", "nat"])
        .args(a)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| ApplyError { command: format!("{bin} -t nat {}", a.join(" ")), reason: e.to_string() })?;
    if must && !out.status.success() {
        return Err(ApplyError {
            command: format!("{bin} -t nat {}", a.join(" ")),
            reason: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(out.status.success())
}

/// Runs `steps` with `bin`, stopping at the first step that must succeed
/// and did not.
pub fn apply(bin: &str, steps: &[Step]) -> Result<(), ApplyError> {
    for step in steps {
        match step {
            Step::Run(a) => {
                run(bin, a, true)?;
            }
            Step::OrElse(a, b) => {
                if !run(bin, a, false)? {
                    run(bin, b, true)?;
                }
            }
            // Bounded: a rule cannot have been added more often than this.
            Step::WhileOk(a) => {
                for _ in 0..64 {
                    if !run(bin, a, false)? {
                        break;
                    }
                }
            }
            Step::Try(a) => {
                run(bin, a, false)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every excluded port returns before the redirect, in both chains.
    #[test]
    fn exclusions_come_before_the_redirect() {
        let r = Redirect { exclude_ports: vec![8443], exclude_outbound_ports: vec![5432], ..Redirect::default() };
        let s = script("iptables", &r.install());
        let pos = |needle: &str| s.find(needle).unwrap_or_else(|| panic!("{needle:?} missing from\n{s}"));
        assert!(pos("OUTRIGGER_INBOUND -p tcp --dport 9901 -j RETURN") < pos("--to-ports 15006"));
        assert!(pos("OUTRIGGER_INBOUND -p tcp --dport 8443 -j RETURN") < pos("--to-ports 15006"));
        assert!(pos("--uid-owner 1337 -j RETURN") < pos("--to-ports 15001"));
        assert!(pos("OUTRIGGER_OUTPUT -o lo -j RETURN") < pos("--to-ports 15001"));
        assert!(pos("OUTRIGGER_OUTPUT -p tcp --dport 5432 -j RETURN") < pos("--to-ports 15001"));
        // The jumps come last, so traffic never enters a half-filled chain.
        assert!(pos("--to-ports 15001") < pos("-A PREROUTING"));
    }

    /// The jumps into our chains are guarded by a check, and uninstall
    /// deletes every copy, so repeated runs do not pile rules up.
    #[test]
    fn jumps_are_added_once_and_removed_fully() {
        let s = script("iptables-nft", &Redirect::default().install());
        assert!(s.contains(
            "iptables-nft -t nat -C OUTPUT -p tcp -j OUTRIGGER_OUTPUT 2>/dev/null || \
             iptables-nft -t nat -A OUTPUT -p tcp -j OUTRIGGER_OUTPUT\n"
        ));
        let u = script("iptables", &uninstall());
        assert!(u.contains("while iptables -t nat -D PREROUTING -p tcp -j OUTRIGGER_INBOUND 2>/dev/null; do :; done"));
        assert!(u.contains("iptables -t nat -X OUTRIGGER_OUTPUT 2>/dev/null || true"));
    }

    /// A binary that is not there is an error naming the command.
    #[test]
    fn missing_binary_is_an_error() {
        let err = apply("/nonexistent/iptables", &Redirect::default().install()).unwrap_err();
        assert!(err.command.starts_with("/nonexistent/iptables -t nat -N OUTRIGGER_INBOUND"), "{err}");
    }
}
