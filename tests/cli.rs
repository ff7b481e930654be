//! The command line: `validate` and its exit codes, the example configs.

use std::process::Command;

fn outrigger(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_outrigger")).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// An unknown field: `FILE:LINE:COL:` on stderr, exit 2.
#[test]
fn validate_unknown_field() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("bad.yaml");
    std::fs::write(&f, "listeners:\n  - name: a\n    address: 127.0.0.1:0\n    colour: blue\nclusters: []\n").unwrap();
    let (code, _, err) = outrigger(&["validate", f.to_str().unwrap()]);
    assert_eq!(code, 2);
    let want = format!("{}:4:5: ", f.display());
    assert!(err.starts_with(&want), "{err}");
    assert!(err.contains("colour"), "{err}");
}

/// Several semantic errors are all printed, each with its position; `run`
/// refuses the same file with exit 2 and starts nothing.
#[test]
fn validate_reports_every_error() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("bad.yaml");
    std::fs::write(
        &f,
        "listeners:\n  - name: a\n    address: nowhere\n    routes:\n      - name: r\n        cluster: ghost\nclusters:\n  - name: c\n    endpoints: []\n",
    )
    .unwrap();
    let (code, _, err) = outrigger(&["validate", f.to_str().unwrap()]);
    assert_eq!(code, 2);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 3, "{err}");
    assert!(err.contains(":3:14: invalid address \"nowhere\""), "{err}");
    assert!(err.contains(":6:18: route \"r\" names cluster \"ghost\""), "{err}");
    assert!(err.contains(":9:16: cluster \"c\" has no endpoints"), "{err}");
    let (code, _, _) = outrigger(&["run", "--config", f.to_str().unwrap()]);
    assert_eq!(code, 2);
}

/// Every file in config/ and config/examples/ validates.
#[test]
fn example_configs_validate() {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut files = Vec::new();
    for dir in ["config", "config/examples"] {
        for e in std::fs::read_dir(format!("{root}/{dir}")).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "yaml") {
                files.push(p);
            }
        }
    }
    assert!(files.len() >= 2, "{files:?}");
    for f in files {
        let (code, out, err) = outrigger(&["validate", f.to_str().unwrap()]);
        assert_eq!(code, 0, "{}: {err}", f.display());
        assert!(out.contains(": ok"), "{out}");
    }
}

/// `--version` names the program.
#[test]
fn version() {
    let (code, out, _) = outrigger(&["--version"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("outrigger "), "{out}");
}
