//! Starting the device server (`vmmdev-vfio-user`) and waiting for its socket.
//!
//! QEMU connects to a vfio-user socket exactly once, at start-up, so the server must have created the socket
//! before QEMU starts. The server writes its standard output and error to the run's server log.

use std::fs::File;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::backend::{DeviceServer, LaunchError, RunDir};
use crate::process::GroupChild;

/// The longest socket path a `sockaddr_un` holds, without the terminating NUL.
const MAX_SOCKET_PATH: usize = 107;
/// How often the socket's existence is checked.
const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// A started server with its socket in place.
#[derive(Debug)]
pub struct StartedServer {
    /// The server process.
    pub process: GroupChild,
    /// The socket it listens on.
    pub socket: PathBuf,
}

/// The socket path for a run: in the run directory when it fits a `sockaddr_un`, else in the temporary
/// directory under a name unique to this process and run directory.
pub fn socket_path(dir: &RunDir) -> PathBuf {
    let preferred = dir.path().join("vmmdev.sock");
    if preferred.as_os_str().len() <= MAX_SOCKET_PATH {
        return preferred;
    }
    let tag = dir
        .path()
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    std::env::temp_dir().join(format!("vmmdev-e2e-{}-{tag:.40}.sock", std::process::id()))
}

/// Starts `server` on `socket` and waits until the socket exists.
pub fn start(
    server: &DeviceServer,
    socket: &Path,
    dir: &RunDir,
) -> Result<StartedServer, LaunchError> {
    let log_path = dir.server_log();
    let run_file_error = |source| LaunchError::RunFile {
        path: log_path.clone(),
        source,
    };
    if socket.exists() {
        std::fs::remove_file(socket).map_err(|source| LaunchError::RunFile {
            path: socket.to_owned(),
            source,
        })?;
    }
    let log = File::create(&log_path).map_err(run_file_error)?;
    let log_for_stderr = log.try_clone().map_err(run_file_error)?;
    let mut command = Command::new(&server.program);
    command
        .arg("--socket")
        .arg(socket)
        .args(&server.args)
        .envs(server.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_for_stderr);
    let mut process = GroupChild::spawn("device server", &mut command)?;

    let started = Instant::now();
    loop {
        if is_socket(socket) {
            log::debug!(
                "device server socket {} ready after {:?}",
                socket.display(),
                started.elapsed()
            );
            return Ok(StartedServer {
                process,
                socket: socket.to_owned(),
            });
        }
        if let Some(status) = process.try_wait()? {
            return Err(LaunchError::ServerExited {
                status,
                socket: socket.to_owned(),
                log: log_path,
            });
        }
        if started.elapsed() >= server.socket_wait {
            return Err(LaunchError::SocketTimeout {
                socket: socket.to_owned(),
                waited: server.socket_wait,
                log: log_path,
            });
        }
        thread::sleep(POLL_INTERVAL);
    }
}

fn is_socket(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::net::UnixListener;

    fn run_dir(test: &str) -> RunDir {
        let path = std::env::temp_dir().join(format!("vmmdev-e2e-{test}-{}", std::process::id()));
        std::fs::create_dir_all(&path).unwrap();
        RunDir::new(&path)
    }

    /// A stand-in server: a shell script (called as `script --socket PATH`) in the run directory.
    fn fake_server(dir: &RunDir, script: &str, wait: Duration) -> DeviceServer {
        let path = dir.path().join("fake-server.sh");
        std::fs::write(&path, format!("#!/bin/sh\n{script}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut server = DeviceServer::new(&path);
        server.socket_wait = wait;
        server
    }

    #[test]
    fn start_returns_once_the_socket_exists() {
        let dir = run_dir("socket-ready");
        let socket = socket_path(&dir);
        let server = fake_server(&dir, "exec sleep 60", Duration::from_secs(10));
        let binder = {
            let socket = socket.clone();
            thread::spawn(move || {
                thread::sleep(Duration::from_millis(100));
                UnixListener::bind(socket).unwrap()
            })
        };

        let started = start(&server, &socket, &dir).unwrap();

        assert_eq!(started.socket, socket);
        drop(binder.join().unwrap());
        drop(started);
        std::fs::remove_dir_all(dir.path()).unwrap();
    }

    #[test]
    fn server_gets_the_socket_option_and_its_log_file() {
        let dir = run_dir("server-args");
        let server = fake_server(&dir, "echo \"args: $*\"; exit 1", Duration::from_secs(10));
        let socket = socket_path(&dir);
        let _ = start(&server, &socket, &dir);
        let log = std::fs::read_to_string(dir.server_log()).unwrap();
        std::fs::remove_dir_all(dir.path()).unwrap();
        assert_eq!(log.trim(), format!("args: --socket {}", socket.display()));
    }

    #[test]
    fn server_exiting_early_is_reported_with_its_status() {
        let dir = run_dir("server-exits");
        let server = fake_server(&dir, "exit 4", Duration::from_secs(10));
        let error = start(&server, &socket_path(&dir), &dir).unwrap_err();
        std::fs::remove_dir_all(dir.path()).unwrap();
        assert!(
            matches!(error, LaunchError::ServerExited { status, .. } if status.code() == Some(4))
        );
    }

    #[test]
    fn server_without_socket_times_out() {
        let dir = run_dir("server-silent");
        let server = fake_server(&dir, "exec sleep 60", Duration::from_millis(100));
        let error = start(&server, &socket_path(&dir), &dir).unwrap_err();
        std::fs::remove_dir_all(dir.path()).unwrap();
        assert!(
            matches!(error, LaunchError::SocketTimeout { .. }),
            "{error}"
        );
    }

    #[test]
    fn long_run_directory_gets_a_socket_in_the_temporary_directory() {
        let long = std::env::temp_dir().join("d".repeat(120));
        let socket = socket_path(&RunDir::new(&long));
        assert!(socket.as_os_str().len() <= MAX_SOCKET_PATH);
        assert!(socket.starts_with(std::env::temp_dir()));
    }
}
