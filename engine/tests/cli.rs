//! The `mrt` binary as a user runs it: exit codes and messages.

use std::process::Command;

fn mrt(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mrt")).args(args).output().expect("mrt runs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[test]
fn conformance_on_l1_prints_every_rung_and_exits_zero() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/fixtures/lm/L1");
    let (ok, text) = mrt(&["conformance", dir, "--device", "flex"]);
    assert!(ok, "{text}");
    assert!(text.contains("greedy_tokens") && text.contains("10 passed, 0 failed"), "{text}");
}

#[test]
fn conformance_on_a_missing_directory_fails_with_the_path() {
    let (ok, text) = mrt(&["conformance", "/nonexistent/fixture"]);
    assert!(!ok);
    assert!(text.contains("/nonexistent/fixture/config.json"), "{text}");
}

#[test]
fn an_unknown_device_is_a_clear_error() {
    let (ok, text) = mrt(&["conformance", ".", "--device", "tpu"]);
    assert!(!ok);
    assert!(text.contains("unknown device"), "{text}");
}
