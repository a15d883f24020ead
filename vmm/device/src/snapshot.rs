//! Save and restore of the device in its own versioned byte format.
//!
//! The snapshot holds the guest-visible device state: configuration space registers, event
//! and filter state, what the guest reported (info, additions, facilities, capabilities,
//! mouse, user state), host pointer and balloon state, and the addresses of the HGCM requests
//! the guest is waiting for. The VMMDev RAM is not saved: it is re-initialised and its
//! `fHaveEvents` byte recomputed. The session ID is not saved: a restored VM gets a new one,
//! which is how guests detect a restore.
//!
//! Pending HGCM requests are re-read from (restored) guest memory, re-parsed and resubmitted
//! with `restored = true`, after the embedder restored the HGCM framework (which re-creates
//! the clients with their old IDs). A request that can no longer be submitted is completed
//! with the error (rc and result set, DONE, HGCM event), as VirtualBox does.
//!
//! Format: the magic `VMMDEVSS`, a little-endian u32 version, then the fields in a fixed
//! order, every count bounded on load.

use std::time::{Duration, UNIX_EPOCH};

use vmmdev_protocol::vmmdev::VMMDEV_MAX_VMMDEVREQ_SIZE;

use crate::device::{PointerState, VmmDev, random_u64};
use crate::events::{EventSnapshot, EventState};
use crate::guest_state::{AdditionsVersion, Facility, GuestInfo, GuestStateSnapshot, UserState};
use crate::hgcm::pending::{PendingKind, PendingRecord};
use crate::pci::PciConfigState;

const MAGIC: &[u8; 8] = b"VMMDEVSS";
/// Current format version.
pub const SNAPSHOT_VERSION: u32 = 1;
const MAX_FACILITIES: u32 = 64;
const MAX_STRING: u32 = 4096;
const MAX_PENDING: u32 = 1 << 20;

/// Why a snapshot could not be taken.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SaveError {
    /// HGCM completions could still change guest memory: call `pause()` first.
    #[error("the device must be paused before it is saved")]
    NotPaused,
}

/// Why a snapshot could not be restored.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RestoreError {
    /// Not a device snapshot.
    #[error("not a VMMDev snapshot")]
    BadMagic,
    /// Written by an incompatible version.
    #[error("unsupported VMMDev snapshot version {0}")]
    UnsupportedVersion(u32),
    /// Ends early.
    #[error("VMMDev snapshot truncated")]
    Truncated,
    /// A field is out of range.
    #[error("VMMDev snapshot invalid: {0}")]
    Invalid(&'static str),
}

/// Host-side state kept in a snapshot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct HostSnapshot {
    pub(crate) pointer: [i32; 4],
    pub(crate) buttons: u32,
    pub(crate) balloon_target_mib: u32,
    pub(crate) balloon_last_read_mib: Option<u32>,
    pub(crate) balloon_inflated_chunks: u32,
}

/// Everything a snapshot carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DeviceSnapshot {
    pub(crate) pci: PciConfigState,
    pub(crate) events: EventSnapshot,
    pub(crate) guest: GuestStateSnapshot,
    pub(crate) host: HostSnapshot,
    pub(crate) pending: Vec<PendingRecord>,
}

impl DeviceSnapshot {
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer(Vec::with_capacity(512));
        w.bytes(MAGIC);
        w.u32(SNAPSHOT_VERSION);
        let pci = &self.pci;
        w.u16(pci.command);
        w.u32(pci.bar_addresses[0]);
        w.u32(pci.bar_addresses[1]);
        w.u8(pci.interrupt_line);
        w.u8(pci.cache_line_size);
        w.u8(pci.latency_timer);
        let ev = &self.events;
        w.u32(ev.pending);
        w.u32(ev.filter);
        w.opt_u32(ev.deferred_filter);
        w.bool(ev.additions_ok);
        w.bool(ev.hgcm_auto_enabled);
        let g = &self.guest;
        w.bool(g.info.is_some());
        if let Some(info) = g.info {
            w.u32(info.interface_version);
            w.u32(info.os_type);
        }
        w.bool(g.additions.is_some());
        if let Some(a) = &g.additions {
            w.u16(a.major);
            w.u16(a.minor);
            w.u32(a.build);
            w.u32(a.revision);
            w.u32(a.features);
            w.string(&a.name);
        }
        w.u32(g.facilities.len() as u32);
        for f in &g.facilities {
            w.u32(f.facility);
            w.u16(f.status);
            w.u32(f.flags);
            w.u64(
                f.changed
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or(Duration::ZERO)
                    .as_millis() as u64,
            );
        }
        w.u32(g.capabilities);
        w.u32(g.mouse_features);
        w.bool(g.user_state.is_some());
        if let Some(u) = &g.user_state {
            w.u32(u.state);
            w.string(&u.user);
            w.string(&u.domain);
            w.blob(&u.details);
        }
        let h = &self.host;
        for v in h.pointer {
            w.u32(v as u32);
        }
        w.u32(h.buttons);
        w.u32(h.balloon_target_mib);
        w.opt_u32(h.balloon_last_read_mib);
        w.u32(h.balloon_inflated_chunks);
        w.u32(self.pending.len() as u32);
        for p in &self.pending {
            w.u64(p.gpa);
            w.u32(p.size);
            w.u8(match p.kind {
                PendingKind::Connect => 1,
                PendingKind::Disconnect => 2,
                PendingKind::Call => 3,
            });
        }
        w.0
    }

    pub(crate) fn from_bytes(data: &[u8]) -> Result<Self, RestoreError> {
        let mut r = Reader(data);
        if r.take(MAGIC.len())? != MAGIC {
            return Err(RestoreError::BadMagic);
        }
        let version = r.u32()?;
        if version != SNAPSHOT_VERSION {
            return Err(RestoreError::UnsupportedVersion(version));
        }
        let pci = PciConfigState {
            command: r.u16()?,
            bar_addresses: [r.u32()?, r.u32()?],
            interrupt_line: r.u8()?,
            cache_line_size: r.u8()?,
            latency_timer: r.u8()?,
        };
        let events = EventSnapshot {
            pending: r.u32()?,
            filter: r.u32()?,
            deferred_filter: r.opt_u32()?,
            additions_ok: r.bool()?,
            hgcm_auto_enabled: r.bool()?,
        };
        let info = if r.bool()? {
            Some(GuestInfo {
                interface_version: r.u32()?,
                os_type: r.u32()?,
            })
        } else {
            None
        };
        let additions = if r.bool()? {
            Some(AdditionsVersion {
                major: r.u16()?,
                minor: r.u16()?,
                build: r.u32()?,
                revision: r.u32()?,
                features: r.u32()?,
                name: r.string()?,
            })
        } else {
            None
        };
        let facility_count = r.u32()?;
        if facility_count > MAX_FACILITIES {
            return Err(RestoreError::Invalid("facility count"));
        }
        let mut facilities = Vec::with_capacity(facility_count as usize);
        for _ in 0..facility_count {
            facilities.push(Facility {
                facility: r.u32()?,
                status: r.u16()?,
                flags: r.u32()?,
                changed: UNIX_EPOCH + Duration::from_millis(r.u64()?),
            });
        }
        let capabilities = r.u32()?;
        let mouse_features = r.u32()?;
        let user_state = if r.bool()? {
            Some(UserState {
                state: r.u32()?,
                user: r.string()?,
                domain: r.string()?,
                details: r.blob()?,
            })
        } else {
            None
        };
        let guest = GuestStateSnapshot {
            info,
            additions,
            facilities,
            capabilities,
            mouse_features,
            user_state,
        };
        let host = HostSnapshot {
            pointer: [
                r.u32()? as i32,
                r.u32()? as i32,
                r.u32()? as i32,
                r.u32()? as i32,
            ],
            buttons: r.u32()?,
            balloon_target_mib: r.u32()?,
            balloon_last_read_mib: r.opt_u32()?,
            balloon_inflated_chunks: r.u32()?,
        };
        let pending_count = r.u32()?;
        if pending_count > MAX_PENDING {
            return Err(RestoreError::Invalid("pending request count"));
        }
        let mut pending = Vec::new();
        for _ in 0..pending_count {
            let gpa = r.u64()?;
            let size = r.u32()?;
            if size > VMMDEV_MAX_VMMDEVREQ_SIZE {
                return Err(RestoreError::Invalid("pending request size"));
            }
            let kind = match r.u8()? {
                1 => PendingKind::Connect,
                2 => PendingKind::Disconnect,
                3 => PendingKind::Call,
                _ => return Err(RestoreError::Invalid("pending request kind")),
            };
            pending.push(PendingRecord { gpa, size, kind });
        }
        if !r.0.is_empty() {
            return Err(RestoreError::Invalid("trailing bytes"));
        }
        Ok(DeviceSnapshot {
            pci,
            events,
            guest,
            host,
            pending,
        })
    }
}

impl VmmDev {
    /// Saves the device. The device must be paused ([`VmmDev::pause`]) so that no HGCM
    /// completion changes guest memory between this snapshot and the embedder's copy of guest
    /// memory; completions arriving while paused stay pending and are saved as such.
    pub fn save(&self) -> Result<Vec<u8>, SaveError> {
        let shared = &self.shared;
        let pending = {
            let pending = shared.pending.lock();
            if !pending.is_paused() {
                return Err(SaveError::NotPaused);
            }
            pending.records()
        };
        let host = {
            let host = shared.host.lock();
            HostSnapshot {
                pointer: [
                    host.pointer.x,
                    host.pointer.y,
                    host.pointer.dz,
                    host.pointer.dw,
                ],
                buttons: host.pointer.buttons,
                balloon_target_mib: host.balloon_target_mib,
                balloon_last_read_mib: host.balloon_last_read_mib,
                balloon_inflated_chunks: host.balloon_inflated_chunks,
            }
        };
        let snapshot = DeviceSnapshot {
            pci: shared.pci.lock().state(),
            events: shared.irq.lock().events.snapshot(),
            guest: shared.guest.lock().snapshot(),
            host,
            pending,
        };
        Ok(snapshot.to_bytes())
    }

    /// Restores a snapshot taken by [`VmmDev::save`] into this device, after the embedder
    /// restored guest memory and the HGCM framework (`Hgcm::restore`). Requests that were
    /// pending are re-read from guest memory and resubmitted with `restored = true`; the
    /// RESTORED event is raised and a new session ID chosen. Leaves the device running (not
    /// paused).
    pub fn restore(&self, data: &[u8]) -> Result<(), RestoreError> {
        let snapshot = DeviceSnapshot::from_bytes(data)?;
        let shared = &self.shared;
        {
            let _no_writes = shared.write_gate.write();
            let mut pending = shared.pending.lock();
            pending.clear();
            let _ = pending.resume();
            shared.pending_changed.notify_all();
        }
        let intx_disabled = {
            let mut pci = shared.pci.lock();
            pci.restore(&snapshot.pci);
            pci.intx_disabled()
        };
        shared.guest.lock().restore(snapshot.guest);
        {
            let mut host = shared.host.lock();
            let [x, y, dz, dw] = snapshot.host.pointer;
            host.pointer = PointerState {
                x,
                y,
                dz,
                dw,
                buttons: snapshot.host.buttons,
            };
            host.balloon_target_mib = snapshot.host.balloon_target_mib;
            host.balloon_last_read_mib = snapshot.host.balloon_last_read_mib;
            host.balloon_inflated_chunks = snapshot.host.balloon_inflated_chunks;
            host.session_id = random_u64();
        }
        {
            let mut irq = shared.irq.lock();
            irq.events = EventState::restore(&snapshot.events);
            irq.intx_disabled = intx_disabled;
            if let Err(error) = shared.ram.init() {
                log::error!("VMMDev RAM re-initialisation failed: {error}");
            }
            irq.line = false;
            shared.line.set_level(false);
            shared.update_line(&mut irq);
        }
        for record in snapshot.pending {
            shared.resubmit(record);
        }
        self.raise_events(vmmdev_protocol::vmmdev::Events::RESTORED);
        Ok(())
    }
}

struct Writer(Vec<u8>);

impl Writer {
    fn bytes(&mut self, b: &[u8]) {
        self.0.extend_from_slice(b);
    }
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn bool(&mut self, v: bool) {
        self.u8(u8::from(v));
    }
    fn u16(&mut self, v: u16) {
        self.bytes(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.bytes(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.bytes(&v.to_le_bytes());
    }
    fn opt_u32(&mut self, v: Option<u32>) {
        self.bool(v.is_some());
        self.u32(v.unwrap_or(0));
    }
    fn blob(&mut self, b: &[u8]) {
        let len = b.len().min(MAX_STRING as usize);
        self.u32(len as u32);
        self.bytes(&b[..len]);
    }
    fn string(&mut self, s: &str) {
        self.blob(s.as_bytes());
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], RestoreError> {
        if self.0.len() < n {
            return Err(RestoreError::Truncated);
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], RestoreError> {
        self.take(N)?
            .try_into()
            .map_err(|_| RestoreError::Truncated)
    }
    fn u8(&mut self) -> Result<u8, RestoreError> {
        Ok(self.array::<1>()?[0])
    }
    fn bool(&mut self) -> Result<bool, RestoreError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(RestoreError::Invalid("boolean")),
        }
    }
    fn u16(&mut self) -> Result<u16, RestoreError> {
        self.array().map(u16::from_le_bytes)
    }
    fn u32(&mut self) -> Result<u32, RestoreError> {
        self.array().map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Result<u64, RestoreError> {
        self.array().map(u64::from_le_bytes)
    }
    fn opt_u32(&mut self) -> Result<Option<u32>, RestoreError> {
        let present = self.bool()?;
        let value = self.u32()?;
        Ok(present.then_some(value))
    }
    fn blob(&mut self) -> Result<Vec<u8>, RestoreError> {
        let len = self.u32()?;
        if len > MAX_STRING {
            return Err(RestoreError::Invalid("string length"));
        }
        Ok(self.take(len as usize)?.to_vec())
    }
    fn string(&mut self) -> Result<String, RestoreError> {
        String::from_utf8(self.blob()?).map_err(|_| RestoreError::Invalid("string encoding"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> DeviceSnapshot {
        DeviceSnapshot {
            pci: PciConfigState {
                command: 3,
                bar_addresses: [0xC000, 0xE000_0000],
                interrupt_line: 11,
                cache_line_size: 16,
                latency_timer: 0,
            },
            events: EventSnapshot {
                pending: 0x42,
                filter: 0x202,
                deferred_filter: Some(0x2),
                additions_ok: true,
                hgcm_auto_enabled: true,
            },
            guest: GuestStateSnapshot {
                info: Some(GuestInfo {
                    interface_version: 0x10004,
                    os_type: 0x53100,
                }),
                additions: Some(AdditionsVersion {
                    major: 6,
                    minor: 0,
                    build: 0,
                    revision: 127566,
                    features: 1,
                    name: "6.0.0".into(),
                }),
                facilities: vec![Facility {
                    facility: 20,
                    status: 50,
                    flags: 0,
                    changed: UNIX_EPOCH + Duration::from_millis(1234),
                }],
                capabilities: 4,
                mouse_features: 0x131,
                user_state: Some(UserState {
                    state: 1,
                    user: "alice".into(),
                    domain: String::new(),
                    details: vec![1, 2],
                }),
            },
            host: HostSnapshot {
                pointer: [10, 20, -1, 0],
                buttons: 1,
                balloon_target_mib: 64,
                balloon_last_read_mib: Some(32),
                balloon_inflated_chunks: 3,
            },
            pending: vec![PendingRecord {
                gpa: 0x1_0000,
                size: 140,
                kind: PendingKind::Call,
            }],
        }
    }

    #[test]
    fn snapshot_round_trips() {
        let snapshot = sample();
        assert_eq!(
            DeviceSnapshot::from_bytes(&snapshot.to_bytes()),
            Ok(snapshot)
        );
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let bytes = sample().to_bytes();
        for len in 0..bytes.len() {
            assert!(
                DeviceSnapshot::from_bytes(&bytes[..len]).is_err(),
                "len {len}"
            );
        }
    }

    #[test]
    fn pending_request_sizes_are_bounded() {
        let mut snapshot = sample();
        snapshot.pending[0].size = u32::MAX;
        assert_eq!(
            DeviceSnapshot::from_bytes(&snapshot.to_bytes()),
            Err(RestoreError::Invalid("pending request size"))
        );
    }

    #[test]
    fn foreign_data_and_versions_are_refused() {
        let mut bytes = sample().to_bytes();
        bytes[8] = 99;
        assert_eq!(
            DeviceSnapshot::from_bytes(&bytes),
            Err(RestoreError::UnsupportedVersion(99))
        );
        assert_eq!(
            DeviceSnapshot::from_bytes(b"NOTASNAPSHOT"),
            Err(RestoreError::BadMagic)
        );
    }
}
