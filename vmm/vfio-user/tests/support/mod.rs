//! A raw vfio-user client written by hand on a `UnixStream`, a server running in a thread, and a
//! memfd standing in for guest RAM.

#![allow(dead_code)]

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::fs::FileExt;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use vmm_sys_util::sock_ctrl_msg::ScmSocket;
use vmmdev_hgcm::{Hgcm, HgcmConfig};
use vmmdev_vfio_user::wire::{Command, FLAG_NO_REPLY, HEADER_SIZE, Header};
use vmmdev_vfio_user::{ServerError, VfioUserServer};

/// Region indices.
pub const BAR0: u32 = 0;
pub const BAR1: u32 = 1;
pub const CONFIG: u32 = 7;

/// vfio SET_IRQS flags.
pub const DATA_NONE: u32 = 1;
pub const DATA_BOOL: u32 = 2;
pub const DATA_EVENTFD: u32 = 4;
pub const ACTION_MASK: u32 = 8;
pub const ACTION_UNMASK: u32 = 16;
pub const ACTION_TRIGGER: u32 = 32;

/// DMA map flags.
pub const DMA_READ_WRITE: u32 = 3;

/// A reply from the server.
#[derive(Debug)]
pub struct Reply {
    pub header: Header,
    pub body: Vec<u8>,
    pub fd: Option<File>,
}

impl Reply {
    /// `Ok(self)` for a success reply, `Err(errno)` for an error reply.
    pub fn ok(self) -> Result<Reply, u32> {
        if self.header.is_error() {
            Err(self.header.error)
        } else {
            Ok(self)
        }
    }
}

/// A hand-written vfio-user client.
#[derive(Debug)]
pub struct Client {
    pub stream: UnixStream,
    next_id: u16,
}

impl Client {
    pub fn connect(path: &std::path::Path) -> Client {
        let stream = UnixStream::connect(path).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        Client { stream, next_id: 1 }
    }

    /// Sends a command; returns its message ID.
    pub fn send(&mut self, command: Command, flags: u32, body: &[u8], fds: &[RawFd]) -> u16 {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        let mut header = Header::command(id, command, (HEADER_SIZE + body.len()) as u32);
        header.flags |= flags;
        let mut bytes = header.to_bytes().to_vec();
        bytes.extend_from_slice(body);
        self.send_raw(&bytes, fds);
        id
    }

    /// Sends bytes as they are.
    pub fn send_raw(&mut self, bytes: &[u8], fds: &[RawFd]) {
        if fds.is_empty() {
            self.stream.write_all(bytes).unwrap();
        } else {
            let sent = self.stream.send_with_fds(&[bytes], fds).unwrap();
            self.stream.write_all(&bytes[sent..]).unwrap();
        }
    }

    /// Receives one reply.
    pub fn recv(&mut self) -> Reply {
        let mut head = [0u8; HEADER_SIZE];
        let (n, fd) = self.stream.recv_with_fd(&mut head).unwrap();
        assert!(n > 0, "server closed the connection");
        self.stream.read_exact(&mut head[n..]).unwrap();
        let header = Header::parse(&head);
        let mut body = vec![0u8; header.body_size().unwrap()];
        self.stream.read_exact(&mut body).unwrap();
        Reply { header, body, fd }
    }

    /// Sends a command and receives its reply.
    pub fn request(&mut self, command: Command, body: &[u8], fds: &[RawFd]) -> Reply {
        let id = self.send(command, 0, body, fds);
        let reply = self.recv();
        assert_eq!(reply.header.message_id, id, "reply to another message");
        assert_eq!(reply.header.command, command.raw());
        assert!(reply.header.is_reply());
        reply
    }

    pub fn negotiate(&mut self) -> Reply {
        let mut body = vec![0, 0, 1, 0];
        body.extend_from_slice(
            br#"{"capabilities":{"max_msg_fds":16,"max_data_xfer_size":1048576}}"#,
        );
        body.push(0);
        self.request(Command::Version, &body, &[])
            .ok()
            .expect("version negotiation")
    }

    pub fn region_read(&mut self, region: u32, offset: u64, count: u32) -> Result<Vec<u8>, u32> {
        let reply = self
            .request(
                Command::RegionRead,
                &region_access(offset, region, count),
                &[],
            )
            .ok()?;
        Ok(reply.body[16..].to_vec())
    }

    pub fn region_read_u32(&mut self, region: u32, offset: u64) -> u32 {
        let data = self.region_read(region, offset, 4).unwrap();
        u32::from_le_bytes(data.try_into().unwrap())
    }

    pub fn region_write(&mut self, region: u32, offset: u64, data: &[u8]) -> Result<(), u32> {
        let mut body = region_access(offset, region, data.len() as u32);
        body.extend_from_slice(data);
        self.request(Command::RegionWrite, &body, &[])
            .ok()
            .map(drop)
    }

    /// Submits the request at guest-physical `gpa` through the request port.
    pub fn submit(&mut self, gpa: u32) {
        self.region_write(BAR0, 0, &gpa.to_le_bytes()).unwrap();
    }

    pub fn dma_map(
        &mut self,
        flags: u32,
        offset: u64,
        address: u64,
        size: u64,
        fd: Option<RawFd>,
    ) -> Result<(), u32> {
        let mut body = Vec::new();
        body.extend_from_slice(&32u32.to_le_bytes());
        body.extend_from_slice(&flags.to_le_bytes());
        body.extend_from_slice(&offset.to_le_bytes());
        body.extend_from_slice(&address.to_le_bytes());
        body.extend_from_slice(&size.to_le_bytes());
        let fds: Vec<RawFd> = fd.into_iter().collect();
        self.request(Command::DmaMap, &body, &fds).ok().map(drop)
    }

    pub fn dma_unmap(&mut self, flags: u32, address: u64, size: u64) -> Result<(), u32> {
        let mut body = Vec::new();
        body.extend_from_slice(&24u32.to_le_bytes());
        body.extend_from_slice(&flags.to_le_bytes());
        body.extend_from_slice(&address.to_le_bytes());
        body.extend_from_slice(&size.to_le_bytes());
        self.request(Command::DmaUnmap, &body, &[]).ok().map(drop)
    }

    pub fn set_irqs(
        &mut self,
        index: u32,
        flags: u32,
        start: u32,
        count: u32,
        fds: &[RawFd],
    ) -> Result<(), u32> {
        self.request(
            Command::SetIrqs,
            &set_irqs_body(index, flags, start, count),
            fds,
        )
        .ok()
        .map(drop)
    }

    pub fn reset(&mut self) -> Result<(), u32> {
        self.request(Command::DeviceReset, &[], &[]).ok().map(drop)
    }

    /// Sends DEVICE_RESET with NO_REPLY; returns its ID.
    pub fn reset_no_reply(&mut self) -> u16 {
        self.send(Command::DeviceReset, FLAG_NO_REPLY, &[], &[])
    }
}

pub fn region_access(offset: u64, region: u32, count: u32) -> Vec<u8> {
    let mut body = offset.to_le_bytes().to_vec();
    body.extend_from_slice(&region.to_le_bytes());
    body.extend_from_slice(&count.to_le_bytes());
    body
}

pub fn set_irqs_body(index: u32, flags: u32, start: u32, count: u32) -> Vec<u8> {
    let mut body = Vec::new();
    for value in [20, flags, index, start, count] {
        body.extend_from_slice(&value.to_le_bytes());
    }
    body
}

/// A server on a temporary socket, serving clients in a thread until dropped.
pub struct TestServer {
    pub server: Arc<VfioUserServer>,
    thread: Option<JoinHandle<Result<(), ServerError>>>,
    pub path: PathBuf,
}

impl TestServer {
    pub fn start(name: &str) -> TestServer {
        let path = std::env::temp_dir().join(format!(
            "vmmdev-vfio-user-it-{}-{name}.sock",
            std::process::id()
        ));
        let _ = std::fs::remove_file(&path);
        let hgcm = Hgcm::new(HgcmConfig::default());
        hgcm.register_builtin(vmmdev_svc_echo::echo_entry, "")
            .unwrap();
        let server = Arc::new(VfioUserServer::new(&path, hgcm, Default::default()).unwrap());
        let runner = Arc::clone(&server);
        let thread = std::thread::spawn(move || runner.run());
        TestServer {
            server,
            thread: Some(thread),
            path,
        }
    }

    pub fn client(&self) -> Client {
        Client::connect(&self.path)
    }

    /// A client that has negotiated the version.
    pub fn negotiated_client(&self) -> Client {
        let mut client = self.client();
        client.negotiate();
        client
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.server.stop_handle().stop();
        if let Some(thread) = self.thread.take() {
            let result = thread.join().expect("server thread panicked");
            if !std::thread::panicking() {
                result.expect("server failed");
            }
        }
    }
}

/// Polls `condition` for up to 10 s.
pub fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A memfd standing in for guest RAM.
pub struct GuestRam {
    pub file: File,
}

impl GuestRam {
    pub fn new(size: u64) -> GuestRam {
        let name = std::ffi::CString::new("guest-ram").unwrap();
        // SAFETY: a valid name and flags.
        let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
        assert!(fd >= 0);
        // SAFETY: a fresh descriptor owned by nothing else.
        let file = unsafe { File::from_raw_fd(fd) };
        file.set_len(size).unwrap();
        GuestRam { file }
    }

    pub fn fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    pub fn write(&self, gpa: u64, data: &[u8]) {
        self.file.write_all_at(data, gpa).unwrap();
    }

    pub fn read(&self, gpa: u64, len: usize) -> Vec<u8> {
        let mut data = vec![0u8; len];
        self.file.read_exact_at(&mut data, gpa).unwrap();
        data
    }

    pub fn u32_at(&self, gpa: u64) -> u32 {
        u32::from_le_bytes(self.read(gpa, 4).try_into().unwrap())
    }

    pub fn i32_at(&self, gpa: u64) -> i32 {
        self.u32_at(gpa) as i32
    }
}

/// A VMMDev request: the 24-byte header followed by `body` (0xAA-filled like the Linux driver).
pub fn vmmdev_request(request_type: u32, size: u32, body: &[(usize, &[u8])]) -> Vec<u8> {
    let mut bytes = vec![0xAAu8; size as usize];
    bytes[0..4].copy_from_slice(&size.to_le_bytes());
    bytes[4..8].copy_from_slice(&0x0001_0001u32.to_le_bytes());
    bytes[8..12].copy_from_slice(&request_type.to_le_bytes());
    bytes[12..16].copy_from_slice(&(-1i32).to_le_bytes());
    bytes[16..20].copy_from_slice(&0u32.to_le_bytes());
    bytes[20..24].copy_from_slice(&1u32.to_le_bytes());
    for (offset, field) in body {
        bytes[*offset..*offset + field.len()].copy_from_slice(field);
    }
    bytes
}

/// Where the tests put guest RAM and requests.
pub const RAM_SIZE: u64 = 1 << 20;
pub const REQUEST_GPA: u64 = 0x1000;

/// A negotiated client with `ram` mapped at guest-physical 0.
pub fn client_with_ram(server: &TestServer, ram: &GuestRam) -> Client {
    let mut client = server.negotiated_client();
    client
        .dma_map(DMA_READ_WRITE, 0, 0, RAM_SIZE, Some(ram.fd()))
        .unwrap();
    client
}

/// Submits `request` at [`REQUEST_GPA`] and returns its `rc`.
pub fn perform(client: &mut Client, ram: &GuestRam, request: &[u8]) -> i32 {
    ram.write(REQUEST_GPA, request);
    client.submit(REQUEST_GPA as u32);
    ram.i32_at(REQUEST_GPA + 12)
}

/// REPORT_GUEST_INFO (interface 1.4, Linux 64-bit) and a filter enabling HGCM events: the
/// device then raises its interrupt for HGCM completions.
pub fn report_guest(client: &mut Client, ram: &GuestRam) {
    let info = vmmdev_request(
        50,
        32,
        &[
            (24, &0x0001_0004u32.to_le_bytes()),
            (28, &0x0005_3100u32.to_le_bytes()),
        ],
    );
    assert_eq!(perform(client, ram, &info), 0, "REPORT_GUEST_INFO");
    let filter = vmmdev_request(
        42,
        32,
        &[
            (24, &0x202u32.to_le_bytes()),
            (28, &(!0x202u32).to_le_bytes()),
        ],
    );
    assert_eq!(perform(client, ram, &filter), 0, "CTL_GUEST_FILTER_MASK");
}
