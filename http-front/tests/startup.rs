//! The real binary refuses a bad scenario at start-up, naming file, key and why.

use std::process::Command;

/// Runs `callbackd` on a directory holding one scenario file; returns (success, stderr).
fn start_with(toml: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("broken.toml"), toml).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_callbackd"))
        .args(["--listen", "127.0.0.1:0", "--scenarios"])
        .arg(dir.path())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const GOOD: &str = r#"name = "x"
_media_type = "chat"
_wait_for_agent = true
_wait_for_user_confirm = true
_ttl = 60
_target = { queue = "support" }
"#;

fn check(replace: (&str, &str), expected: &[&str]) {
    let toml = GOOD.replace(replace.0, replace.1);
    assert_ne!(toml, GOOD, "the replacement must change the file");
    let (ok, stderr) = start_with(&toml);
    assert!(!ok, "start-up must fail for {replace:?}");
    for needle in expected.iter().chain(&["broken.toml"]) {
        assert!(
            stderr.contains(needle),
            "stderr should name `{needle}`:\n{stderr}"
        );
    }
}

#[test]
fn bad_scenarios_stop_start_up() {
    check(("_ttl = 60", "_ttl = 60\n_colour = \"blue\""), &["_colour"]);
    check(("_ttl = 60", "_ttl = \"soon\""), &["_ttl", "soon"]);
    check(("_ttl = 60", "_ttl = -5"), &["_ttl"]);
    check(
        ("_wait_for_agent = true", "_wait_for_agent = false"),
        &["_wait_for_user_confirm", "_wait_for_agent"],
    );
    check(
        (
            "_target = { queue = \"support\" }",
            "_target = { queue = \"support\", skills = \"English >=\" }",
        ),
        &["skills"],
    );
}

/// Runs `callbackd` with the shipped scenarios and these extra arguments.
fn start_with_args(args: &[&str]) -> (bool, String) {
    let scenarios = concat!(env!("CARGO_MANIFEST_DIR"), "/../scenarios");
    let out = Command::new(env!("CARGO_BIN_EXE_callbackd"))
        .args(["--listen", "127.0.0.1:0", "--scenarios", scenarios])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_store_flags_stop_start_up() {
    for (args, needle) in [
        (
            &["--store", "memcached://h:1"][..],
            "--store: `memcached://h:1` is not a Redis URL",
        ),
        (&["--store", "redis://h:1?namespace=a}b"], "namespace `a}b`"),
        (&["--store", "redis://"], "is not a Redis URL"),
        (&["--store-timeout", "soon"], "--store-timeout"),
    ] {
        let (ok, stderr) = start_with_args(args);
        assert!(!ok, "{args:?} must fail");
        assert!(
            stderr.contains(needle),
            "{args:?}: stderr should say `{needle}`:\n{stderr}"
        );
        if args[0] == "--store" {
            assert_eq!(stderr.trim().lines().count(), 1, "one clear line: {stderr}");
        }
    }
}
