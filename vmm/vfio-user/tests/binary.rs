//! The `vmmdev-vfio-user` program: arguments, `--once`, signals, socket clean-up.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::Client;

const PROGRAM: &str = env!("CARGO_BIN_EXE_vmmdev-vfio-user");

fn socket(name: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!(
        "vmmdev-vfio-user-bin-{}-{name}.sock",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&path);
    path
}

fn run(args: &[&str]) -> Output {
    Command::new(PROGRAM).args(args).output().unwrap()
}

/// A server process, killed if the test ends before it exits.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

impl Server {
    fn spawn(socket: &Path, extra: &[&str]) -> Server {
        let child = Command::new(PROGRAM)
            .arg("--socket")
            .arg(socket)
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let server = Server(child);
        support::wait_until("the server creates its socket", || socket.exists());
        server
    }

    /// Waits up to 10 s for the process to exit.
    fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "the server did not exit");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn stderr_lines(output: &Output) -> Vec<String> {
    String::from_utf8_lossy(&output.stderr)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn missing_socket_is_one_line_and_exit_status_2() {
    let output = run(&[]);
    assert_eq!(output.status.code(), Some(2));
    let lines = stderr_lines(&output);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("--socket"), "{lines:?}");
}

#[test]
fn unknown_option_is_one_line_and_exit_status_2() {
    let output = run(&["--socket", "/tmp/x.sock", "--frobnicate"]);
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(stderr_lines(&output).len(), 1);
}

#[test]
fn share_of_a_missing_directory_is_one_line_and_exit_status_2() {
    let output = run(&["--socket", "/tmp/x.sock", "--share", "s=/no/such/dir"]);
    assert_eq!(output.status.code(), Some(2));
    let lines = stderr_lines(&output);
    assert_eq!(lines.len(), 1);
    assert!(
        lines[0].contains("/no/such/dir is not a directory"),
        "{lines:?}"
    );
}

#[test]
fn share_without_the_default_services_is_refused() {
    let dir = std::env::temp_dir().display().to_string();
    let output = run(&[
        "--socket",
        "/tmp/x.sock",
        "--no-default-services",
        "--share",
        &format!("s={dir}"),
    ]);
    assert_eq!(output.status.code(), Some(2));
    let lines = stderr_lines(&output);
    assert_eq!(lines.len(), 1);
    assert!(lines[0].contains("--no-default-services"), "{lines:?}");
}

#[test]
fn missing_plugin_is_a_bad_argument() {
    let output = run(&["--socket", "/tmp/x.sock", "--plugin", "/no/such/plugin.so"]);
    assert_eq!(output.status.code(), Some(2));
    let last = stderr_lines(&output).pop().unwrap_or_default();
    assert!(last.contains("--plugin /no/such/plugin.so"), "{last}");
}

#[test]
fn once_serves_one_client_then_exits_and_removes_the_socket() {
    let path = socket("once");
    let mut server = Server::spawn(&path, &["--once"]);

    let mut client = Client::connect(&path);
    client.negotiate();
    drop(client);

    assert!(server.wait_exit().success());
    assert!(!path.exists());
}

#[test]
fn sigterm_shuts_down_cleanly_and_removes_the_socket() {
    let path = socket("sigterm");
    let mut server = Server::spawn(&path, &[]);
    let mut client = Client::connect(&path);
    client.negotiate();

    // SAFETY: kill with a valid signal on our own child's PID.
    let rc = unsafe { libc::kill(server.0.id() as i32, libc::SIGTERM) };
    assert_eq!(rc, 0);

    assert!(server.wait_exit().success());
    assert!(!path.exists());
}

#[test]
fn log_file_receives_the_log() {
    let path = socket("log-file");
    let log = std::env::temp_dir().join(format!(
        "vmmdev-vfio-user-bin-{}-log-file.log",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&log);
    let log_arg = log.display().to_string();
    let mut server = Server::spawn(&path, &["--once", "--log-file", &log_arg]);
    Client::connect(&path).negotiate();

    assert!(server.wait_exit().success());
    let text = std::fs::read_to_string(&log).unwrap();
    std::fs::remove_file(&log).unwrap();
    assert!(text.contains("client disconnected"), "{text}");
    assert!(text.contains("messages=1 version=1"), "{text}");
}
