//! The host's side of the guest-property checks (`tests/e2e/guest/steps/60-guestprop.sh`): the host sets
//! properties while the guest runs, and waits on the control endpoint for changes the guest makes.
//!
//! | Verb | Does | Answers |
//! |---|---|---|
//! | `gp-set NAME VALUE [FLAGS]` | `guestproperty.set` on the control endpoint | empty |
//! | `gp-wait-begin PATTERN` | starts a control `guestproperty.wait` on PATTERN in the background | `waiting` |
//! | `gp-wait-end` | collects the wait that `gp-wait-begin` started | `NAME=VALUE`, or `NAME deleted` |
//! | `gp-ctl-wait-begin PATTERN` | starts `vmmdev-ctl guestproperty wait PATTERN` in the background | `waiting` |
//! | `gp-ctl-wait-end` | collects that program's output | its stdout, one line |
//! | `gp-kill-vmm` | sends SIGKILL to the process serving the control endpoint | never arrives |
//!
//! A wait begins when its request has been written to the endpoint (for `vmmdev-ctl`: when the program
//! blocks reading the answer), before the verb answers; the guest makes its change only after it has the
//! answer, which takes it a whole round trip through the device, so the endpoint has subscribed by then.
//! A second `*-begin` before the `*-end` is refused.
//!
//! `vmmdev-ctl` is found as `VMMDEV_CTL`, or next to `VMMDEV_VFIO_USER_SERVER` (`tests/run-all.sh` builds
//! both in the same directory).
//!
//! `gp-kill-vmm` is for the restart check: the guest asks for it after it saw a persistent write succeed,
//! and the VMM dies without any chance to save anything. Its answer cannot be delivered (the endpoint is
//! gone with the process), so the step that asks never waits for it.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::host_agent::{HostAgent, HostContext};

/// The longest a background wait lasts.
const WAIT_TIMEOUT: Duration = Duration::from_secs(30);

/// How long `gp-ctl-wait-begin` gives `vmmdev-ctl` to send its request.
const CTL_START_WAIT: Duration = Duration::from_secs(10);

/// How long `gp-ctl-wait-end` waits for `vmmdev-ctl` beyond its own timeout.
const CTL_EXIT_GRACE: Duration = Duration::from_secs(5);

/// How long `gp-kill-vmm` waits for the killed process to disappear.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// The background waits of one agent.
#[derive(Default)]
struct Waits {
    control: Mutex<Option<JoinHandle<Result<String, String>>>>,
    ctl: Mutex<Option<Child>>,
}

/// The slot behind `mutex`; a handler that panicked while holding it left nothing half-done in it.
fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Adds the guest-property verbs to `agent`.
pub fn register(agent: HostAgent) -> HostAgent {
    let waits = Arc::new(Waits::default());
    let begin = Arc::clone(&waits);
    let end = Arc::clone(&waits);
    let ctl_begin = Arc::clone(&waits);
    let ctl_end = waits;
    agent
        .on("gp-set", |ctx, args| {
            let (name, value, flags) = match args {
                [name, value] => (name, value, ""),
                [name, value, flags] => (name, value, *flags),
                _ => return Err("usage: gp-set NAME VALUE [FLAGS]".to_owned()),
            };
            ctx.control(
                json!({"op": "guestproperty.set", "name": name, "value": value, "flags": flags}),
            )?;
            Ok(String::new())
        })
        .on("gp-wait-begin", move |ctx, args| {
            let [pattern] = args else {
                return Err("usage: gp-wait-begin PATTERN".to_owned());
            };
            let mut slot = locked(&begin.control);
            if slot.is_some() {
                return Err("a wait is already running".to_owned());
            }
            *slot = Some(begin_control_wait(ctx.control_socket(), pattern)?);
            Ok("waiting".to_owned())
        })
        .on("gp-wait-end", move |_, _| {
            let wait = locked(&end.control).take().ok_or("no wait was started")?;
            wait.join()
                .unwrap_or_else(|_| Err("the waiting thread panicked".to_owned()))
        })
        .on("gp-ctl-wait-begin", move |ctx, args| {
            let [pattern] = args else {
                return Err("usage: gp-ctl-wait-begin PATTERN".to_owned());
            };
            let mut slot = locked(&ctl_begin.ctl);
            if slot.is_some() {
                return Err("a vmmdev-ctl wait is already running".to_owned());
            }
            *slot = Some(start_ctl_wait(ctx, pattern)?);
            Ok("waiting".to_owned())
        })
        .on("gp-ctl-wait-end", move |_, _| {
            let child = locked(&ctl_end.ctl)
                .take()
                .ok_or("no vmmdev-ctl wait was started")?;
            finish_ctl_wait(child)
        })
        .on("gp-kill-vmm", |ctx, _| kill_vmm(ctx.control_socket()))
}

/// Writes a `guestproperty.wait` request for `pattern` and returns the thread that reads its answer as
/// `NAME=VALUE` (or `NAME deleted`).
fn begin_control_wait(
    socket: &Path,
    pattern: &str,
) -> Result<JoinHandle<Result<String, String>>, String> {
    let describe = |error: std::io::Error| format!("control socket {}: {error}", socket.display());
    let mut stream = UnixStream::connect(socket).map_err(describe)?;
    stream
        .set_read_timeout(Some(WAIT_TIMEOUT + Duration::from_secs(5)))
        .map_err(describe)?;
    let request = json!({
        "op": "guestproperty.wait",
        "pattern": pattern,
        "timeout_ms": WAIT_TIMEOUT.as_millis() as u64,
    });
    stream
        .write_all(format!("{request}\n").as_bytes())
        .map_err(describe)?;
    Ok(std::thread::spawn(move || {
        let mut line = String::new();
        BufReader::new(stream)
            .read_line(&mut line)
            .map_err(|error| format!("reading the wait's answer: {error}"))?;
        let response: Value = serde_json::from_str(&line)
            .map_err(|error| format!("malformed wait answer {line:?}: {error}"))?;
        describe_change(&response)
    }))
}

/// A wait's response as `NAME=VALUE`, `NAME deleted`, or why it saw no change.
fn describe_change(response: &Value) -> Result<String, String> {
    if response.get("ok") != Some(&Value::Bool(true)) {
        let error = response.get("error").and_then(Value::as_str);
        return Err(format!(
            "the wait failed: {}",
            error.unwrap_or("no error text")
        ));
    }
    if response.get("timed_out") == Some(&Value::Bool(true)) {
        return Err(format!(
            "the wait saw no change within {} s",
            WAIT_TIMEOUT.as_secs()
        ));
    }
    let name = response
        .get("name")
        .and_then(Value::as_str)
        .ok_or("the wait's answer has no name")?;
    Ok(match response.get("value").and_then(Value::as_str) {
        Some(value) => format!("{name}={value}"),
        None => format!("{name} deleted"),
    })
}

/// The `vmmdev-ctl` program: `VMMDEV_CTL`, or beside `VMMDEV_VFIO_USER_SERVER`.
fn vmmdev_ctl() -> Result<PathBuf, String> {
    let program = match std::env::var_os("VMMDEV_CTL") {
        Some(path) => PathBuf::from(path),
        None => std::env::var_os("VMMDEV_VFIO_USER_SERVER")
            .map(PathBuf::from)
            .and_then(|server| server.parent().map(|dir| dir.join("vmmdev-ctl")))
            .ok_or("neither VMMDEV_CTL nor VMMDEV_VFIO_USER_SERVER is set")?,
    };
    if program.is_file() {
        Ok(program)
    } else {
        Err(format!(
            "{} does not exist (tests/run-all.sh builds vmmdev-ctl)",
            program.display()
        ))
    }
}

/// Starts `vmmdev-ctl --control SOCKET guestproperty wait PATTERN --timeout MS` and returns once the
/// program has sent its request and blocks reading the answer (its kernel wait channel is the Unix
/// socket read), so a change made after this returns is one it sees.
fn start_ctl_wait(ctx: &HostContext, pattern: &str) -> Result<Child, String> {
    let program = vmmdev_ctl()?;
    let timeout_ms = WAIT_TIMEOUT.as_millis().to_string();
    let mut child = Command::new(&program)
        .arg("--control")
        .arg(ctx.control_socket())
        .args(["guestproperty", "wait", pattern, "--timeout", &timeout_ms])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| format!("starting {}: {error}", program.display()))?;
    let wchan = format!("/proc/{}/wchan", child.id());
    let deadline = Instant::now() + CTL_START_WAIT;
    loop {
        let channel = std::fs::read_to_string(&wchan).unwrap_or_default();
        if channel.starts_with("unix_stream_read") {
            return Ok(child);
        }
        if let Ok(Some(_)) = child.try_wait() {
            return finish_ctl_wait(child)
                .and_then(|output| Err(format!("vmmdev-ctl ended before the change: {output}")));
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "vmmdev-ctl did not reach its wait within {} s",
                CTL_START_WAIT.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits for the `vmmdev-ctl` wait to end and returns its output, or why it failed.
fn finish_ctl_wait(mut child: Child) -> Result<String, String> {
    let deadline = Instant::now() + WAIT_TIMEOUT + CTL_EXIT_GRACE;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err("vmmdev-ctl did not end".to_owned());
            }
            Err(error) => return Err(format!("waiting for vmmdev-ctl: {error}")),
        }
    }
    let output = child
        .wait_with_output()
        .map_err(|error| format!("reading vmmdev-ctl's output: {error}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    if output.status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "vmmdev-ctl {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// Kills the process that serves the control endpoint at `socket` with SIGKILL, found through the
/// socket's peer credentials, and waits until it is gone.
fn kill_vmm(socket: &Path) -> Result<String, String> {
    let stream = UnixStream::connect(socket)
        .map_err(|error| format!("control socket {}: {error}", socket.display()))?;
    let pid = peer_pid(&stream)?;
    drop(stream);
    // SAFETY: kill(2) with a pid read from the kernel and a valid signal number touches no memory of
    // this process.
    if unsafe { libc::kill(pid, libc::SIGKILL) } != 0 {
        return Err(format!(
            "kill -9 {pid}: {}",
            std::io::Error::last_os_error()
        ));
    }
    let deadline = Instant::now() + KILL_WAIT;
    while process_alive(pid) {
        if Instant::now() >= deadline {
            return Err(format!("process {pid} still runs after SIGKILL"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    log::info!("guest properties: killed the VMM (pid {pid}) with SIGKILL");
    Ok(format!("killed {pid}"))
}

/// The process on the other end of `stream`.
fn peer_pid(stream: &UnixStream) -> Result<libc::pid_t, String> {
    use std::os::fd::AsRawFd;

    let mut credentials = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: the buffer is a live `ucred` and `len` holds its size, as SO_PEERCRED expects; the
    // descriptor belongs to `stream`, which outlives the call.
    let status = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&raw mut credentials).cast(),
            &mut len,
        )
    };
    if status != 0 || credentials.pid <= 0 {
        return Err(format!(
            "the control socket's peer is unknown: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(credentials.pid)
}

/// Whether `pid` still runs (a zombie counts as gone: it can do nothing more).
fn process_alive(pid: libc::pid_t) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_is_described_as_name_and_value() {
        let response =
            json!({"ok": true, "name": "/Test/G1", "value": "v", "timestamp": 1, "flags": ""});
        assert_eq!(describe_change(&response).unwrap(), "/Test/G1=v");
    }

    #[test]
    fn a_deletion_is_described_as_deleted() {
        let response = json!({"ok": true, "name": "/Test/G1", "value": null});
        assert_eq!(describe_change(&response).unwrap(), "/Test/G1 deleted");
    }

    #[test]
    fn a_timed_out_wait_is_an_error() {
        let error = describe_change(&json!({"ok": true, "timed_out": true})).unwrap_err();
        assert!(error.contains("no change"), "{error}");
    }

    #[test]
    fn a_failed_wait_carries_the_endpoint_error() {
        let error = describe_change(&json!({"ok": false, "error": "bad pattern"})).unwrap_err();
        assert!(error.contains("bad pattern"), "{error}");
    }

    #[test]
    fn the_peer_of_a_socket_pair_is_this_process() {
        let (ours, _theirs) = UnixStream::pair().unwrap();
        assert_eq!(peer_pid(&ours).unwrap(), std::process::id() as libc::pid_t);
    }

    #[test]
    fn this_process_is_alive_and_an_unused_pid_is_not() {
        assert!(process_alive(std::process::id() as libc::pid_t));
        assert!(!process_alive(libc::pid_t::MAX));
    }
}
