//! The server: the socket VMMs connect to, one VM at a time, and the device that outlives them.
//!
//! [`VfioUserServer`] owns the VMMDev device (with its HGCM services), its guest memory map and
//! its interrupt line. [`VfioUserServer::serve_one`] accepts one client and serves it until it
//! leaves, through the [`crate::relay`] in front of the `vfio_user` crate's server; when the
//! client goes, at any moment, the device is reset (pending HGCM requests dropped, clients
//! disconnected, services and their state kept), the memory map emptied and the eventfd dropped,
//! so the next VM starts from a fresh device on the same host state. One VM is served at a time;
//! a second client waits in the listen backlog until the first one leaves.
//!
//! A [`StopHandle`] ends the server from another thread (a signal handler thread): it wakes the
//! accept and closes the current client's connection.

use std::fmt;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use vm_memory::{GuestMemoryAtomic, GuestMemoryMmap};
use vmmdev_device::{DeviceError, VmmDev, VmmDevConfig};
use vmmdev_hgcm::Hgcm;

use crate::backend::{DeviceBackend, LastError};
use crate::counters::{MessageCounters, MessageCounts};
use crate::dma::{DEFAULT_MAX_MAPPINGS, DmaMapping, DmaMemory};
use crate::intx::{Intx, IntxCounts};
use crate::layout::{irq_infos, server_regions};
use crate::relay::{Relay, RelayError};

/// Errors of the server itself (a client's misbehaviour never surfaces here).
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Another server is listening on the socket path.
    #[error("socket {0} is in use by a running server")]
    SocketInUse(PathBuf),
    /// Something other than a socket is at the path.
    #[error("{0} exists and is not a socket")]
    NotASocket(PathBuf),
    /// The socket could not be created.
    #[error("cannot listen on {path}")]
    Bind {
        /// The socket path.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The device could not be created.
    #[error("cannot create the device")]
    Device(#[from] DeviceError),
    /// Accepting a connection failed.
    #[error("cannot accept a connection")]
    Accept(#[source] io::Error),
    /// The private socket to the `vfio_user` server could not be set up.
    #[error("cannot connect to the vfio-user device server")]
    Internal(#[source] io::Error),
}

/// What one client's connection amounted to.
#[derive(Debug)]
pub struct SessionReport {
    /// How long the client was connected.
    pub duration: Duration,
    /// Messages the client sent.
    pub messages: MessageCounts,
    /// Interrupt traffic.
    pub interrupts: IntxCounts,
    /// Why the connection ended, if not by the client closing it between messages.
    pub error: Option<RelayError>,
}

impl fmt::Display for SessionReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:.3} s, {}, irq signals={} unmasks={}",
            self.duration.as_secs_f64(),
            self.messages,
            self.interrupts.signals,
            self.interrupts.unmasks
        )?;
        match &self.error {
            None => write!(f, ", closed by the client"),
            Some(error) => write!(f, ", ended: {}", error_chain(error)),
        }
    }
}

/// An error with its sources, on one line.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[derive(Debug)]
struct Control {
    stopped: AtomicBool,
    client: Mutex<Option<UnixStream>>,
    socket: PathBuf,
}

/// Stops a [`VfioUserServer`] from another thread.
#[derive(Clone, Debug)]
pub struct StopHandle(Arc<Control>);

impl StopHandle {
    /// Makes `serve_one`/`run` return: wakes a pending accept and closes the current client's
    /// connection (the device is then reset as after any disconnect).
    pub fn stop(&self) {
        let control = &self.0;
        control.stopped.store(true, Ordering::SeqCst);
        if let Some(client) = control.client.lock().as_ref() {
            let _ = client.shutdown(std::net::Shutdown::Both);
        }
        // Wakes a blocking accept; the server sees the stop flag and drops this connection.
        let _ = UnixStream::connect(&control.socket);
    }
}

/// The VMMDev device served over vfio-user.
#[derive(Debug)]
pub struct VfioUserServer {
    listener: UnixListener,
    device: VmmDev,
    dma: Arc<DmaMemory>,
    intx: Arc<Intx>,
    counters: Arc<MessageCounters>,
    last_error: Arc<LastError>,
    control: Arc<Control>,
}

impl VfioUserServer {
    /// Creates the device over `hgcm` with `config` and listens on `socket`. A stale socket
    /// left by a dead server is replaced; a live one is an error.
    pub fn new(socket: &Path, hgcm: Hgcm, config: VmmDevConfig) -> Result<Self, ServerError> {
        let memory = GuestMemoryAtomic::new(GuestMemoryMmap::new());
        let dma = Arc::new(DmaMemory::new(memory.clone(), DEFAULT_MAX_MAPPINGS));
        let intx = Arc::new(Intx::new());
        let line: Arc<dyn vmmdev_device::InterruptLine> = intx.clone();
        let device = VmmDev::builder(memory, hgcm, line).config(config).build()?;
        let listener = listen(socket)?;
        log::info!("vfio-user server listening on {}", socket.display());
        Ok(VfioUserServer {
            listener,
            device,
            dma,
            intx,
            counters: Arc::new(MessageCounters::default()),
            last_error: Arc::new(LastError::default()),
            control: Arc::new(Control {
                stopped: AtomicBool::new(false),
                client: Mutex::new(None),
                socket: socket.to_owned(),
            }),
        })
    }

    /// The device (its HGCM framework, logs, guest state).
    pub fn device(&self) -> &VmmDev {
        &self.device
    }

    /// Messages received so far, over all connections.
    pub fn message_counts(&self) -> MessageCounts {
        self.counters.snapshot()
    }

    /// Interrupt traffic so far, over all connections.
    pub fn interrupt_counts(&self) -> IntxCounts {
        self.intx.counts()
    }

    /// The current DMA mappings.
    pub fn dma_mappings(&self) -> Vec<DmaMapping> {
        self.dma.mappings()
    }

    /// The socket path.
    pub fn socket_path(&self) -> &Path {
        &self.control.socket
    }

    /// A handle that stops the server.
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle(Arc::clone(&self.control))
    }

    /// Serves clients one after the other until stopped.
    pub fn run(&self) -> Result<(), ServerError> {
        while self.serve_one()?.is_some() {}
        Ok(())
    }

    /// Accepts one client and serves it until it leaves. `None` if the server was stopped.
    pub fn serve_one(&self) -> Result<Option<SessionReport>, ServerError> {
        let client = loop {
            if self.control.stopped.load(Ordering::SeqCst) {
                return Ok(None);
            }
            match self.listener.accept() {
                Ok((client, _)) => break client,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(ServerError::Accept(error)),
            }
        };
        match client.try_clone() {
            Ok(clone) => *self.control.client.lock() = Some(clone),
            Err(error) => log::warn!("the client connection cannot be stopped early: {error}"),
        }
        if self.control.stopped.load(Ordering::SeqCst) {
            self.control.client.lock().take();
            return Ok(None);
        }
        log::info!("client connected");
        let report = self.serve(&client);
        self.control.client.lock().take();
        let report = report?;
        match &report.error {
            None => log::info!("client disconnected: {report}"),
            Some(_) => log::warn!("client connection lost: {report}"),
        }
        Ok(Some(report))
    }

    fn serve(&self, client: &UnixStream) -> Result<SessionReport, ServerError> {
        let started = Instant::now();
        let messages_before = self.counters.snapshot();
        let irqs_before = self.intx.counts();
        let (relay_end, crate_listener) = private_connection().map_err(ServerError::Internal)?;
        let vfio_server = vfio_user::Server::from_owned_fd(
            crate_listener.into(),
            true,
            irq_infos(),
            server_regions(self.device.ram().file().as_raw_fd()),
        );
        let mut backend = DeviceBackend::new(
            self.device.clone(),
            Arc::clone(&self.dma),
            Arc::clone(&self.intx),
            Arc::clone(&self.last_error),
        );
        let relay_result = thread::scope(|scope| {
            let device_thread = thread::Builder::new()
                .name("vfio-user-device".into())
                .spawn_scoped(scope, move || vfio_server.run(&mut backend))
                .map_err(RelayError::Server)?;
            let result = Relay::new(client, &relay_end, &self.counters, &self.last_error).run();
            // The crate's loop ends when its connection closes.
            let _ = relay_end.shutdown(std::net::Shutdown::Both);
            match device_thread.join() {
                Ok(Ok(())) => {}
                Ok(Err(error)) => log::debug!("vfio-user device server ended: {error}"),
                Err(_) => log::error!("the vfio-user device server panicked"),
            }
            result
        });
        self.release_vm();
        let messages = self.counters.snapshot().since(&messages_before);
        let now = self.intx.counts();
        Ok(SessionReport {
            duration: started.elapsed(),
            messages,
            interrupts: IntxCounts {
                signals: now.signals - irqs_before.signals,
                unmasks: now.unmasks - irqs_before.unmasks,
            },
            error: relay_result.err(),
        })
    }

    /// Forgets everything that belonged to the departed VM. The device is reset first, so no
    /// completion writes into memory the map no longer holds (a completion in flight keeps its
    /// own snapshot in any case).
    fn release_vm(&self) {
        self.device.reset();
        let mappings = self.dma.clear();
        self.intx.disable();
        log::debug!("device reset, {mappings} DMA mappings dropped");
    }
}

impl Drop for VfioUserServer {
    fn drop(&mut self) {
        let path = &self.control.socket;
        if is_socket(path) {
            if let Err(error) = std::fs::remove_file(path) {
                log::warn!("cannot remove {}: {error}", path.display());
            }
        }
    }
}

fn is_socket(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket())
}

/// Listens on `path`, replacing a socket no server listens on any more. The socket is bound
/// under a temporary name and renamed into place once it listens, so a client that waits for
/// the path to appear never finds a socket that refuses connections.
fn listen(path: &Path) -> Result<UnixListener, ServerError> {
    let bind_error = |source| ServerError::Bind {
        path: path.to_owned(),
        source,
    };
    if let Ok(metadata) = std::fs::symlink_metadata(path) {
        if !metadata.file_type().is_socket() {
            return Err(ServerError::NotASocket(path.to_owned()));
        }
        if UnixStream::connect(path).is_ok() {
            return Err(ServerError::SocketInUse(path.to_owned()));
        }
        log::info!("replacing the stale socket {}", path.display());
    }
    // The staging name sits beside `path` and is no longer than it, so any path that fits a
    // `sockaddr_un` (108 bytes) has a staging name that fits too. A file name shorter than the
    // staging name is bound in place. The counter keeps servers of one process apart.
    static STAGED: AtomicU64 = AtomicU64::new(0);
    let serial = STAGED.fetch_add(1, Ordering::Relaxed);
    let staging = path
        .parent()
        .map(|parent| parent.join(format!(".{}.{serial}.s", std::process::id())))
        .filter(|staging| staging.as_os_str().len() <= path.as_os_str().len());
    let Some(staging) = staging else {
        return UnixListener::bind(path).map_err(bind_error);
    };
    let _ = std::fs::remove_file(&staging);
    let listener = UnixListener::bind(&staging).map_err(bind_error)?;
    if let Err(error) = std::fs::rename(&staging, path) {
        let _ = std::fs::remove_file(&staging);
        return Err(bind_error(error));
    }
    Ok(listener)
}

/// A connected pair for the relay and the crate's server: a listener (the crate insists on
/// accepting its connection) with our end already connected. The listener is bound in a
/// directory only this user can enter, and its name is gone before the crate accepts.
fn private_connection() -> io::Result<(UnixStream, UnixListener)> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let base = std::env::temp_dir();
    let mut attempts = 0;
    let dir = loop {
        let candidate = base.join(format!(
            "vmmdev-vfio-user.{}.{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        match std::fs::DirBuilder::new().mode(0o700).create(&candidate) {
            Ok(()) => break candidate,
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists && attempts < 16 => {
                attempts += 1;
            }
            Err(error) => return Err(error),
        }
    };
    let path = dir.join("device.sock");
    let connected =
        UnixListener::bind(&path).and_then(|listener| Ok((UnixStream::connect(&path)?, listener)));
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_dir(&dir);
    connected
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_socket(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!(
            "vmmdev-vfio-user-test-{}-{name}",
            std::process::id()
        ))
    }

    #[test]
    fn a_socket_path_of_the_longest_legal_length_can_be_listened_on() {
        let dir = temp_socket("long-path-dir");
        std::fs::create_dir_all(&dir).unwrap();
        let used = dir.as_os_str().len() + 1;
        let path = dir.join("s".repeat(107 - used));
        assert_eq!(path.as_os_str().len(), 107);

        let listener = listen(&path);

        assert!(listener.is_ok(), "{:?}", listener.err());
        assert!(is_socket(&path));
        drop(listener);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn servers_of_one_process_listening_at_once_do_not_collide() {
        let dir = temp_socket("concurrent-dir");
        std::fs::create_dir_all(&dir).unwrap();
        let threads: Vec<_> = (0..16)
            .map(|n| {
                let path = dir.join(format!("server-socket-number-{n}.sock"));
                std::thread::spawn(move || listen(&path).map(drop))
            })
            .collect();

        let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();

        std::fs::remove_dir_all(&dir).unwrap();
        for result in results {
            assert!(result.is_ok(), "{:?}", result.err());
        }
    }

    #[test]
    fn a_short_socket_name_is_bound_in_place() {
        let dir = temp_socket("short-name-dir");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s");

        let listener = listen(&path);

        assert!(listener.is_ok(), "{:?}", listener.err());
        assert!(is_socket(&path));
        drop(listener);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn private_connection_is_connected_and_leaves_no_file() {
        let (stream, listener) = private_connection().unwrap();
        let (accepted, _) = listener.accept().unwrap();
        use std::io::{Read, Write};
        (&stream).write_all(b"ping").unwrap();
        let mut buf = [0u8; 4];
        (&accepted).read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"ping");
        let leftovers = std::fs::read_dir(std::env::temp_dir())
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with(&format!("vmmdev-vfio-user.{}.", std::process::id()))
            })
            .count();
        assert_eq!(leftovers, 0);
    }

    #[test]
    fn stale_socket_is_replaced() {
        let path = temp_socket("stale");
        let _ = std::fs::remove_file(&path);
        drop(UnixListener::bind(&path).unwrap());
        let listener = listen(&path).unwrap();
        drop(listener);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn new_socket_accepts_connections_and_leaves_no_staging_file() {
        let path = temp_socket("fresh");
        let _ = std::fs::remove_file(&path);
        let listener = listen(&path).unwrap();
        UnixStream::connect(&path).unwrap();
        listener.accept().unwrap();
        let mut staging = path.as_os_str().to_owned();
        staging.push(format!(".{}.new", std::process::id()));
        assert!(!PathBuf::from(staging).exists());
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn live_socket_is_not_taken_over() {
        let path = temp_socket("live");
        let _ = std::fs::remove_file(&path);
        let _live = UnixListener::bind(&path).unwrap();
        assert!(matches!(listen(&path), Err(ServerError::SocketInUse(_))));
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_regular_file_at_the_path_is_refused() {
        let path = temp_socket("file");
        std::fs::write(&path, b"").unwrap();
        assert!(matches!(listen(&path), Err(ServerError::NotASocket(_))));
        std::fs::remove_file(&path).unwrap();
    }
}
