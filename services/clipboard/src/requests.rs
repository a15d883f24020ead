//! The host's outstanding reads of guest data.
//!
//! Reading the guest's clipboard is asynchronous: the host asks (a request with a deadline, which
//! queues READ_DATA(_CID) to the owning client), the guest answers some time later with
//! DATA_WRITE, and the host collects the answer by polling (or after the service's notification).
//! Nothing waits: a request whose deadline passes is reported as timed out to the host and its
//! late answer is dropped. The table is bounded in count, and answered requests the host never
//! collects are dropped after [`RETAIN_ANSWERED`].

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use vmmdev_hgcm_sdk::ClientId;
use vmmdev_protocol::status::Status;

use crate::content::Format;

/// Requests outstanding at once.
pub const MAX_REQUESTS: usize = 64;
/// How long an answer waits to be collected after its deadline.
pub const RETAIN_ANSWERED: Duration = Duration::from_secs(30);

/// Where a request stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestState {
    /// The guest has not answered.
    Waiting,
    /// The guest's data in host encoding (empty: no data in that format), or why there is none.
    Answered(Result<Vec<u8>, Status>),
}

/// One read of guest data.
#[derive(Clone, Debug)]
pub struct HostRequest {
    /// The client asked.
    pub client: ClientId,
    /// The format asked for.
    pub format: Format,
    /// When the host stops waiting.
    pub deadline: Instant,
    /// The state.
    pub state: RequestState,
}

/// The table is full.
#[derive(Clone, Copy, Debug, thiserror::Error, PartialEq, Eq)]
#[error("{MAX_REQUESTS} reads of guest data are already outstanding")]
pub struct TooManyRequests;

/// What collecting a request found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Collected {
    /// The guest's answer (the request is gone).
    Answer(Result<Vec<u8>, Status>),
    /// Still waiting.
    Pending,
    /// The deadline passed without an answer (the request is gone).
    TimedOut,
    /// No such request.
    Unknown,
}

/// The outstanding requests, by ID (which is also the event part of the context ID).
#[derive(Debug)]
pub struct Requests {
    table: BTreeMap<u32, HostRequest>,
    next: u32,
    wrapped: bool,
}

impl Default for Requests {
    fn default() -> Self {
        Requests::starting_at(1)
    }
}

impl Requests {
    /// An empty table whose first ID is `first` (never 0).
    pub fn starting_at(first: u32) -> Self {
        Requests {
            table: BTreeMap::new(),
            next: first.max(1),
            wrapped: false,
        }
    }

    /// The ID the next request gets (saved with the state so restored IDs are never reused).
    pub fn next_id(&self) -> u32 {
        self.next
    }

    /// Registers a request; returns its ID.
    pub fn create(
        &mut self,
        client: ClientId,
        format: Format,
        deadline: Instant,
    ) -> Result<u32, TooManyRequests> {
        if self.table.len() >= MAX_REQUESTS {
            return Err(TooManyRequests);
        }
        let mut id = self.next;
        while self.table.contains_key(&id) {
            id = Self::after(id);
        }
        if Self::after(id) < id {
            self.wrapped = true;
        }
        self.next = Self::after(id);
        self.table.insert(
            id,
            HostRequest {
                client,
                format,
                deadline,
                state: RequestState::Waiting,
            },
        );
        Ok(id)
    }

    fn after(id: u32) -> u32 {
        id.checked_add(1).unwrap_or(1)
    }

    /// Whether `id` was ever handed out (so a late answer can be told from a forged one).
    pub fn was_issued(&self, id: u32) -> bool {
        id != 0 && (self.wrapped || id < self.next)
    }

    /// The waiting request `id` of `client`.
    pub fn waiting(&self, client: ClientId, id: u32) -> Option<&HostRequest> {
        self.table
            .get(&id)
            .filter(|r| r.client == client && r.state == RequestState::Waiting)
    }

    /// The oldest waiting request of `client` for `format` (legacy clients answer without an ID).
    pub fn oldest_waiting(&self, client: ClientId, format: Format) -> Option<u32> {
        self.table
            .iter()
            .find(|(_, r)| {
                r.client == client && r.format == format && r.state == RequestState::Waiting
            })
            .map(|(id, _)| *id)
    }

    /// Records the answer to `id`.
    pub fn answer(&mut self, id: u32, result: Result<Vec<u8>, Status>) {
        if let Some(request) = self.table.get_mut(&id) {
            request.state = RequestState::Answered(result);
        }
    }

    /// Fails every waiting request of `client` with `status`; returns their IDs.
    pub fn fail_client(&mut self, client: ClientId, status: Status) -> Vec<u32> {
        let mut failed = Vec::new();
        for (id, request) in &mut self.table {
            if request.client == client && request.state == RequestState::Waiting {
                request.state = RequestState::Answered(Err(status));
                failed.push(*id);
            }
        }
        failed
    }

    /// Collects request `id` at `now`.
    pub fn collect(&mut self, id: u32, now: Instant) -> Collected {
        let Some(request) = self.table.get(&id) else {
            return Collected::Unknown;
        };
        match &request.state {
            RequestState::Waiting if now < request.deadline => Collected::Pending,
            RequestState::Waiting => {
                self.table.remove(&id);
                Collected::TimedOut
            }
            RequestState::Answered(_) => match self.table.remove(&id).map(|r| r.state) {
                Some(RequestState::Answered(result)) => Collected::Answer(result),
                _ => Collected::Unknown,
            },
        }
    }

    /// The request `id`, if any.
    pub fn get(&self, id: u32) -> Option<&HostRequest> {
        self.table.get(&id)
    }

    /// Drops requests long past their deadline (answered or not); returns the waiting ones
    /// dropped, whose queued messages should go too.
    pub fn purge(&mut self, now: Instant) -> Vec<(u32, ClientId)> {
        let mut abandoned = Vec::new();
        self.table.retain(|id, request| {
            let keep = now < request.deadline + RETAIN_ANSWERED;
            if !keep && request.state == RequestState::Waiting {
                abandoned.push((*id, request.client));
            }
            keep
        });
        abandoned
    }

    /// Forgets everything (after a restore: the host's waiters are gone).
    pub fn clear(&mut self) {
        self.table.clear();
    }

    /// Whether none are held.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GUEST: ClientId = ClientId(3);

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    #[test]
    fn answer_is_collected_once() {
        let mut requests = Requests::default();
        let id = requests.create(GUEST, Format::Text, soon()).expect("room");
        assert_eq!(requests.collect(id, Instant::now()), Collected::Pending);
        requests.answer(id, Ok(b"x".to_vec()));
        assert_eq!(
            requests.collect(id, Instant::now()),
            Collected::Answer(Ok(b"x".to_vec()))
        );
        assert_eq!(requests.collect(id, Instant::now()), Collected::Unknown);
    }

    #[test]
    fn unanswered_request_times_out_at_its_deadline() {
        let mut requests = Requests::default();
        let deadline = Instant::now();
        let id = requests
            .create(GUEST, Format::Text, deadline)
            .expect("room");
        assert_eq!(requests.collect(id, deadline), Collected::TimedOut);
        assert!(requests.is_empty());
        assert!(requests.was_issued(id));
    }

    #[test]
    fn table_is_bounded() {
        let mut requests = Requests::default();
        for _ in 0..MAX_REQUESTS {
            requests.create(GUEST, Format::Html, soon()).expect("room");
        }
        assert_eq!(
            requests.create(GUEST, Format::Html, soon()),
            Err(TooManyRequests)
        );
    }

    #[test]
    fn legacy_answers_go_to_the_oldest_request_of_their_format() {
        let mut requests = Requests::default();
        let first = requests.create(GUEST, Format::Text, soon()).expect("room");
        let html = requests.create(GUEST, Format::Html, soon()).expect("room");
        requests.create(GUEST, Format::Text, soon()).expect("room");
        assert_eq!(requests.oldest_waiting(GUEST, Format::Text), Some(first));
        assert_eq!(requests.oldest_waiting(GUEST, Format::Html), Some(html));
        assert_eq!(requests.oldest_waiting(ClientId(4), Format::Text), None);
    }

    #[test]
    fn ids_never_issued_are_told_apart_from_expired_ones() {
        let mut requests = Requests::default();
        let id = requests.create(GUEST, Format::Text, soon()).expect("room");
        assert!(requests.was_issued(id));
        assert!(!requests.was_issued(id + 1));
        assert!(!requests.was_issued(0));
    }

    #[test]
    fn ids_wrap_past_the_top_without_zero() {
        let mut requests = Requests::starting_at(u32::MAX);
        assert_eq!(requests.create(GUEST, Format::Text, soon()), Ok(u32::MAX));
        assert_eq!(requests.create(GUEST, Format::Text, soon()), Ok(1));
    }

    #[test]
    fn disconnect_fails_the_clients_waiting_requests() {
        let mut requests = Requests::default();
        let id = requests.create(GUEST, Format::Text, soon()).expect("room");
        let other = requests
            .create(ClientId(9), Format::Text, soon())
            .expect("room");
        assert_eq!(
            requests.fail_client(GUEST, Status::VERR_CANCELLED),
            vec![id]
        );
        assert_eq!(
            requests.collect(id, Instant::now()),
            Collected::Answer(Err(Status::VERR_CANCELLED))
        );
        assert_eq!(requests.collect(other, Instant::now()), Collected::Pending);
    }

    #[test]
    fn purge_drops_requests_long_past_their_deadline() {
        let mut requests = Requests::default();
        let now = Instant::now();
        let id = requests.create(GUEST, Format::Text, now).expect("room");
        assert!(requests.purge(now).is_empty());
        assert_eq!(requests.purge(now + RETAIN_ANSWERED), vec![(id, GUEST)]);
        assert!(requests.is_empty());
    }
}
