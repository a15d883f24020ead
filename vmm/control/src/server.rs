//! The Unix socket server: binds the control socket, accepts connections on its own thread and serves
//! each connection on a thread of its own, one request line and one response line at a time.

use std::io::{self, BufReader, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::Value;

use crate::control::{Control, error_response};
use crate::protocol::{LineRead, MAX_REQUEST_LEN, Request, read_request_line};

/// Most connections served at once; more are answered with an error and closed.
pub const MAX_CONNECTIONS: usize = 16;

/// A connection that sends no request for this long is closed, so idle clients cannot hold every
/// connection slot. A `guestproperty.wait` in progress is not idle.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// A client that reads no response for this long is disconnected.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Another process serves this socket.
    #[error("control socket {0} is in use by a running process")]
    InUse(PathBuf),
    /// The path exists and is not a socket.
    #[error("control path {0} exists and is not a socket")]
    NotASocket(PathBuf),
    /// Binding, restricting or listening failed.
    #[error("control socket {path}")]
    Io {
        /// The socket path.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// A running control endpoint. Dropping it stops accepting connections and removes the socket;
/// connections already open are served until their clients close them.
#[derive(Debug)]
pub struct ControlServer {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl ControlServer {
    /// Binds `path` (replacing a stale socket nobody listens on), restricts it to the owner and starts
    /// serving `control` on a thread.
    pub fn start(path: &Path, control: Control) -> Result<ControlServer, ServerError> {
        let io_error = |source| ServerError::Io {
            path: path.to_owned(),
            source,
        };
        if let Ok(metadata) = std::fs::symlink_metadata(path) {
            if !metadata.file_type().is_socket() {
                return Err(ServerError::NotASocket(path.to_owned()));
            }
            if UnixStream::connect(path).is_ok() {
                return Err(ServerError::InUse(path.to_owned()));
            }
            std::fs::remove_file(path).map_err(io_error)?;
        }
        let listener = UnixListener::bind(path).map_err(io_error)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io_error)?;
        let stop = Arc::new(AtomicBool::new(false));
        let acceptor = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("vmmdev-control".into())
                .spawn(move || accept_loop(&listener, &control, &stop))
                .map_err(io_error)?
        };
        log::info!("control endpoint listening on {}", path.display());
        Ok(ControlServer {
            path: path.to_owned(),
            stop,
            acceptor: Some(acceptor),
        })
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        // Wakes the acceptor blocked in accept(); it sees the flag and returns.
        let woke = UnixStream::connect(&self.path).is_ok();
        if let Some(acceptor) = self.acceptor.take() {
            if woke {
                let _ = acceptor.join();
            }
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

fn accept_loop(listener: &UnixListener, control: &Control, stop: &AtomicBool) {
    let active = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        if stop.load(Ordering::Acquire) {
            return;
        }
        let mut stream = match stream {
            Ok(stream) => stream,
            Err(error) => {
                log::warn!("control: accept failed: {error}");
                continue;
            }
        };
        if active.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
            active.fetch_sub(1, Ordering::AcqRel);
            let _ = send(&mut stream, &error_response("too many control connections"));
            continue;
        }
        let control = control.clone();
        let guard = ActiveConnection(active.clone());
        let spawned = std::thread::Builder::new()
            .name("vmmdev-control-conn".into())
            .spawn(move || {
                let _guard = guard;
                if let Err(error) = serve_connection(stream, &control) {
                    log::debug!("control connection ended: {error}");
                }
            });
        if let Err(error) = spawned {
            log::warn!("control: cannot start a connection thread: {error}");
        }
    }
}

/// Counts a connection as active until dropped.
struct ActiveConnection(Arc<AtomicUsize>);

impl Drop for ActiveConnection {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Serves requests until the peer closes the connection, sends an oversized line or stays idle for
/// [`IDLE_TIMEOUT`].
pub(crate) fn serve_connection(stream: UnixStream, control: &Control) -> io::Result<()> {
    stream.set_read_timeout(Some(IDLE_TIMEOUT))?;
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    loop {
        match read_request_line(&mut reader, &mut line)? {
            LineRead::Eof => return Ok(()),
            LineRead::TooLong => {
                let message = format!("request longer than {MAX_REQUEST_LEN} bytes");
                return send(&mut writer, &error_response(&message));
            }
            LineRead::Line if line.iter().all(u8::is_ascii_whitespace) => continue,
            LineRead::Line => {
                let response = match Request::parse(&line) {
                    Ok(request) => control.handle(request),
                    Err(error) => error_response(&error.to_string()),
                };
                send(&mut writer, &response)?;
            }
        }
    }
}

fn send(writer: &mut impl Write, response: &Value) -> io::Result<()> {
    let mut bytes = serde_json::to_vec(response).map_err(io::Error::other)?;
    bytes.push(b'\n');
    writer.write_all(&bytes)
}
