//! The `vboxservice` program's command-line contract, run as a process: a bad flag is one line and
//! status 2; a daemon that cannot reach the driver says so on one line and exits 1, before
//! detaching.

use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vboxservice"))
        .args(args)
        .output()
        .expect("run vboxservice")
}

fn stderr_lines(output: &Output) -> Vec<String> {
    String::from_utf8_lossy(&output.stderr)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn an_unknown_flag_exits_2_with_one_line() {
    let output = run(&["--no-such-flag"]);
    assert_eq!(output.status.code(), Some(2));
    let lines = stderr_lines(&output);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].starts_with("vboxservice: error: "), "{lines:?}");
    assert!(lines[0].contains("--no-such-flag"), "{lines:?}");
}

#[test]
fn an_unknown_subservice_exits_2() {
    let output = run(&["--only", "timesync"]);
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(stderr_lines(&output).len(), 1);
}

#[test]
fn a_missing_driver_exits_1_with_one_line_before_detaching() {
    let output = run(&["--device", "/nonexistent/vboxguest"]);
    assert_eq!(output.status.code(), Some(1));
    let lines = stderr_lines(&output);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("/nonexistent/vboxguest"), "{lines:?}");
}

#[test]
fn version_prints_the_project_version_and_exits_0() {
    let output = run(&["--version"]);
    assert_eq!(output.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&output.stdout).contains(env!("CARGO_PKG_VERSION")));
}
