//! The global client table: id allocation, lookup, and per-client accounting.
//!
//! Ids come from one counter shared by all services (1..=0x7FFF_FFFF, wrapping and skipping ids
//! still in use), so a client id alone identifies both the client and its service (hgcm.md §8).
//! A client is *connecting* from submission until its service accepted it, *live* while guest
//! calls may reach it, and *gone* once disconnected; only live clients are found by [`Registry::live`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU32, Ordering};

use parking_lot::RwLock;
use vmmdev_hgcm_abi::{ClientCategory, ClientId, Requestor};

use crate::id_hash::IdMap;
use crate::service::ServiceCore;

const CONNECTING: u8 = 0;
const LIVE: u8 = 1;
const GONE: u8 = 2;

/// Highest client id; ids above are reserved, as in VirtualBox.
const MAX_CLIENT_ID: u32 = 0x7FFF_FFFF;

/// One client.
#[derive(Debug)]
pub(crate) struct Client {
    pub(crate) id: ClientId,
    pub(crate) service: Arc<ServiceCore>,
    pub(crate) requestor: Requestor,
    pub(crate) category: ClientCategory,
    state: AtomicU8,
    pending_calls: AtomicU32,
}

impl Client {
    pub(crate) fn is_live(&self) -> bool {
        self.state.load(Ordering::Acquire) == LIVE
    }

    /// Connecting → live. False if the client was removed meanwhile.
    pub(crate) fn go_live(&self) -> bool {
        self.state
            .compare_exchange(CONNECTING, LIVE, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Marks the client gone; true only for the caller that did it (releases the quota once).
    fn go_away(&self) -> bool {
        let was_gone = self.state.swap(GONE, Ordering::AcqRel) == GONE;
        if !was_gone {
            self.service.release_client_slot(self.category);
        }
        !was_gone
    }

    /// Counts a new pending call; false if `limit` calls are already pending.
    ///
    /// One atomic add (a refused attempt takes it back), rather than a load and a
    /// compare-exchange: the counter's cache line moves between the submitting and the completing
    /// thread on every call, and a read before the write would fetch it twice. Two submissions
    /// racing at the limit may both be refused for an instant; never more than `limit` pass.
    pub(crate) fn try_add_call(&self, limit: u32) -> bool {
        let before = self.pending_calls.fetch_add(1, Ordering::AcqRel);
        if before >= limit {
            self.pending_calls.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        true
    }

    pub(crate) fn call_finished(&self) {
        let before = self.pending_calls.fetch_sub(1, Ordering::AcqRel);
        if before == 0 {
            // Accounting asked twice for one call: stay at zero instead of wrapping.
            self.pending_calls.fetch_add(1, Ordering::AcqRel);
            log::error!("HGCM call accounting of {} went below zero", self.id);
        }
    }
}

struct Table {
    map: IdMap<u32, Arc<Client>>,
    next: u32,
}

/// All clients of all services.
pub(crate) struct Registry {
    table: RwLock<Table>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("clients", &self.table.read().map.len())
            .finish()
    }
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            table: RwLock::new(Table {
                map: IdMap::default(),
                next: 1,
            }),
        }
    }
}

impl Registry {
    /// Allocates a fresh id and records a connecting client. `None` only if every id is in use.
    pub(crate) fn reserve(
        &self,
        service: Arc<ServiceCore>,
        requestor: Requestor,
        category: ClientCategory,
    ) -> Option<Arc<Client>> {
        let mut table = self.table.write();
        if table.map.len() >= MAX_CLIENT_ID as usize {
            return None;
        }
        let mut id = table.next;
        while table.map.contains_key(&id) {
            id = if id >= MAX_CLIENT_ID { 1 } else { id + 1 };
        }
        table.next = if id >= MAX_CLIENT_ID { 1 } else { id + 1 };
        let client = Arc::new(Client {
            id: ClientId(id),
            service,
            requestor,
            category,
            state: AtomicU8::new(CONNECTING),
            pending_calls: AtomicU32::new(0),
        });
        table.map.insert(id, client.clone());
        Some(client)
    }

    /// Records a connecting client with a saved id (restore); `None` if the id is invalid or taken.
    pub(crate) fn reserve_restored(
        &self,
        id: ClientId,
        service: Arc<ServiceCore>,
        requestor: Requestor,
        category: ClientCategory,
    ) -> Option<Arc<Client>> {
        let mut table = self.table.write();
        if id.0 == 0 || id.0 > MAX_CLIENT_ID || table.map.contains_key(&id.0) {
            return None;
        }
        let client = Arc::new(Client {
            id,
            service,
            requestor,
            category,
            state: AtomicU8::new(CONNECTING),
            pending_calls: AtomicU32::new(0),
        });
        table.map.insert(id.0, client.clone());
        Some(client)
    }

    /// The live client with that id.
    pub(crate) fn live(&self, id: ClientId) -> Option<Arc<Client>> {
        self.table
            .read()
            .map
            .get(&id.0)
            // Clone first: the reference count is written anyway, and a write before the read
            // fetches the cache line once instead of twice.
            .cloned()
            .filter(|c| c.is_live())
    }

    /// Removes a client (any state) and marks it gone; `None` if unknown or already gone.
    pub(crate) fn remove(&self, id: ClientId) -> Option<Arc<Client>> {
        let client = self.table.write().map.remove(&id.0)?;
        client.go_away().then_some(client)
    }

    /// Removes a client only if it is live.
    pub(crate) fn remove_live(&self, id: ClientId) -> Option<Arc<Client>> {
        let mut table = self.table.write();
        if !table.map.get(&id.0).is_some_and(|c| c.is_live()) {
            return None;
        }
        let client = table.map.remove(&id.0)?;
        drop(table);
        client.go_away().then_some(client)
    }

    /// Removes every client of the service in `slot`; returns those that were live.
    pub(crate) fn remove_all_of(&self, slot: u16) -> Vec<Arc<Client>> {
        let removed: Vec<Arc<Client>> = {
            let mut table = self.table.write();
            let ids: Vec<u32> = table
                .map
                .iter()
                .filter(|(_, c)| c.service.slot == slot)
                .map(|(id, _)| *id)
                .collect();
            ids.iter().filter_map(|id| table.map.remove(id)).collect()
        };
        removed
            .into_iter()
            .filter_map(|client| {
                let was_live = client.is_live();
                (client.go_away() && was_live).then_some(client)
            })
            .collect()
    }

    /// The live clients of the service in `slot`, by id.
    pub(crate) fn live_of(&self, slot: u16) -> Vec<Arc<Client>> {
        let mut clients: Vec<Arc<Client>> = self
            .table
            .read()
            .map
            .values()
            .filter(|c| c.service.slot == slot && c.is_live())
            .cloned()
            .collect();
        clients.sort_by_key(|c| c.id);
        clients
    }

    pub(crate) fn next_id(&self) -> u32 {
        self.table.read().next
    }

    /// Moves the id counter forward to `next` (never backwards), so restored ids are not reissued.
    pub(crate) fn raise_next_id(&self, next: u32) {
        let mut table = self.table.write();
        if (1..=MAX_CLIENT_ID).contains(&next) && next > table.next {
            table.next = next;
        }
    }

    /// Forgets every client (shutdown).
    pub(crate) fn clear(&self) {
        self.table.write().map.clear();
    }
}
