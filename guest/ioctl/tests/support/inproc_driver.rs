//! The vboxguest driver's ioctl layer for HGCM, played on top of the in-process guest
//! (`vmmdev-guest-inproc`), which drives the real device model and HGCM framework: integration
//! tests of the guest libraries run against real host services without a VM.
//!
//! Shared by the integration tests of `vmmdev-guest-ioctl` and `vmmdev-guest-tools` (included
//! with `#[path]`); each test binary uses a subset.

#![allow(dead_code)]

use std::collections::HashSet;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use vmmdev_guest_inproc::{BufferDirection, GuestError, GuestParm, InProcessVm};
use vmmdev_guest_ioctl::{Errno, GuestTransport, Status};
use vmmdev_hgcm::Hgcm;
use vmmdev_protocol::hgcm::{HgcmParameter, ParameterType, Width};
use vmmdev_protocol::ioctl::{
    self, DriverVersionInfoOut, HgcmCallHeader, HgcmConnectIn, HgcmConnectOut, HgcmDisconnectIn,
    IoctlHeader,
};
use zerocopy::FromBytes;

/// The driver's ioctl layer for HGCM over the in-process guest: one session, user-space
/// buffers bounced like the kernel does.
#[derive(Debug)]
pub struct InprocDriver {
    /// The in-process VM: its device gives access to the HGCM host side.
    pub vm: InProcessVm,
    clients: Mutex<HashSet<u32>>,
    /// Set to interrupt the pending calls, as a signal would.
    pub signal: Arc<AtomicBool>,
}

impl InprocDriver {
    /// A driver session over a new in-process VM whose device serves `hgcm`.
    pub fn new(hgcm: Hgcm) -> Self {
        let vm = InProcessVm::new(hgcm).expect("in-process VM");
        vm.guest.probe().expect("probe");
        Self {
            vm,
            clients: Mutex::new(HashSet::new()),
            signal: Arc::new(AtomicBool::new(false)),
        }
    }

    fn version(buffer: &mut [u8]) -> Result<(), Errno> {
        let (reply, _) = DriverVersionInfoOut::mut_from_prefix(buffer).map_err(|_| einval())?;
        reply.session_version.set(ioctl::VBG_IOC_VERSION);
        reply.driver_version.set(ioctl::VBG_IOC_VERSION);
        reply.driver_revision.set(0);
        Ok(())
    }

    fn connect(&self, buffer: &mut [u8]) -> Result<(), Errno> {
        let (input, _) = HgcmConnectIn::read_from_prefix(buffer).map_err(|_| einval())?;
        let name = input.location.service_name().ok_or_else(einval)?;
        let name = std::str::from_utf8(name).map_err(|_| einval())?;
        let (status, client) = match self.vm.guest.hgcm_connect(name) {
            Ok(client) => (Status::VINF_SUCCESS, client),
            Err(GuestError::Request { status, .. }) => (status, 0),
            Err(_) => return Err(Errno(libc::EIO)),
        };
        if client != 0 {
            self.clients.lock().unwrap().insert(client);
        }
        let (reply, _) = HgcmConnectOut::mut_from_prefix(buffer).map_err(|_| einval())?;
        reply.header.rc.set(status.raw());
        reply.client_id.set(client);
        Ok(())
    }

    fn disconnect(&self, buffer: &mut [u8]) -> Result<(), Errno> {
        let (input, _) = HgcmDisconnectIn::mut_from_prefix(buffer).map_err(|_| einval())?;
        let client = input.client_id.get();
        if !self.clients.lock().unwrap().remove(&client) {
            return Err(einval());
        }
        let status = match self.vm.guest.hgcm_disconnect(client) {
            Ok(()) => Status::VINF_SUCCESS,
            Err(GuestError::Request { status, .. }) => status,
            Err(_) => return Err(Errno(libc::EIO)),
        };
        input.header.rc.set(status.raw());
        Ok(())
    }

    /// # Safety
    ///
    /// The LinAddr parameters in `buffer` must point to valid memory (the transport contract).
    unsafe fn call(&self, buffer: &mut [u8]) -> Result<(), Errno> {
        let (header, rest) = HgcmCallHeader::read_from_prefix(buffer).map_err(|_| einval())?;
        let client = header.client_id.get();
        if !self.clients.lock().unwrap().contains(&client) {
            return Err(einval());
        }
        let wire: Vec<HgcmParameter> = HgcmParameter::decode_all(rest, Width::W64)
            .take(usize::from(header.parameter_count.get()))
            .collect();
        let mut parms = Vec::with_capacity(wire.len());
        for parameter in &wire {
            parms.push(match *parameter {
                HgcmParameter::U32(value) => GuestParm::U32(value),
                HgcmParameter::U64(value) => GuestParm::U64(value),
                HgcmParameter::LinAddr { kind, size, addr } => {
                    let direction = match kind {
                        ParameterType::LIN_ADDR_IN => BufferDirection::In,
                        ParameterType::LIN_ADDR_OUT => BufferDirection::Out,
                        ParameterType::LIN_ADDR => BufferDirection::Both,
                        _ => return Err(einval()),
                    };
                    let len = usize::try_from(size).map_err(|_| einval())?;
                    let data = if direction == BufferDirection::Out || len == 0 {
                        vec![0; len]
                    } else {
                        // SAFETY: the caller guarantees `addr` is readable for `size` bytes.
                        unsafe { user_slice(addr, len) }.to_vec()
                    };
                    GuestParm::Buffer { data, direction }
                }
                _ => return Err(einval()),
            });
        }
        let timeout_ms = header.timeout_ms.get();
        let options = vmmdev_guest_inproc::CallOptions {
            timeout: (timeout_ms != ioctl::VBG_TIMEOUT_INFINITE)
                .then(|| Duration::from_millis(timeout_ms.into())),
            interrupt: Some(Arc::clone(&self.signal)),
        };
        let result =
            match self
                .vm
                .guest
                .hgcm_call(client, header.function.get(), &mut parms, &options)
            {
                Ok(result) => result.result,
                Err(GuestError::TimedOut) => return Err(Errno(libc::ETIMEDOUT)),
                Err(GuestError::Interrupted) => return Err(Errno(libc::EINTR)),
                Err(GuestError::Request { status, .. }) => status,
                Err(_) => return Err(Errno(libc::EIO)),
            };
        let parameters = buffer
            .get_mut(size_of::<HgcmCallHeader>()..)
            .ok_or_else(einval)?;
        for ((slot, sent), parm) in parameters.chunks_exact_mut(16).zip(&wire).zip(&parms) {
            let returned = match (sent, parm) {
                (_, GuestParm::U32(value)) => HgcmParameter::U32(*value),
                (_, GuestParm::U64(value)) => HgcmParameter::U64(*value),
                (
                    HgcmParameter::LinAddr { kind, addr, .. },
                    GuestParm::Buffer { data, direction },
                ) => {
                    if *direction != BufferDirection::In && !data.is_empty() {
                        // SAFETY: the caller guarantees `addr` is writable for the original
                        // size, and the guest never returns more than that.
                        unsafe { user_slice_mut(*addr, data.len()) }.copy_from_slice(data);
                    }
                    HgcmParameter::LinAddr {
                        kind: *kind,
                        size: u32::try_from(data.len()).map_err(|_| einval())?,
                        addr: *addr,
                    }
                }
                _ => return Err(einval()),
            };
            returned.encode(Width::W64, slot).map_err(|_| einval())?;
        }
        let (reply, _) = IoctlHeader::mut_from_prefix(buffer).map_err(|_| einval())?;
        reply.rc.set(result.raw());
        Ok(())
    }
}

impl GuestTransport for InprocDriver {
    unsafe fn ioctl(&self, request: u32, buffer: &mut [u8]) -> Result<(), Errno> {
        if let Ok((header, _)) = IoctlHeader::mut_from_prefix(buffer) {
            header.rc.set(Status::VINF_SUCCESS.raw());
        }
        let size_bits = ioctl::IOC_SIZE_MAX << ioctl::IOC_SIZESHIFT;
        match request {
            ioctl::VBG_IOCTL_DRIVER_VERSION_INFO => Self::version(buffer),
            ioctl::VBG_IOCTL_HGCM_CONNECT => self.connect(buffer),
            ioctl::VBG_IOCTL_HGCM_DISCONNECT => self.disconnect(buffer),
            // SAFETY: forwarded from this function's own contract.
            number if Some(number & !size_bits) == ioctl::vbg_ioctl_hgcm_call_64(0) => unsafe {
                self.call(buffer)
            },
            _ => Err(Errno(libc::ENOTTY)),
        }
    }
}

fn einval() -> Errno {
    Errno(libc::EINVAL)
}

/// # Safety
///
/// `addr` must be readable for `len` bytes for the returned lifetime.
unsafe fn user_slice<'a>(addr: u64, len: usize) -> &'a [u8] {
    let pointer = std::ptr::with_exposed_provenance::<u8>(addr as usize);
    // SAFETY: guaranteed by the caller.
    unsafe { std::slice::from_raw_parts(pointer, len) }
}

/// # Safety
///
/// `addr` must be writable for `len` bytes for the returned lifetime, and not otherwise borrowed.
unsafe fn user_slice_mut<'a>(addr: u64, len: usize) -> &'a mut [u8] {
    let pointer = std::ptr::with_exposed_provenance_mut::<u8>(addr as usize);
    // SAFETY: guaranteed by the caller.
    unsafe { std::slice::from_raw_parts_mut(pointer, len) }
}
