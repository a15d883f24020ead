//! HGCM the way the Linux driver does it (`vbg_hgcm_*`, linux-guest §4).
//!
//! Calls are always Call64. Every non-empty buffer is copied into a bounce buffer made of
//! scattered guest pages and described by a PageList parameter; an empty buffer keeps its
//! LinAddr type with size 0 and address 0. After the port write the caller either has its
//! answer (`rc` ≠ 2903) or sleeps until the ISR reports an HGCM event and the request's DONE
//! bit is set. A timeout or interruption cancels the call with Cancel2 (falling back to the
//! in-place Cancel), and a successful cancel frees the request at once: the host must never
//! touch it again.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use vmmdev_protocol::Status;
use vmmdev_protocol::hgcm::{
    HGCM_CALL_PARAMETERS_OFFSET, HGCM_PAGE_LIST_ENTRY_SIZE, HgcmCallRequest, HgcmCancel2Request32,
    HgcmConnectRequest, HgcmDisconnectRequest, HgcmPageListHeader, HgcmParameter, HgcmRequestFlags,
    HgcmRequestHeader, LocationType, ParameterDirection, ParameterType, Width,
};
use vmmdev_protocol::vmmdev::{RequestHeader, RequestType};
use zerocopy::{FromBytes, FromZeros, IntoBytes};

use crate::driver::{Guest, GuestError, Inner, new_request};
use crate::memory::PAGE_SIZE;

/// Direction of a caller's buffer, as the LinAddr types 4/5/6 express it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BufferDirection {
    /// Guest → host (LINADDR_IN).
    In,
    /// Host → guest (LINADDR_OUT).
    Out,
    /// Both ways (LINADDR).
    Both,
}

/// A call parameter as the caller sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GuestParm {
    /// 32-bit value, updated with the host's output.
    U32(u32),
    /// 64-bit value, updated with the host's output.
    U64(u64),
    /// A buffer; for Out/Both the host's data is copied back into `data`.
    Buffer {
        /// The bytes.
        data: Vec<u8>,
        /// Direction.
        direction: BufferDirection,
    },
}

/// How long a call may wait and what may interrupt it.
#[derive(Clone, Debug, Default)]
pub struct CallOptions {
    /// `None` waits forever (kernel callers).
    pub timeout: Option<Duration>,
    /// Set to interrupt the wait, like a signal for a user caller.
    pub interrupt: Option<Arc<AtomicBool>>,
}

/// The result of a completed call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallResult {
    /// `header.rc` after the port write (2903 when completed asynchronously).
    pub rc: Status,
    /// The service's status from `result`.
    pub result: Status,
}

const DIR_TO_HOST: u32 = ParameterDirection::TO_HOST.bits();
const DIR_FROM_HOST: u32 = ParameterDirection::FROM_HOST.bits();
/// How long the guest waits for DONE after a failed cancel that said "not found".
const CANCEL_NOT_FOUND_GRACE: Duration = Duration::from_millis(500);
/// How long the guest waits for DONE after any other failed cancel.
const CANCEL_FAILED_GRACE: Duration = Duration::from_secs(2);
/// Granularity at which a waiter re-checks its interrupt flag.
const WAIT_SLICE: Duration = Duration::from_millis(10);

#[derive(Debug)]
struct PendingBuffer {
    index: usize,
    pages: Vec<u64>,
    len: usize,
    copy_back: bool,
}

impl Guest {
    /// HGCM_CONNECT to `service` (location type 2), waiting without timeout like the kernel.
    pub fn hgcm_connect(&self, service: &str) -> Result<u32, GuestError> {
        let mut req = new_request::<HgcmConnectRequest>(RequestType::HGCM_CONNECT);
        req.header.flags.set(0);
        let mut name = [0u8; 128];
        let bytes = service.as_bytes();
        let n = bytes.len().min(127);
        name[..n].copy_from_slice(&bytes[..n]);
        req.location
            .location_type
            .set(LocationType::LOCAL_HOST_EXISTING.raw());
        req.location.service_name = name;
        req.client_id.set(0);
        let (result, bytes) = self
            .inner
            .hgcm_simple(req.as_bytes(), &CallOptions::default())?;
        check_result(RequestType::HGCM_CONNECT, result)?;
        let answer = HgcmConnectRequest::read_from_bytes(&bytes)
            .map_err(|_| GuestError::MalformedAnswer(RequestType::HGCM_CONNECT))?;
        Ok(answer.client_id.get())
    }

    /// HGCM_DISCONNECT.
    pub fn hgcm_disconnect(&self, client: u32) -> Result<(), GuestError> {
        let mut req = new_request::<HgcmDisconnectRequest>(RequestType::HGCM_DISCONNECT);
        req.header.flags.set(0);
        req.client_id.set(client);
        let (result, _) = self
            .inner
            .hgcm_simple(req.as_bytes(), &CallOptions::default())?;
        check_result(RequestType::HGCM_DISCONNECT, result)
    }

    /// HGCM_CALL64 with Linux's parameter encoding; outputs are written back into `params`.
    pub fn hgcm_call(
        &self,
        client: u32,
        function: u32,
        params: &mut [GuestParm],
        options: &CallOptions,
    ) -> Result<CallResult, GuestError> {
        let call = self.inner.start_call(client, function, params)?;
        self.inner.finish_call(call, params, options)
    }

    /// Builds and submits a call without waiting: the first half of [`Guest::hgcm_call`]
    /// (the port write has happened when this returns).
    pub fn start_call(
        &self,
        client: u32,
        function: u32,
        params: &[GuestParm],
    ) -> Result<PendingCall, GuestError> {
        self.inner.start_call(client, function, params)
    }

    /// Waits for a call started with [`Guest::start_call`] and copies its outputs into
    /// `params` (the same parameters that started it).
    pub fn finish_call(
        &self,
        call: PendingCall,
        params: &mut [GuestParm],
        options: &CallOptions,
    ) -> Result<CallResult, GuestError> {
        self.inner.finish_call(call, params, options)
    }
}

/// A submitted call whose completion has not been collected yet. Dropping it without
/// [`Guest::finish_call`] leaves its guest pages allocated, as Linux does with a request it can
/// neither cancel nor see completed.
#[derive(Debug)]
pub struct PendingCall {
    gpa: u64,
    pages: usize,
    rc: Status,
    request: Vec<u8>,
    buffers: Vec<PendingBuffer>,
}

impl PendingCall {
    /// Guest-physical address of the request.
    pub fn gpa(&self) -> u64 {
        self.gpa
    }

    /// `rc` right after the port write.
    pub fn rc(&self) -> Status {
        self.rc
    }
}

fn check_result(request: RequestType, result: CallResult) -> Result<(), GuestError> {
    if !result.rc.is_success() {
        return Err(GuestError::Request {
            request,
            status: result.rc,
        });
    }
    if !result.result.is_success() {
        return Err(GuestError::Request {
            request,
            status: result.result,
        });
    }
    Ok(())
}

impl Inner {
    /// Connect/disconnect: submit, wait, return the final request bytes.
    fn hgcm_simple(
        &self,
        request: &[u8],
        options: &CallOptions,
    ) -> Result<(CallResult, Vec<u8>), GuestError> {
        let pages = request.len().div_ceil(PAGE_SIZE as usize);
        let gpa = self.ram.pages().alloc_contiguous(pages)?;
        let mut bytes = request.to_vec();
        let rc = self.perform_at(gpa, &mut bytes);
        let outcome = self.finish_hgcm(gpa, rc, options);
        match outcome {
            Ok(result) => {
                let _ = self.ram.read(gpa, &mut bytes);
                self.ram.pages().free_contiguous(gpa, pages);
                Ok((result, bytes))
            }
            Err(Abandon::Freed(error)) => {
                self.ram.pages().free_contiguous(gpa, pages);
                Err(error)
            }
            Err(Abandon::Leaked(error)) => Err(error),
        }
    }

    fn start_call(
        &self,
        client: u32,
        function: u32,
        params: &[GuestParm],
    ) -> Result<PendingCall, GuestError> {
        let parm_size = Width::W64.parameter_size();
        let array_end = HGCM_CALL_PARAMETERS_OFFSET + params.len() * parm_size;
        let mut size = array_end;
        for parm in params.iter() {
            if let GuestParm::Buffer { data, .. } = parm {
                if !data.is_empty() {
                    let pages = data.len().div_ceil(PAGE_SIZE as usize);
                    size += HgcmPageListHeader::size_with_pages(pages as u16);
                }
            }
        }
        let mut request = vec![0xAAu8; size];
        let mut header = HgcmCallRequest::new_zeroed();
        header.header.header = RequestHeader::new(
            size as u32,
            RequestType::HGCM_CALL64,
            crate::driver::DRIVER_REQUESTOR,
        );
        header.header.flags.set(0);
        header.header.result.set(0);
        header.client_id.set(client);
        header.function.set(function);
        header.parameter_count.set(params.len() as u32);
        request[..HGCM_CALL_PARAMETERS_OFFSET].copy_from_slice(header.as_bytes());

        let mut buffers: Vec<PendingBuffer> = Vec::new();
        let mut extra = array_end;
        let mut encode_failed = false;
        for (index, parm) in params.iter().enumerate() {
            let at = HGCM_CALL_PARAMETERS_OFFSET + index * parm_size;
            let wire = match parm {
                GuestParm::U32(v) => HgcmParameter::U32(*v),
                GuestParm::U64(v) => HgcmParameter::U64(*v),
                GuestParm::Buffer { data, direction } if data.is_empty() => {
                    HgcmParameter::LinAddr {
                        kind: lin_addr_type(*direction),
                        size: 0,
                        addr: 0,
                    }
                }
                GuestParm::Buffer { data, direction } => {
                    let count = data.len().div_ceil(PAGE_SIZE as usize);
                    let pages = match self.ram.pages().alloc_scattered(count) {
                        Ok(pages) => pages,
                        Err(error) => {
                            self.free_buffers(&buffers);
                            return Err(error.into());
                        }
                    };
                    let flags = match direction {
                        BufferDirection::In => DIR_TO_HOST,
                        BufferDirection::Out => DIR_FROM_HOST,
                        BufferDirection::Both => DIR_TO_HOST | DIR_FROM_HOST,
                    };
                    for (i, &page) in pages.iter().enumerate() {
                        let start = i * PAGE_SIZE as usize;
                        let end = (start + PAGE_SIZE as usize).min(data.len());
                        let chunk = if *direction == BufferDirection::Out {
                            vec![0u8; end - start]
                        } else {
                            data[start..end].to_vec()
                        };
                        let _ = self.ram.write(page, &chunk);
                    }
                    let descriptor = HgcmPageListHeader {
                        flags: flags.into(),
                        offset_first_page: 0.into(),
                        page_count: (count as u16).into(),
                    };
                    let header_len = std::mem::size_of::<HgcmPageListHeader>();
                    request[extra..extra + header_len].copy_from_slice(descriptor.as_bytes());
                    for (i, &page) in pages.iter().enumerate() {
                        let at = extra + header_len + HGCM_PAGE_LIST_ENTRY_SIZE * i;
                        request[at..at + HGCM_PAGE_LIST_ENTRY_SIZE]
                            .copy_from_slice(&page.to_le_bytes());
                    }
                    let wire = HgcmParameter::PageList {
                        kind: ParameterType::PAGE_LIST,
                        size: data.len() as u32,
                        offset: extra as u32,
                    };
                    extra += HgcmPageListHeader::size_with_pages(count as u16);
                    buffers.push(PendingBuffer {
                        index,
                        pages,
                        len: data.len(),
                        copy_back: *direction != BufferDirection::In,
                    });
                    wire
                }
            };
            encode_failed |= wire
                .encode(Width::W64, &mut request[at..at + parm_size])
                .is_err();
        }
        if encode_failed {
            self.free_buffers(&buffers);
            return Err(GuestError::Request {
                request: RequestType::HGCM_CALL64,
                status: Status::VERR_INVALID_PARAMETER,
            });
        }

        let pages = size.div_ceil(PAGE_SIZE as usize);
        let gpa = match self.ram.pages().alloc_contiguous(pages) {
            Ok(gpa) => gpa,
            Err(error) => {
                self.free_buffers(&buffers);
                return Err(error.into());
            }
        };
        let rc = self.perform_at(gpa, &mut request);
        Ok(PendingCall {
            gpa,
            pages,
            rc,
            request,
            buffers,
        })
    }

    fn finish_call(
        &self,
        mut call: PendingCall,
        params: &mut [GuestParm],
        options: &CallOptions,
    ) -> Result<CallResult, GuestError> {
        match self.finish_hgcm(call.gpa, call.rc, options) {
            Ok(result) => {
                let _ = self.ram.read(call.gpa, &mut call.request);
                self.copy_back(&call.request, params, &call.buffers);
                self.free_buffers(&call.buffers);
                self.ram.pages().free_contiguous(call.gpa, call.pages);
                Ok(result)
            }
            Err(Abandon::Freed(error)) => {
                self.free_buffers(&call.buffers);
                self.ram.pages().free_contiguous(call.gpa, call.pages);
                Err(error)
            }
            Err(Abandon::Leaked(error)) => Err(error),
        }
    }

    fn copy_back(&self, request: &[u8], params: &mut [GuestParm], buffers: &[PendingBuffer]) {
        let parm_size = Width::W64.parameter_size();
        for (index, parm) in params.iter_mut().enumerate() {
            let at = HGCM_CALL_PARAMETERS_OFFSET + index * parm_size;
            let Some(raw) = request.get(at..at + parm_size) else {
                continue;
            };
            match (parm, HgcmParameter::decode(raw, Width::W64)) {
                (GuestParm::U32(v), Ok(HgcmParameter::U32(new))) => *v = new,
                (GuestParm::U64(v), Ok(HgcmParameter::U64(new))) => *v = new,
                (GuestParm::Buffer { data, .. }, Ok(HgcmParameter::PageList { size, .. })) => {
                    let Some(buffer) = buffers.iter().find(|b| b.index == index) else {
                        continue;
                    };
                    if !buffer.copy_back {
                        continue;
                    }
                    let n = (size as usize).min(buffer.len);
                    let mut out = vec![0u8; n];
                    for (i, &page) in buffer.pages.iter().enumerate() {
                        let start = i * PAGE_SIZE as usize;
                        if start >= n {
                            break;
                        }
                        let end = (start + PAGE_SIZE as usize).min(n);
                        let _ = self.ram.read(page, &mut out[start..end]);
                    }
                    data[..n].copy_from_slice(&out);
                    data.truncate(n);
                }
                _ => {}
            }
        }
    }

    fn free_buffers(&self, buffers: &[PendingBuffer]) {
        for buffer in buffers {
            self.ram.pages().free(buffer.pages.iter().copied());
        }
    }

    /// After the port write: interprets `rc`, waits for DONE, cancels on timeout/interrupt.
    fn finish_hgcm(
        &self,
        gpa: u64,
        rc: Status,
        options: &CallOptions,
    ) -> Result<CallResult, Abandon> {
        if !rc.is_success() {
            return Ok(CallResult { rc, result: rc });
        }
        if rc != Status::VINF_HGCM_ASYNC_EXECUTE {
            return Ok(CallResult {
                rc,
                result: self.result_of(gpa),
            });
        }
        let deadline = options.timeout.map(|t| Instant::now() + t);
        let interrupted = || {
            options
                .interrupt
                .as_ref()
                .is_some_and(|flag| flag.load(Ordering::Acquire))
        };
        match self.wait_done(gpa, deadline, interrupted) {
            Ok(()) => Ok(CallResult {
                rc,
                result: self.result_of(gpa),
            }),
            Err(reason) => self.cancel(gpa, reason).map(|()| CallResult {
                rc,
                result: self.result_of(gpa),
            }),
        }
    }

    fn is_done(&self, gpa: u64) -> bool {
        self.ram.read_u32(gpa + OFF_FLAGS) & HgcmRequestFlags::DONE.bits() != 0
    }

    fn result_of(&self, gpa: u64) -> Status {
        Status(self.ram.read_u32(gpa + OFF_RESULT) as i32)
    }

    /// Sleeps until DONE (woken by the ISR), the deadline, or an interruption.
    fn wait_done(
        &self,
        gpa: u64,
        deadline: Option<Instant>,
        interrupted: impl Fn() -> bool,
    ) -> Result<(), GuestError> {
        let mut generation = self.hgcm_events.lock();
        loop {
            if self.is_done(gpa) {
                return Ok(());
            }
            if interrupted() {
                return Err(GuestError::Interrupted);
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                return Err(GuestError::TimedOut);
            }
            let slice = deadline.map_or(WAIT_SLICE, |d| (d - now).min(WAIT_SLICE));
            let _ = self.hgcm_wake.wait_for(&mut generation, slice);
        }
    }

    /// `hgcm_cancel_call` + the waits of `vbg_hgcm_do_call`. `Ok` = DONE appeared after all
    /// (the call completed normally).
    fn cancel(&self, gpa: u64, reason: GuestError) -> Result<(), Abandon> {
        let mut cancel = new_request::<HgcmCancel2Request32>(RequestType::HGCM_CANCEL2);
        cancel.phys_req_to_cancel.set(gpa as u32);
        let mut status = self.perform(&mut cancel);
        if status == Status::VERR_NOT_IMPLEMENTED {
            // Legacy path: resubmit the call itself as an in-place cancel.
            let flags = self.ram.read_u32(gpa + OFF_FLAGS) | HgcmRequestFlags::CANCELLED.bits();
            let _ = self.ram.write(gpa + OFF_FLAGS, &flags.to_le_bytes());
            let _ = self.ram.write(
                gpa + OFF_TYPE,
                &RequestType::HGCM_CANCEL.raw().to_le_bytes(),
            );
            self.transport.submit(gpa as u32);
            status = Status(self.ram.read_u32(gpa + OFF_RC) as i32);
            if status == Status::VERR_INVALID_PARAMETER {
                status = Status::VERR_NOT_FOUND;
            }
        }
        if status.is_success() {
            return Err(Abandon::Freed(reason));
        }
        let grace = if status == Status::VERR_NOT_FOUND || status == Status::VERR_SEM_DESTROYED {
            CANCEL_NOT_FOUND_GRACE
        } else {
            CANCEL_FAILED_GRACE
        };
        match self.wait_done(gpa, Some(Instant::now() + grace), || false) {
            Ok(()) => Ok(()),
            Err(_) => {
                log::warn!("guest: HGCM request at {gpa:#x} neither cancelled nor done; leaked");
                Err(Abandon::Leaked(reason))
            }
        }
    }
}

/// How a failed call left its memory.
enum Abandon {
    /// The request was cancelled; its memory was freed.
    Freed(GuestError),
    /// The host might still write it; its memory is leaked on purpose.
    Leaked(GuestError),
}

const OFF_TYPE: u64 = std::mem::offset_of!(RequestHeader, request_type) as u64;
const OFF_RC: u64 = std::mem::offset_of!(RequestHeader, rc) as u64;
const OFF_FLAGS: u64 = std::mem::offset_of!(HgcmRequestHeader, flags) as u64;
const OFF_RESULT: u64 = std::mem::offset_of!(HgcmRequestHeader, result) as u64;

fn lin_addr_type(direction: BufferDirection) -> ParameterType {
    match direction {
        BufferDirection::In => ParameterType::LIN_ADDR_IN,
        BufferDirection::Out => ParameterType::LIN_ADDR_OUT,
        BufferDirection::Both => ParameterType::LIN_ADDR,
    }
}
