//! Save and restore with the Echo service: clients, service state and pending call identities.

mod common;

use common::*;
use vmmdev_hgcm::{Hgcm, HgcmConfig, HgcmSnapshot, Parm, PendingKind, RestoreError, Status};
use vmmdev_svc_echo::*;

#[test]
fn restore_recreates_clients_state_and_lists_pending_calls() {
    let hgcm = hgcm_with_echo("");
    let first = connect_ok(&hgcm, SERVICE_NAME);
    let second = connect(&hgcm, SERVICE_NAME, USER).client;
    for _ in 0..3 {
        call(&hgcm, first, FN_NOOP, vec![]);
    }
    call(&hgcm, second, FN_NOOP, vec![]);
    let (wait_id, _waiting) = park_wait(&hgcm, first);

    let snapshot = hgcm.save().expect("saves");
    assert_eq!(snapshot.pending().len(), 1);
    let pending = &snapshot.pending()[0];
    assert_eq!(
        (pending.id, pending.kind, pending.client, pending.function),
        (wait_id, PendingKind::Call, first, FN_WAIT)
    );
    let bytes = snapshot.to_bytes();
    hgcm.shutdown();

    let restored = hgcm_with_echo("");
    restored
        .restore(&HgcmSnapshot::from_bytes(&bytes).expect("parses"))
        .expect("restores");
    assert_eq!(host_count(&restored, HOST_FN_CLIENT_COUNT), 2);

    // The transport resubmits the pending call, flagged as restored.
    let mut resubmitted = request(
        first,
        FN_INFO,
        vec![Parm::U32(0), Parm::U32(0), Parm::U32(0)],
    );
    resubmitted.restored = true;
    let (_, rx) = submit(&restored, resubmitted).expect("restored client accepts calls");
    let info = rx.recv_timeout(DEADLINE).expect("completes");
    assert_eq!(info.params[1].as_u32(), Some(first.0));
    assert_eq!(info.params[2].as_u32(), Some(1));

    let stats = call(&restored, first, FN_STATS, vec![Parm::U64(0), Parm::U32(0)]);
    // Saved: 5 calls served (4 no-ops and the wait), 4 by `first`; plus INFO and STATS since.
    assert_eq!(stats.params[0].as_u64(), Some(7));
    assert_eq!(stats.params[1].as_u32(), Some(6));
    assert!(
        connect_ok(&restored, SERVICE_NAME).0 > second.0,
        "a restored id was reissued"
    );
}

#[test]
fn restore_needs_every_saved_service() {
    let hgcm = hgcm_with_echo("");
    connect_ok(&hgcm, SERVICE_NAME);
    let snapshot = hgcm.save().expect("saves");
    let empty = Hgcm::new(HgcmConfig::default());
    assert_eq!(
        empty.restore(&snapshot),
        Err(RestoreError::ServiceMissing(SERVICE_NAME.into()))
    );
}

#[test]
fn restore_replaces_existing_clients() {
    let hgcm = hgcm_with_echo("");
    let saved_client = connect_ok(&hgcm, SERVICE_NAME);
    let snapshot = hgcm.save().expect("saves");
    disconnect(&hgcm, saved_client);
    let extra = connect_ok(&hgcm, SERVICE_NAME);
    hgcm.restore(&snapshot).expect("restores");
    assert_eq!(host_count(&hgcm, HOST_FN_CLIENT_COUNT), 1);
    assert!(submit(&hgcm, request(extra, FN_NOOP, vec![])).is_err());
    assert_eq!(
        call(&hgcm, saved_client, FN_NOOP, vec![]).status,
        Status::VINF_SUCCESS.raw()
    );
}

/// Saves one byte of state; refuses to load any state when built with the config `refuse`.
struct Picky {
    refuse: bool,
}

impl vmmdev_hgcm_sdk::Service for Picky {
    fn call(&mut self, call: vmmdev_hgcm_sdk::Call) {
        call.complete(Status::VINF_SUCCESS.raw());
    }

    fn save_state(&mut self) -> Vec<u8> {
        vec![1]
    }

    fn load_state(&mut self, _version: u32, _data: &[u8]) -> Result<(), i32> {
        if self.refuse {
            Err(Status::VERR_PARSE_ERROR.raw())
        } else {
            Ok(())
        }
    }
}

vmmdev_hgcm_sdk::service_entry!(fn picky_entry, Picky, "Picky", |_: vmmdev_hgcm_sdk::Host, config: &str| Ok(Picky {
    refuse: config == "refuse"
}));

#[test]
fn restore_refused_by_load_state_fails_and_leaves_no_clients() {
    let saver = Hgcm::new(HgcmConfig::default());
    saver.register_builtin(picky_entry, "").expect("registers");
    let client = connect_ok(&saver, "Picky");
    let snapshot = saver.save().expect("saves");

    let restorer = Hgcm::new(HgcmConfig::default());
    restorer
        .register_builtin(picky_entry, "refuse")
        .expect("registers");
    let before = connect_ok(&restorer, "Picky");
    assert_eq!(
        restorer.restore(&snapshot),
        Err(RestoreError::Refused {
            service: "Picky".into(),
            what: "load_state".into(),
            status: Status::VERR_PARSE_ERROR.raw(),
        })
    );
    assert_eq!(restorer.services()[0].clients, 0);
    for id in [client, before] {
        assert!(
            submit(&restorer, request(id, 1, vec![])).is_err(),
            "{id} still accepts calls"
        );
    }
}
