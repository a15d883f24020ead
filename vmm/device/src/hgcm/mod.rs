//! HGCM requests (types 60–65): submission to the framework, completion into guest memory,
//! cancellation.
//!
//! Submission (hgcm.md §4): parse from the request copy, reserve an entry in the pending
//! table, write `VINF_HGCM_ASYNC_EXECUTE` into `rc` in guest memory, hand the request to the
//! framework. A synchronous refusal removes the entry and the dispatcher writes the copy back
//! with the error; an accepted request is not written back at all.
//!
//! Completion (hgcm.md §5, linux-guest H-3.6) runs on whichever thread the service completes
//! on: outputs (values, reported sizes, embedded data) → `result` → atomic OR of DONE with
//! release ordering → HGCM event. A request that was cancelled or dropped by a reset is never
//! touched again.
//!
//! Cancellation (hgcm.md §6, H-4.7/H-4.8) finds the target by address; the framework decides
//! atomically whether the cancel or the completion wins.

pub mod params;
pub mod pending;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, VolatileMemory};
use vmmdev_hgcm::{
    CallOutcome, CallRequest, CancelError, ClientId, ConnectOutcome, DisconnectOutcome, Parm,
    RequestId, Requestor,
};
use vmmdev_protocol::Status;
use vmmdev_protocol::hgcm::{
    HgcmCallRequest, HgcmCancel2Request32, HgcmCancel2Request64, HgcmConnectRequest,
    HgcmDisconnectRequest, HgcmRequestFlags, HgcmRequestHeader, Width,
};
use vmmdev_protocol::vmmdev::{Events, RequestHeader, RequestType};
use zerocopy::FromBytes;

use self::params::{CallLayout, OutputSlot, ParsedParams, parse_params};
use self::pending::{CancelTarget, CompletionGate, PendingKind, PendingRecord};
use crate::device::Shared;
use crate::request::RequestCopy;

/// Offset of `fu32Flags` in every HGCM request.
const OFF_FLAGS: u64 = std::mem::offset_of!(HgcmRequestHeader, flags) as u64;
/// Offset of `result` in every HGCM request.
const OFF_RESULT: u64 = std::mem::offset_of!(HgcmRequestHeader, result) as u64;
/// Offset of `rc` in every request.
const OFF_RC: u64 = std::mem::offset_of!(RequestHeader, rc) as u64;
/// Offset of `requestType` in every request.
const OFF_REQUEST_TYPE: u64 = std::mem::offset_of!(RequestHeader, request_type) as u64;
/// Offset of the connect request's client ID.
const OFF_CONNECT_CLIENT_ID: u64 = std::mem::offset_of!(HgcmConnectRequest, client_id) as u64;
/// How long a cancel waits for a request in transition (being submitted or completed).
const CANCEL_SETTLE_TIMEOUT: Duration = Duration::from_millis(250);
/// Fixed host bytes charged per pending request (entry, closure, framework bookkeeping).
const REQUEST_OVERHEAD_BYTES: u64 = 512;

/// What the completion needs to know about a request.
pub(crate) struct Submission {
    gpa: u64,
    token: u64,
    request_type: u32,
    mem: Arc<GuestMemoryMmap>,
}

impl Shared {
    /// Handles types 60–65. `None` = accepted asynchronously (nothing to write back now).
    pub(crate) fn handle_hgcm(
        self: &Arc<Self>,
        copy: &mut RequestCopy,
        mem: &Arc<GuestMemoryMmap>,
    ) -> Option<Status> {
        let request_type = copy.request_type();
        match request_type {
            RequestType::HGCM_CANCEL => return Some(self.cancel_in_place(copy)),
            RequestType::HGCM_CANCEL2 => return Some(self.cancel2(copy)),
            _ => {}
        }
        if copy.gpa() % 4 != 0 {
            // DONE is set with an atomic OR, which needs a naturally aligned word.
            self.diagnose(format_args!(
                "HGCM request at misaligned address {:#x}",
                copy.gpa()
            ));
            return Some(Status::VERR_INVALID_PARAMETER);
        }
        let requestor = self.hgcm_requestor(copy);
        let result = match request_type {
            RequestType::HGCM_CONNECT => self.connect(copy, mem, requestor),
            RequestType::HGCM_DISCONNECT => self.disconnect(copy, mem, requestor),
            _ => self.call(copy, mem, requestor, false),
        };
        result.err()
    }

    /// The requestor the framework sees: the header's bits if the guest announced requestor
    /// information in ReportGuestInfo2, LEGACY otherwise.
    fn hgcm_requestor(&self, copy: &RequestCopy) -> Requestor {
        if self.guest.lock().requestor_info_enabled() {
            Requestor(copy.requestor())
        } else {
            Requestor::LEGACY
        }
    }

    /// Reserves a pending entry, enables the HGCM event and writes 2903 into `rc`.
    fn begin_submission(
        &self,
        copy: &RequestCopy,
        mem: &Arc<GuestMemoryMmap>,
        kind: PendingKind,
        requestor: Requestor,
        charge: u64,
    ) -> Result<Submission, Status> {
        let gpa = copy.gpa();
        let token = self
            .pending
            .lock()
            .reserve(
                gpa,
                copy.size() as u32,
                kind,
                budget_category(requestor),
                charge + REQUEST_OVERHEAD_BYTES,
            )
            .map_err(|error| {
                self.diagnose(format_args!("HGCM request refused: {error}"));
                match error {
                    pending::PendingError::Overlap { .. } => Status::VERR_INVALID_PARAMETER,
                    _ => Status::VERR_NO_MEMORY,
                }
            })?;
        {
            let mut irq = self.irq.lock();
            irq.events.auto_enable_hgcm();
            self.update_line(&mut irq);
        }
        let _ = mem.write_obj(
            Status::VINF_HGCM_ASYNC_EXECUTE.raw().to_le(),
            GuestAddress(gpa + OFF_RC),
        );
        Ok(Submission {
            gpa,
            token,
            request_type: copy.request_type().raw(),
            mem: Arc::clone(mem),
        })
    }

    /// Finishes a submission with the framework's answer.
    fn end_submission(
        &self,
        submission: &Submission,
        result: Result<RequestId, vmmdev_hgcm::SubmitError>,
    ) -> Result<(), Status> {
        let mut pending = self.pending.lock();
        match result {
            Ok(id) => {
                pending.submitted(submission.gpa, submission.token, id);
                self.pending_changed.notify_all();
                Ok(())
            }
            Err(error) => {
                pending.remove(submission.gpa, submission.token);
                self.pending_changed.notify_all();
                drop(pending);
                log::debug!("HGCM submission at {:#x} refused: {error}", submission.gpa);
                Err(Status(error.status()))
            }
        }
    }

    fn connect(
        self: &Arc<Self>,
        copy: &mut RequestCopy,
        mem: &Arc<GuestMemoryMmap>,
        requestor: Requestor,
    ) -> Result<(), Status> {
        let Some(req) = copy.prefix::<HgcmConnectRequest>() else {
            return Err(Status::VERR_INVALID_PARAMETER);
        };
        let name = req
            .location
            .service_name()
            .and_then(|n| std::str::from_utf8(n).ok())
            .map(str::to_owned)
            .ok_or(Status::VERR_INVALID_PARAMETER)?;
        let submission = self.begin_submission(copy, mem, PendingKind::Connect, requestor, 0)?;
        let device = Arc::downgrade(self);
        let done = submission.clone_identity();
        let result = self.hgcm.connect(
            &name,
            requestor,
            Box::new(move |outcome: ConnectOutcome| {
                if let Some(shared) = device.upgrade() {
                    shared.complete_connect(done, outcome);
                }
            }),
        );
        self.end_submission(&submission, result)
    }

    fn disconnect(
        self: &Arc<Self>,
        copy: &mut RequestCopy,
        mem: &Arc<GuestMemoryMmap>,
        requestor: Requestor,
    ) -> Result<(), Status> {
        let Some(req) = copy.prefix::<HgcmDisconnectRequest>() else {
            return Err(Status::VERR_INVALID_PARAMETER);
        };
        let client = req.client_id.get();
        if client == 0 {
            return Err(Status::VERR_INVALID_PARAMETER);
        }
        let submission = self.begin_submission(copy, mem, PendingKind::Disconnect, requestor, 0)?;
        let device = Arc::downgrade(self);
        let done = submission.clone_identity();
        let result = self.hgcm.disconnect(
            ClientId(client),
            Box::new(move |outcome: DisconnectOutcome| {
                if let Some(shared) = device.upgrade() {
                    shared.complete_simple(done, outcome.status);
                }
            }),
        );
        self.end_submission(&submission, result)
    }

    /// Submits a call (also used to resubmit restored calls).
    pub(crate) fn call(
        self: &Arc<Self>,
        copy: &mut RequestCopy,
        mem: &Arc<GuestMemoryMmap>,
        requestor: Requestor,
        restored: bool,
    ) -> Result<(), Status> {
        let width =
            Width::of_request_type(copy.request_type()).ok_or(Status::VERR_INVALID_PARAMETER)?;
        let Some(req) = copy.prefix::<HgcmCallRequest>() else {
            return Err(Status::VERR_INVALID_PARAMETER);
        };
        let (client, function, count) = (
            req.client_id.get(),
            req.function.get(),
            req.parameter_count.get(),
        );
        let translator = self.translator.as_deref();
        let parsed = parse_params(&CallLayout {
            request: copy.bytes(),
            wide: width == Width::W64,
            count,
            mem,
            translator,
            max_call_bytes: self.config.max_call_buffer_bytes,
        })
        .map_err(|error| {
            self.diagnose(format_args!(
                "HGCM call at {:#x} refused: {error}",
                copy.gpa()
            ));
            error.status()
        })?;
        let ParsedParams {
            params,
            outputs,
            host_bytes,
            ..
        } = parsed;
        let charge = host_bytes + (outputs.len() * std::mem::size_of::<OutputSlot>()) as u64;
        let submission = self.begin_submission(copy, mem, PendingKind::Call, requestor, charge)?;
        let device = Arc::downgrade(self);
        let done = submission.clone_identity();
        let result = self.hgcm.call(
            CallRequest {
                client: ClientId(client),
                function,
                params,
                requestor,
                restored,
            },
            Box::new(move |outcome: CallOutcome| {
                if let Some(shared) = device.upgrade() {
                    shared.complete_call(done, outcome, outputs);
                }
            }),
        );
        self.end_submission(&submission, result)
    }

    fn complete_connect(self: Arc<Self>, done: Submission, outcome: ConnectOutcome) {
        self.complete(done, move |shared, done| {
            let status = if !shared.request_unchanged(&done) {
                Status::VERR_INVALID_PARAMETER.raw()
            } else {
                if Status(outcome.status).is_success() {
                    let _ = done.mem.write_obj(
                        outcome.client.0.to_le(),
                        GuestAddress(done.gpa + OFF_CONNECT_CLIENT_ID),
                    );
                }
                outcome.status
            };
            shared.finish(done, status);
        });
    }

    fn complete_simple(self: Arc<Self>, done: Submission, status: i32) {
        self.complete(done, move |shared, done| shared.finish(done, status));
    }

    fn complete_call(
        self: Arc<Self>,
        done: Submission,
        outcome: CallOutcome,
        outputs: Vec<OutputSlot>,
    ) {
        self.complete(done, move |shared, done| {
            let status = if shared.request_unchanged(&done) {
                write_outputs(&done, outcome.params, &outputs);
                outcome.status
            } else {
                shared.diagnose(format_args!(
                    "HGCM request at {:#x} changed type while pending; outputs dropped",
                    done.gpa
                ));
                Status::VERR_INVALID_PARAMETER.raw()
            };
            shared.finish(done, status);
        });
    }

    /// Runs `write` for a completion unless the request is gone; parks it while paused. The
    /// job holds the device weakly: parked in the device's own table, it must not keep the
    /// device alive.
    fn complete(
        self: &Arc<Self>,
        done: Submission,
        write: impl FnOnce(&Shared, Submission) + Send + 'static,
    ) {
        let gpa = done.gpa;
        let token = done.token;
        let device = Arc::downgrade(self);
        let job: Box<dyn FnOnce() + Send> = Box::new(move || {
            let Some(shared) = device.upgrade() else {
                return;
            };
            // A reset or restore waits for writes in flight and forgets the request before
            // the next write can start: nothing is written into a post-reset guest.
            let _writing = shared.write_gate.read();
            if !shared.pending.lock().take_for_write(gpa, token) {
                return;
            }
            write(&shared, done);
            let mut pending = shared.pending.lock();
            pending.finish_write(gpa, token);
            shared.pending_changed.notify_all();
        });
        let (gate, job) = self.pending.lock().begin_completion(gpa, token, job);
        match (gate, job) {
            (CompletionGate::Proceed, Some(job)) => job(),
            (CompletionGate::Gone, _) => {
                log::debug!("completion of a dropped HGCM request at {gpa:#x} ignored");
            }
            _ => {}
        }
    }

    /// Whether the guest left the request type alone (it may have turned it into an
    /// in-place cancel, type 64).
    fn request_unchanged(&self, done: &Submission) -> bool {
        match done
            .mem
            .read_obj::<u32>(GuestAddress(done.gpa + OFF_REQUEST_TYPE))
        {
            Ok(current) => {
                let current = u32::from_le(current);
                current == done.request_type || current == RequestType::HGCM_CANCEL.raw()
            }
            Err(_) => false,
        }
    }

    /// Writes `result`, sets DONE atomically (release) and raises the HGCM event.
    fn finish(&self, done: Submission, status: i32) {
        let _ = done
            .mem
            .write_obj(status.to_le(), GuestAddress(done.gpa + OFF_RESULT));
        set_done(&done.mem, done.gpa);
        self.raise(Events::HGCM.bits());
    }

    /// Legacy cancel (64): the target is the request at this very address.
    fn cancel_in_place(&self, copy: &RequestCopy) -> Status {
        if copy.size() < std::mem::size_of::<HgcmRequestHeader>() {
            return Status::VERR_INVALID_PARAMETER;
        }
        match self.cancel_at(copy.gpa()) {
            Ok(()) => Status::VINF_SUCCESS,
            // VirtualBox maps "not found" to INVALID_PARAMETER for this variant.
            Err(_) => Status::VERR_INVALID_PARAMETER,
        }
    }

    /// Cancel2 (65), 28-byte (32-bit address) or ≥ 32-byte (64-bit address) form.
    fn cancel2(&self, copy: &RequestCopy) -> Status {
        let target = if copy.size() == std::mem::size_of::<HgcmCancel2Request32>() {
            HgcmCancel2Request32::read_from_bytes(copy.bytes())
                .ok()
                .map(|r| match r.phys_req_to_cancel.get() {
                    u32::MAX => u64::MAX,
                    gpa => u64::from(gpa),
                })
        } else if copy.size() >= std::mem::size_of::<HgcmCancel2Request64>() {
            HgcmCancel2Request64::read_from_prefix(copy.bytes())
                .ok()
                .map(|(r, _)| r.phys_req_to_cancel.get())
        } else {
            None
        };
        let Some(target) = target else {
            return Status::VERR_INVALID_PARAMETER;
        };
        if target == 0 || target == u64::MAX {
            return Status::VERR_INVALID_PARAMETER;
        }
        match self.cancel_at(target) {
            Ok(()) => Status::VINF_SUCCESS,
            Err(status) => status,
        }
    }

    /// Cancels the pending request at `gpa`. Ok = cancelled, never touched again;
    /// Err(NOT_FOUND) = not pending (after any completion in flight has set DONE).
    fn cancel_at(&self, gpa: u64) -> Result<(), Status> {
        let deadline = Instant::now() + CANCEL_SETTLE_TIMEOUT;
        let mut pending = self.pending.lock();
        loop {
            match pending.cancel_target(gpa) {
                CancelTarget::NotFound => return Err(Status::VERR_NOT_FOUND),
                CancelTarget::Pending { token, id } => {
                    drop(pending);
                    let result = self.hgcm.cancel(id);
                    pending = self.pending.lock();
                    match result {
                        Ok(()) => {
                            pending.remove(gpa, token);
                            self.pending_changed.notify_all();
                            return Ok(());
                        }
                        Err(CancelError::NotFound(_)) => {
                            // The completion won the race: wait until it has set DONE.
                            if !pending.contains(gpa, token) {
                                return Err(Status::VERR_NOT_FOUND);
                            }
                        }
                    }
                }
                CancelTarget::Busy => {}
            }
            if self
                .pending_changed
                .wait_until(&mut pending, deadline)
                .timed_out()
            {
                return Err(Status::VERR_NOT_FOUND);
            }
        }
    }
}

impl Submission {
    fn clone_identity(&self) -> Submission {
        Submission {
            gpa: self.gpa,
            token: self.token,
            request_type: self.request_type,
            mem: Arc::clone(&self.mem),
        }
    }
}

/// Writes a call's outputs into guest memory: values, reported sizes and embedded data.
fn write_outputs(done: &Submission, params: Vec<Parm>, outputs: &[OutputSlot]) {
    let mem = &done.mem;
    let at = |offset: u32| GuestAddress(done.gpa + u64::from(offset));
    for (parm, slot) in params.into_iter().zip(outputs) {
        match (slot, parm) {
            (OutputSlot::Value32 { offset }, Parm::U32(value)) => {
                let _ = mem.write_obj(value.to_le(), at(*offset));
            }
            (OutputSlot::Value64 { offset }, Parm::U64(value)) => {
                let _ = mem.write_obj(value.to_le(), at(*offset));
            }
            (
                OutputSlot::Embedded {
                    size_offset,
                    data_offset,
                    capacity,
                    from_host,
                },
                Parm::Buffer(buffer),
            ) => {
                let reported = (buffer.reported_len() as u32).min(*capacity);
                let _ = mem.write_obj(reported.to_le(), at(*size_offset));
                if *from_host {
                    if let Some(bytes) = buffer.into_host_bytes() {
                        let n = (reported as usize).min(bytes.len());
                        let _ = mem.write_slice(&bytes[..n], at(*data_offset));
                    }
                }
            }
            (
                OutputSlot::ReportedSize {
                    size_offset,
                    capacity,
                },
                Parm::Buffer(buffer),
            ) => {
                let reported = (buffer.reported_len() as u32).min(*capacity);
                let _ = mem.write_obj(reported.to_le(), at(*size_offset));
            }
            (OutputSlot::None, _) => {}
            (slot, parm) => {
                log::warn!(
                    "service changed parameter type ({slot:?} vs {}); output dropped",
                    parm.type_name()
                );
            }
        }
    }
}

/// Atomically ORs DONE into `fu32Flags` with release ordering (the guest may be setting
/// CANCELLED concurrently).
fn set_done(mem: &GuestMemoryMmap, gpa: u64) {
    let flags = GuestAddress(gpa + OFF_FLAGS);
    let done = HgcmRequestFlags::DONE.bits();
    let ok = GuestMemoryBackend::get_slice(mem, flags, 4)
        .ok()
        .and_then(|slice| {
            slice
                .get_atomic_ref::<AtomicU32>(0)
                .ok()
                .map(|word| word.fetch_or(done.to_le(), Ordering::Release))
        })
        .is_some();
    if !ok {
        log::warn!("cannot set DONE of the HGCM request at {gpa:#x}");
    }
}

/// Device-side memory budget category of a requestor (hgcm.md §4.1).
fn budget_category(requestor: Requestor) -> usize {
    if requestor.is_legacy() {
        return 0;
    }
    match requestor.0 & 0x7 {
        0..=2 => 0,
        3 | 4 => 1,
        _ => 2,
    }
}

impl Shared {
    /// Resubmits a request that was pending when the device was saved (restore).
    pub(crate) fn resubmit(self: &Arc<Self>, record: PendingRecord) {
        let mem = self.memory();
        let mut bytes = vec![0u8; record.size as usize];
        if mem
            .read_slice(&mut bytes, GuestAddress(record.gpa))
            .is_err()
        {
            self.diagnose(format_args!(
                "restored HGCM request at {:#x} is outside guest RAM; dropped",
                record.gpa
            ));
            return;
        }
        let mut copy = RequestCopy::from_bytes(record.gpa, bytes);
        let Some(header) = copy.prefix::<HgcmRequestHeader>().copied() else {
            return;
        };
        if header.flags().contains(HgcmRequestFlags::DONE) {
            // Completed before guest memory was saved: nothing to redo.
            return;
        }
        let kind_matches = matches!(
            (record.kind, header.header.request_type()),
            (PendingKind::Connect, RequestType::HGCM_CONNECT)
                | (PendingKind::Disconnect, RequestType::HGCM_DISCONNECT)
                | (
                    PendingKind::Call,
                    RequestType::HGCM_CALL32 | RequestType::HGCM_CALL64
                )
        );
        let size_matches = header.header.size.get() == record.size;
        let requestor = self.hgcm_requestor(&copy);
        let result = if !kind_matches || !size_matches {
            Err(Status::VERR_MISMATCH)
        } else {
            match record.kind {
                PendingKind::Connect => self.connect(&mut copy, &mem, requestor),
                PendingKind::Disconnect => self.disconnect(&mut copy, &mem, requestor),
                PendingKind::Call => self.call(&mut copy, &mem, requestor, true),
            }
        };
        if let Err(status) = result {
            // The guest still waits for DONE: complete the request with the error.
            self.diagnose(format_args!(
                "restored HGCM request at {:#x} failed: {status:?}",
                record.gpa
            ));
            let _ = mem.write_obj(status.raw().to_le(), GuestAddress(record.gpa + OFF_RC));
            let _ = mem.write_obj(status.raw().to_le(), GuestAddress(record.gpa + OFF_RESULT));
            if record.gpa % 4 == 0 {
                set_done(&mem, record.gpa);
            }
            self.raise(Events::HGCM.bits());
        }
    }
}
