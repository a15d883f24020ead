//! Saved state of the framework: clients, service state blobs and the identities of pending
//! requests, with a versioned, bounds-checked byte encoding.

use vmmdev_hgcm_abi::{ClientId, Requestor};

use crate::request::RequestId;

const MAGIC: &[u8; 8] = b"VMMHGCM\0";
/// Version of the byte encoding written by [`HgcmSnapshot::to_bytes`].
pub const SNAPSHOT_FORMAT_VERSION: u32 = 1;

/// What kind of request was pending at save time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PendingKind {
    /// A connect.
    Connect,
    /// A disconnect.
    Disconnect,
    /// A call.
    Call,
}

impl PendingKind {
    fn code(self) -> u8 {
        match self {
            Self::Connect => 1,
            Self::Disconnect => 2,
            Self::Call => 3,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(Self::Connect),
            2 => Some(Self::Disconnect),
            3 => Some(Self::Call),
            _ => None,
        }
    }
}

/// A request that was pending at save time; the transport matches these against its own records
/// and resubmits the calls (with `restored: true`) after [`crate::Hgcm::restore`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingRequest {
    /// The id the request had.
    pub id: RequestId,
    /// What it was.
    pub kind: PendingKind,
    /// The service it was addressed to.
    pub service: String,
    /// The client (for a connect: the id reserved for it).
    pub client: ClientId,
    /// The function number (calls only; 0 otherwise).
    pub function: u32,
}

/// One client of a saved service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ClientSnapshot {
    pub(crate) id: ClientId,
    pub(crate) requestor: Requestor,
    pub(crate) state: Vec<u8>,
}

/// One saved service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ServiceSnapshot {
    pub(crate) name: String,
    pub(crate) state_version: u32,
    pub(crate) state: Vec<u8>,
    pub(crate) clients: Vec<ClientSnapshot>,
}

/// The saved state of an [`crate::Hgcm`] instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HgcmSnapshot {
    pub(crate) next_client_id: u32,
    pub(crate) next_request_seq: u64,
    pub(crate) services: Vec<ServiceSnapshot>,
    pub(crate) pending: Vec<PendingRequest>,
}

/// Why a byte string is not a snapshot.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SnapshotError {
    /// The data ends early.
    #[error("snapshot data is truncated")]
    Truncated,
    /// Not a snapshot at all.
    #[error("not an HGCM snapshot (bad magic)")]
    BadMagic,
    /// Written by an incompatible version.
    #[error("unsupported HGCM snapshot format version {0}")]
    UnsupportedVersion(u32),
    /// A field has an impossible value.
    #[error("corrupt HGCM snapshot: {0}")]
    Corrupt(&'static str),
}

impl HgcmSnapshot {
    /// The requests that were pending at save time.
    pub fn pending(&self) -> &[PendingRequest] {
        &self.pending
    }

    /// Names of the saved services.
    pub fn service_names(&self) -> impl Iterator<Item = &str> {
        self.services.iter().map(|s| s.name.as_str())
    }

    /// Serializes the snapshot (little-endian, versioned).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Writer::default();
        out.bytes_raw(MAGIC);
        out.u32(SNAPSHOT_FORMAT_VERSION);
        out.u32(self.next_client_id);
        out.u64(self.next_request_seq);
        out.count(self.services.len());
        for service in &self.services {
            out.bytes(service.name.as_bytes());
            out.u32(service.state_version);
            out.bytes(&service.state);
            out.count(service.clients.len());
            for client in &service.clients {
                out.u32(client.id.0);
                out.u32(client.requestor.0);
                out.bytes(&client.state);
            }
        }
        out.count(self.pending.len());
        for pending in &self.pending {
            out.u64(pending.id.0);
            out.bytes_raw(&[pending.kind.code()]);
            out.bytes(pending.service.as_bytes());
            out.u32(pending.client.0);
            out.u32(pending.function);
        }
        out.0
    }

    /// Parses bytes written by [`Self::to_bytes`]; never panics on hostile input.
    pub fn from_bytes(data: &[u8]) -> Result<HgcmSnapshot, SnapshotError> {
        let mut r = Reader(data);
        if r.take(MAGIC.len())? != MAGIC {
            return Err(SnapshotError::BadMagic);
        }
        let version = r.u32()?;
        if version != SNAPSHOT_FORMAT_VERSION {
            return Err(SnapshotError::UnsupportedVersion(version));
        }
        let next_client_id = r.u32()?;
        let next_request_seq = r.u64()?;
        let service_count = r.count(16)?;
        let mut services = Vec::with_capacity(service_count);
        for _ in 0..service_count {
            let name = r.string()?;
            let state_version = r.u32()?;
            let state = r.bytes()?.to_vec();
            let client_count = r.count(12)?;
            let mut clients = Vec::with_capacity(client_count);
            for _ in 0..client_count {
                let id = ClientId(r.u32()?);
                if id.0 == 0 {
                    return Err(SnapshotError::Corrupt("client id 0"));
                }
                let requestor = Requestor(r.u32()?);
                clients.push(ClientSnapshot {
                    id,
                    requestor,
                    state: r.bytes()?.to_vec(),
                });
            }
            services.push(ServiceSnapshot {
                name,
                state_version,
                state,
                clients,
            });
        }
        let pending_count = r.count(21)?;
        let mut pending = Vec::with_capacity(pending_count);
        for _ in 0..pending_count {
            let id = RequestId(r.u64()?);
            let kind = PendingKind::from_code(r.take(1)?[0])
                .ok_or(SnapshotError::Corrupt("unknown pending request kind"))?;
            let service = r.string()?;
            let client = ClientId(r.u32()?);
            let function = r.u32()?;
            pending.push(PendingRequest {
                id,
                kind,
                service,
                client,
                function,
            });
        }
        if !r.0.is_empty() {
            return Err(SnapshotError::Corrupt("trailing bytes"));
        }
        Ok(HgcmSnapshot {
            next_client_id,
            next_request_seq,
            services,
            pending,
        })
    }
}

#[derive(Default)]
struct Writer(Vec<u8>);

impl Writer {
    fn bytes_raw(&mut self, data: &[u8]) {
        self.0.extend_from_slice(data);
    }
    fn u32(&mut self, v: u32) {
        self.bytes_raw(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.bytes_raw(&v.to_le_bytes());
    }
    fn count(&mut self, n: usize) {
        self.u64(n as u64);
    }
    fn bytes(&mut self, data: &[u8]) {
        self.count(data.len());
        self.bytes_raw(data);
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], SnapshotError> {
        if n > self.0.len() {
            return Err(SnapshotError::Truncated);
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    fn u32(&mut self) -> Result<u32, SnapshotError> {
        let mut b = [0; 4];
        b.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(b))
    }
    fn u64(&mut self) -> Result<u64, SnapshotError> {
        let mut b = [0; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(b))
    }
    /// A count of elements each at least `min_size` bytes long; bounded by what remains, so a
    /// hostile count cannot make us allocate more than the input's size.
    fn count(&mut self, min_size: usize) -> Result<usize, SnapshotError> {
        let n = self.u64()?;
        let n = usize::try_from(n).map_err(|_| SnapshotError::Truncated)?;
        if n.checked_mul(min_size)
            .is_none_or(|bytes| bytes > self.0.len())
        {
            return Err(SnapshotError::Truncated);
        }
        Ok(n)
    }
    fn bytes(&mut self) -> Result<&'a [u8], SnapshotError> {
        let n = self.count(1)?;
        self.take(n)
    }
    fn string(&mut self) -> Result<String, SnapshotError> {
        let raw = self.bytes()?;
        String::from_utf8(raw.to_vec()).map_err(|_| SnapshotError::Corrupt("name is not UTF-8"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> HgcmSnapshot {
        HgcmSnapshot {
            next_client_id: 42,
            next_request_seq: 99,
            services: vec![ServiceSnapshot {
                name: "Echo".into(),
                state_version: 3,
                state: vec![1, 2, 3],
                clients: vec![ClientSnapshot {
                    id: ClientId(7),
                    requestor: Requestor(0x8 | 6),
                    state: vec![9],
                }],
            }],
            pending: vec![PendingRequest {
                id: RequestId(5),
                kind: PendingKind::Call,
                service: "Echo".into(),
                client: ClientId(7),
                function: 2,
            }],
        }
    }

    #[test]
    fn snapshot_round_trips_through_bytes() {
        let snapshot = sample();
        assert_eq!(HgcmSnapshot::from_bytes(&snapshot.to_bytes()), Ok(snapshot));
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let bytes = sample().to_bytes();
        for len in 0..bytes.len() {
            assert!(
                HgcmSnapshot::from_bytes(&bytes[..len]).is_err(),
                "prefix of {len} bytes accepted"
            );
        }
    }

    #[test]
    fn wrong_magic_is_reported() {
        let mut bytes = sample().to_bytes();
        bytes[0] ^= 0xFF;
        assert_eq!(
            HgcmSnapshot::from_bytes(&bytes),
            Err(SnapshotError::BadMagic)
        );
    }

    #[test]
    fn future_format_version_is_refused() {
        let mut bytes = sample().to_bytes();
        bytes[8..12].copy_from_slice(&2u32.to_le_bytes());
        assert_eq!(
            HgcmSnapshot::from_bytes(&bytes),
            Err(SnapshotError::UnsupportedVersion(2))
        );
    }

    #[test]
    fn huge_element_count_is_refused_without_allocating() {
        let mut bytes = sample().to_bytes();
        // The service count follows magic, version, next client id and next request sequence.
        bytes[24..32].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(
            HgcmSnapshot::from_bytes(&bytes),
            Err(SnapshotError::Truncated)
        );
    }
}
