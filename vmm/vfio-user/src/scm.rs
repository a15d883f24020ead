//! Sending and receiving bytes with file descriptors (`SCM_RIGHTS`) on a Unix stream socket.
//!
//! vfio-user passes guest-memory fds with DMA_MAP, eventfds with SET_IRQS and the BAR mmap fd with
//! region-info replies. Received descriptors are wrapped in [`OwnedFd`] at once, so every one of
//! them is closed unless its message is accepted; descriptors beyond [`MAX_FDS`] are refused by
//! the kernel and reported through [`Received::fds_truncated`].

use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

/// Most descriptors one message may carry (the vfio-user client's own limit).
pub const MAX_FDS: usize = 16;

/// Control-message buffer, aligned for `cmsghdr`, large enough for [`MAX_FDS`] descriptors.
#[repr(C, align(8))]
struct ControlBuffer([u8; 128]);

// The buffer must hold one SCM_RIGHTS message with MAX_FDS descriptors.
const _: () = assert!(size_of::<libc::cmsghdr>() + MAX_FDS * size_of::<RawFd>() <= 128);

/// What one `recvmsg` delivered.
#[derive(Debug, Default)]
pub struct Received {
    /// Bytes placed in the buffer; 0 means the peer closed the connection.
    pub bytes: usize,
    /// Descriptors that came with the bytes.
    pub fds: Vec<OwnedFd>,
    /// The peer sent more descriptors than fit; the extra ones were closed by the kernel.
    pub fds_truncated: bool,
}

/// Receives up to `buf.len()` bytes and any descriptors sent with them. Retries on `EINTR`.
pub fn recv_with_fds(stream: &UnixStream, buf: &mut [u8]) -> io::Result<Received> {
    let mut control = ControlBuffer([0; 128]);
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    loop {
        // SAFETY: an all-zero msghdr is a valid empty header.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.0.as_mut_ptr().cast();
        msg.msg_controllen = control.0.len() as _;
        // SAFETY: `msg` points at `iov` (covering `buf`) and at `control`, both alive and
        // writable for the duration of the call; the kernel writes only within their lengths.
        let n = unsafe { libc::recvmsg(stream.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n < 0 {
            let error = io::Error::last_os_error();
            if error.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(error);
        }
        let mut received = Received {
            bytes: n as usize,
            fds: Vec::new(),
            fds_truncated: msg.msg_flags & libc::MSG_CTRUNC != 0,
        };
        // SAFETY: `msg` was filled in by a successful recvmsg, so its control fields describe
        // control messages inside `control`; CMSG_FIRSTHDR/CMSG_NXTHDR stay within them.
        let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
        while !cmsg.is_null() {
            // SAFETY: `cmsg` is non-null and was returned by CMSG_FIRSTHDR/CMSG_NXTHDR for
            // `msg`, so it points at a complete cmsghdr inside `control`.
            let header = unsafe { std::ptr::read_unaligned(cmsg) };
            if header.cmsg_level == libc::SOL_SOCKET && header.cmsg_type == libc::SCM_RIGHTS {
                // SAFETY: CMSG_LEN only computes a length.
                let data_offset = unsafe { libc::CMSG_LEN(0) } as usize;
                let count =
                    (header.cmsg_len as usize).saturating_sub(data_offset) / size_of::<RawFd>();
                // SAFETY: the data of an SCM_RIGHTS message follows its header inside
                // `control`; CMSG_DATA points at it.
                let data = unsafe { libc::CMSG_DATA(cmsg) }.cast::<RawFd>();
                for i in 0..count {
                    // SAFETY: `i < count`, and `count` descriptors fit in the message the
                    // kernel wrote; the read is unaligned-safe.
                    let fd = unsafe { std::ptr::read_unaligned(data.add(i)) };
                    // SAFETY: the kernel installed `fd` in this process for us; nothing else
                    // owns it.
                    received.fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
                }
            }
            // SAFETY: `cmsg` is a valid control message of `msg` (see above).
            cmsg = unsafe { libc::CMSG_NXTHDR(&msg, cmsg) };
        }
        return Ok(received);
    }
}

/// Sends all of `data`, attaching `fds` to its first byte. Retries on `EINTR`.
pub fn send_with_fds(stream: &UnixStream, data: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    if fds.len() > MAX_FDS {
        return Err(io::Error::from_raw_os_error(libc::E2BIG));
    }
    let mut control = ControlBuffer([0; 128]);
    let mut sent = 0;
    while sent < data.len() || (sent == 0 && !fds.is_empty()) {
        let rest = data.get(sent..).unwrap_or_default();
        let mut iov = libc::iovec {
            iov_base: rest.as_ptr().cast_mut().cast(),
            iov_len: rest.len(),
        };
        // SAFETY: an all-zero msghdr is a valid empty header.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        if sent == 0 && !fds.is_empty() {
            let payload = fds.len() * size_of::<RawFd>();
            // SAFETY: CMSG_SPACE and CMSG_LEN only compute lengths.
            let (space, len) = unsafe {
                (
                    libc::CMSG_SPACE(payload as u32) as usize,
                    libc::CMSG_LEN(payload as u32),
                )
            };
            msg.msg_control = control.0.as_mut_ptr().cast();
            msg.msg_controllen = space as _;
            // SAFETY: `msg_control` points at `control`, which is large enough for one
            // message of MAX_FDS descriptors (checked at compile time), so the first header
            // and its data lie inside it.
            unsafe {
                let cmsg = libc::CMSG_FIRSTHDR(&msg);
                (*cmsg).cmsg_level = libc::SOL_SOCKET;
                (*cmsg).cmsg_type = libc::SCM_RIGHTS;
                (*cmsg).cmsg_len = len as _;
                let slot = libc::CMSG_DATA(cmsg).cast::<RawFd>();
                for (i, fd) in fds.iter().enumerate() {
                    std::ptr::write_unaligned(slot.add(i), fd.as_raw_fd());
                }
            }
        }
        // SAFETY: `msg` points at `iov` (covering the unsent part of `data`) and, on the first
        // call, at `control`; the kernel only reads them.
        let n = unsafe { libc::sendmsg(stream.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
        if n < 0 {
            let error = io::Error::last_os_error();
            if error.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(error);
        }
        sent += n as usize;
        if data.is_empty() {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;
    use std::io::{Read, Seek, Write};
    use std::os::fd::AsFd;

    fn temp_file_with(content: &[u8]) -> File {
        let name = std::ffi::CString::new("scm-test").unwrap();
        // SAFETY: a valid name and flags.
        let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
        assert!(fd >= 0);
        // SAFETY: fresh descriptor owned by nothing else.
        let mut file = unsafe { File::from_raw_fd(fd) };
        file.write_all(content).unwrap();
        file
    }

    #[test]
    fn descriptors_travel_with_the_bytes() {
        let (a, b) = UnixStream::pair().unwrap();
        let file = temp_file_with(b"shared");
        send_with_fds(&a, b"hello", &[file.as_fd()]).unwrap();

        let mut buf = [0u8; 16];
        let received = recv_with_fds(&b, &mut buf).unwrap();

        assert_eq!(&buf[..received.bytes], b"hello");
        assert_eq!(received.fds.len(), 1);
        assert!(!received.fds_truncated);
        let mut copy = File::from(received.fds.into_iter().next().unwrap());
        copy.rewind().unwrap();
        let mut content = String::new();
        copy.read_to_string(&mut content).unwrap();
        assert_eq!(content, "shared");
    }

    #[test]
    fn more_descriptors_than_the_limit_are_refused_by_the_sender() {
        let (a, _b) = UnixStream::pair().unwrap();
        let file = temp_file_with(b"x");
        let fds: Vec<_> = (0..=MAX_FDS).map(|_| file.as_fd()).collect();
        let error = send_with_fds(&a, b"x", &fds).unwrap_err();
        assert_eq!(error.raw_os_error(), Some(libc::E2BIG));
    }

    #[test]
    fn closed_peer_reads_as_zero_bytes() {
        let (a, b) = UnixStream::pair().unwrap();
        drop(a);
        let mut buf = [0u8; 4];
        let received = recv_with_fds(&b, &mut buf).unwrap();
        assert_eq!(received.bytes, 0);
        assert!(received.fds.is_empty());
    }
}
