//! Host information, VM lifecycle events, persistence across monitor restarts (including
//! `kill -9`), damaged and shared store files, and save/restore.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::*;
use vmmdev_hgcm::{CallRequest, Hgcm, HgcmConfig, HgcmSnapshot, Parm, RegisterError, VmEvent};
use vmmdev_protocol::status::Status;
use vmmdev_svc_guest_props::{Function, HostFunction};

#[test]
fn host_information_is_published_at_start() {
    let fixture = Fixture::new("");
    let guest = fixture.connect(KERNEL);
    let expected = [
        ("/VirtualBox/HostInfo/VBoxVer", "7.1.6"),
        ("/VirtualBox/HostInfo/VBoxVerExt", "7.1.6_vmmdev-rs"),
        ("/VirtualBox/HostInfo/VBoxRev", "0"),
        ("/VirtualBox/HostInfo/GUI/LanguageID", "C"),
        ("/VirtualBox/VMInfo/ResetCounter", "0"),
        ("/VirtualBox/VMInfo/ResumeCounter", "0"),
        ("/VirtualBox/HostGuest/SysprepExec", ""),
        ("/VirtualBox/HostGuest/SysprepArgs", ""),
    ];
    for (name, value) in expected {
        let got = guest.get(name);
        assert_eq!(got.status, Status::VINF_SUCCESS, "{name}");
        assert_eq!(got.value, value, "{name}");
        assert_eq!(got.flags, "TRANSIENT, RDONLYGUEST", "{name}");
    }
}

#[test]
fn host_information_comes_from_the_configuration() {
    let fixture = Fixture::new(
        "host_version=7.0.14,host_version_ext=7.0.14_Custom,host_revision=161095,language_id=de",
    );
    let guest = fixture.connect(KERNEL);
    assert_eq!(guest.get("/VirtualBox/HostInfo/VBoxVer").value, "7.0.14");
    assert_eq!(
        guest.get("/VirtualBox/HostInfo/VBoxVerExt").value,
        "7.0.14_Custom"
    );
    assert_eq!(guest.get("/VirtualBox/HostInfo/VBoxRev").value, "161095");
    assert_eq!(guest.get("/VirtualBox/HostInfo/GUI/LanguageID").value, "de");
}

#[test]
fn reset_deletes_transreset_properties_the_host_may_delete_and_counts() {
    let fixture = Fixture::new("");
    let guest = fixture.connect(KERNEL);
    guest.set("/T/users", "2", Some("TRANSRESET"));
    guest.set("/T/locked", "x", Some("TRANSRESET, RDONLYHOST"));
    guest.set("/T/transient", "x", Some("TRANSIENT"));
    guest.set("/T/kept", "x", None);
    fixture.hgcm.reset();
    let guest = fixture.connect(KERNEL);
    assert_eq!(guest.get("/T/users").status, Status::VERR_NOT_FOUND);
    assert_eq!(guest.get("/T/locked").status, Status::VINF_SUCCESS);
    assert_eq!(guest.get("/T/transient").status, Status::VINF_SUCCESS);
    assert_eq!(guest.get("/T/kept").status, Status::VINF_SUCCESS);
    assert_eq!(guest.get("/VirtualBox/VMInfo/ResetCounter").value, "1");
}

#[test]
fn reset_ends_every_wait() {
    let fixture = Fixture::new("");
    let guest = fixture.connect(KERNEL);
    let (_, rx) = guest.wait("", 0, 2048);
    fixture.hgcm.reset();
    // A reset drops pending requests silently: the completion never runs.
    assert!(rx.recv_timeout(QUIET).is_err());
    let guest = fixture.connect(KERNEL);
    let (_, fresh) = guest.wait("", 0, 2048);
    guest.set("/T/a", "1", None);
    assert!(fresh.recv_timeout(DEADLINE).is_ok());
}

#[test]
fn power_off_drops_transient_properties_and_power_on_republishes() {
    let fixture = Fixture::new("");
    let guest = fixture.connect(KERNEL);
    guest.set("/T/transient", "x", Some("TRANSIENT"));
    guest.set("/T/transreset", "x", Some("TRANSRESET"));
    guest.set("/T/kept", "x", None);
    fixture.hgcm.notify(VmEvent::PowerOff);
    let host = fixture.host();
    assert_eq!(host.get("/T/transient").status, Status::VERR_NOT_FOUND);
    assert_eq!(host.get("/T/transreset").status, Status::VERR_NOT_FOUND);
    assert_eq!(
        host.get("/VirtualBox/HostInfo/VBoxVer").status,
        Status::VERR_NOT_FOUND
    );
    assert_eq!(host.get("/T/kept").value, "x");
    fixture.hgcm.notify(VmEvent::PowerOn);
    assert_eq!(host.get("/VirtualBox/HostInfo/VBoxVer").value, "7.1.6");
    assert_eq!(host.get("/VirtualBox/VMInfo/ResetCounter").value, "0");
}

#[test]
fn resume_counts_and_republishes_the_versions() {
    let fixture = Fixture::new("");
    let host = fixture.host();
    let before = host.get("/VirtualBox/HostInfo/VBoxVer").timestamp;
    fixture.hgcm.notify(VmEvent::Suspend);
    fixture.hgcm.notify(VmEvent::Resume);
    fixture.hgcm.notify(VmEvent::Resume);
    assert_eq!(host.get("/VirtualBox/VMInfo/ResumeCounter").value, "2");
    assert!(host.get("/VirtualBox/HostInfo/VBoxVer").timestamp > before);
}

// ----- persistence -------------------------------------------------------------------------------

fn store_config(dir: &TempDir) -> String {
    format!("store={}", dir.path("props.jsonl").display())
}

#[test]
fn persistent_properties_survive_a_restart_and_transient_ones_do_not() {
    let dir = TempDir::new("restart");
    let config = store_config(&dir);
    {
        let fixture = Fixture::new(&config);
        let guest = fixture.connect(KERNEL);
        guest.set("/VirtualBox/GuestInfo/OS/Product", "Linux", None);
        guest.set("/T/locked", "v", Some("RDONLYHOST"));
        guest.set("/T/transient", "t", Some("TRANSIENT"));
        guest.set("/T/deleted", "d", None);
        guest.del("/T/deleted");
        fixture
            .host()
            .set("/VirtualBox/GuestAdd/PAM/CredsWait", "1", None);
        fixture.hgcm.shutdown();
    }
    let fixture = Fixture::new(&config);
    let guest = fixture.connect(KERNEL);
    assert_eq!(guest.get("/VirtualBox/GuestInfo/OS/Product").value, "Linux");
    let locked = guest.get("/T/locked");
    assert_eq!(
        (locked.value.as_str(), locked.flags.as_str()),
        ("v", "RDONLYHOST")
    );
    assert_eq!(
        guest.get("/VirtualBox/GuestAdd/PAM/CredsWait").flags,
        "RDONLYGUEST"
    );
    assert_eq!(guest.get("/T/transient").status, Status::VERR_NOT_FOUND);
    assert_eq!(guest.get("/T/deleted").status, Status::VERR_NOT_FOUND);
}

#[test]
fn odd_but_valid_names_and_values_reload() {
    let dir = TempDir::new("odd");
    let config = store_config(&dir);
    {
        let fixture = Fixture::new(&config);
        let guest = fixture.connect(KERNEL);
        // A two-byte name buffer holding only NULs is an empty name, which VirtualBox accepts.
        let empty_name = vec![bytes_in(b"\0\0"), string("v")];
        assert_eq!(
            guest.status(Function::SET_PROP_VALUE, empty_name),
            Status::VINF_SUCCESS
        );
        guest.set("/T/quotes", "\"{}\"\n\t\\ é", None);
        fixture.hgcm.shutdown();
    }
    let fixture = Fixture::new(&config);
    let host = fixture.host();
    assert_eq!(host.get("/T/quotes").value, "\"{}\"\n\t\\ é");
    let mut params = vec![bytes_in(b"\0\0"), out(64), Parm::U64(0), Parm::U32(0)];
    assert_eq!(
        host.call(HostFunction::GET_PROP, &mut params),
        Status::VINF_SUCCESS
    );
    assert_eq!(&buffer_bytes(params, 1)[..3], b"v\0\0");
}

#[test]
fn timestamps_survive_a_restart() {
    let dir = TempDir::new("timestamps");
    let config = store_config(&dir);
    let before = {
        let fixture = Fixture::new(&config);
        let guest = fixture.connect(KERNEL);
        guest.set("/T/a", "1", None);
        let stamp = guest.get("/T/a").timestamp;
        fixture.hgcm.shutdown();
        stamp
    };
    let fixture = Fixture::new(&config);
    assert_eq!(fixture.host().get("/T/a").timestamp, before);
}

#[test]
fn change_is_on_disk_when_the_guest_sees_it_succeed() {
    let dir = TempDir::new("on-disk");
    let fixture = Fixture::new(&store_config(&dir));
    let guest = fixture.connect(KERNEL);
    assert_eq!(guest.set("/T/durable", "yes", None), Status::VINF_SUCCESS);
    let contents = std::fs::read_to_string(dir.path("props.jsonl")).expect("store written");
    assert!(
        contents.contains("\"name\":\"/T/durable\",\"value\":\"yes\""),
        "{contents}"
    );
}

#[test]
fn change_that_cannot_be_persisted_is_refused_and_invisible() {
    let dir = TempDir::new("unwritable");
    let fixture = Fixture::new(&store_config(&dir));
    let guest = fixture.connect(KERNEL);
    guest.set("/T/a", "old", None);
    std::fs::remove_dir_all(&dir.0).expect("remove the store directory");
    let status = guest.set("/T/a", "new", None);
    assert!(status.is_failure(), "{status}");
    assert_eq!(guest.get("/T/a").value, "old");
    // Transient changes do not need the file.
    assert_eq!(
        guest.set("/T/t", "x", Some("TRANSIENT")),
        Status::VINF_SUCCESS
    );
}

#[test]
fn damaged_store_refuses_the_load() {
    let dir = TempDir::new("damaged");
    let path = dir.path("props.jsonl");
    std::fs::write(
        &path,
        "{\"format\":\"vmmdev-guest-props\",\"version\":1}\n{\"name\":\"/T/a\",\"va",
    )
    .expect("write");
    match Fixture::try_new(&store_config(&dir)) {
        Err(RegisterError::InitRefused(status)) => {
            assert_eq!(Status(status), Status::VERR_PARSE_ERROR);
        }
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("damaged store accepted"),
    }
    assert!(
        std::fs::read(&path)
            .expect("still there")
            .ends_with(b"\"va"),
        "left untouched"
    );
}

#[test]
fn store_in_use_by_another_service_refuses_the_load() {
    let dir = TempDir::new("shared");
    let _first = Fixture::new(&store_config(&dir));
    match Fixture::try_new(&store_config(&dir)) {
        Err(RegisterError::InitRefused(status)) => {
            assert_eq!(Status(status), Status::VERR_FILE_LOCK_VIOLATION);
        }
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("second user of the store accepted"),
    }
}

#[test]
fn bulk_load_is_persisted() {
    let dir = TempDir::new("bulk");
    let config = store_config(&dir);
    {
        let fixture = Fixture::new(&config);
        let mut params = vec![
            bytes_in(b"/T/a\0/T/b\0"),
            bytes_in(b"1\0two\0"),
            bytes_in(&[5u64.to_le_bytes(), 6u64.to_le_bytes()].concat()),
            bytes_in(b"\0TRANSIENT\0"),
        ];
        assert_eq!(
            fixture.host().call(HostFunction::SET_PROPS, &mut params),
            Status::VINF_SUCCESS
        );
        fixture.hgcm.shutdown();
    }
    let fixture = Fixture::new(&config);
    let host = fixture.host();
    assert_eq!(
        (host.get("/T/a").value.as_str(), host.get("/T/a").timestamp),
        ("1", 5)
    );
    assert_eq!(host.get("/T/b").status, Status::VERR_NOT_FOUND);
}

/// Run only as the child of `acknowledged_writes_survive_kill_9`: opens the store named by
/// `GUEST_PROPS_KILL_STORE`, writes properties and reports each acknowledged write on stdout,
/// then waits to be killed.
#[test]
#[ignore = "helper process of acknowledged_writes_survive_kill_9"]
fn kill_9_child_writer() {
    let Ok(store) = std::env::var("GUEST_PROPS_KILL_STORE") else {
        return;
    };
    let fixture = Fixture::new(&format!("store={store}"));
    let guest = fixture.connect(KERNEL);
    for i in 0..20 {
        let status = guest.set(&format!("/T/{i}"), &format!("value {i}"), None);
        assert_eq!(status, Status::VINF_SUCCESS);
        println!("ACK {i}");
    }
    println!("DONE");
    loop {
        std::thread::park();
    }
}

#[test]
fn acknowledged_writes_survive_kill_9() {
    let dir = TempDir::new("kill9");
    let store = dir.path("props.jsonl");
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--ignored",
            "--exact",
            "kill_9_child_writer",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("GUEST_PROPS_KILL_STORE", &store)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("child starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut acknowledged = 0;
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("line");
        // libtest may print its own text on the same line before the child's output.
        if line.contains("ACK ") {
            acknowledged += 1;
        }
        if line.contains("DONE") {
            break;
        }
    }
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    assert_eq!(acknowledged, 20);
    let fixture = Fixture::new(&format!("store={}", store.display()));
    let host = fixture.host();
    for i in 0..20 {
        assert_eq!(host.get(&format!("/T/{i}")).value, format!("value {i}"));
    }
}

// ----- save / restore ----------------------------------------------------------------------------

#[test]
fn save_restore_keeps_the_store_the_global_flags_and_the_waits_place() {
    let source = Fixture::new("");
    let guest = source.connect(KERNEL);
    guest.set("/T/transient", "t", Some("TRANSRESET"));
    guest.set("/T/a", "1", None);
    let seen = guest.get("/T/a").timestamp;
    let global_rdonlyguest = Parm::U32(4);
    source
        .host()
        .call(HostFunction::SET_GLOBAL_FLAGS, &mut [global_rdonlyguest]);
    let (wait_id, _pending) = guest.wait("/T/a", seen, 2048);
    let snapshot = source.hgcm.save().expect("saves");
    assert_eq!(snapshot.pending().len(), 1);
    assert_eq!(snapshot.pending()[0].id, wait_id);
    let bytes = snapshot.to_bytes();
    source.hgcm.shutdown();

    let target = Hgcm::new(HgcmConfig::default());
    target
        .register_builtin(vmmdev_svc_guest_props::guest_props_entry, "")
        .expect("registers");
    target
        .restore(&HgcmSnapshot::from_bytes(&bytes).expect("parses"))
        .expect("restores");
    let restored = Guest {
        hgcm: target.clone(),
        client: guest.client,
        requestor: KERNEL,
    };
    assert_eq!(restored.get("/T/transient").flags, "TRANSIENT, TRANSRESET");
    // The transport resubmits the pending wait; it finds its place in the restored queue.
    let (tx, rx) = crossbeam_channel::bounded(1);
    target
        .call(
            CallRequest {
                client: guest.client,
                function: Function::GET_NOTIFICATION.raw(),
                params: notification_params("/T/a", seen, 2048),
                requestor: KERNEL,
                restored: true,
            },
            Box::new(move |o| {
                let _ = tx.send(o);
            }),
        )
        .expect("resubmitted");
    assert!(rx.recv_timeout(QUIET).is_err(), "no change since the save");
    assert_eq!(
        restored.set("/T/a", "guest", None),
        Status::VINF_PERMISSION_DENIED
    );
    let host = HostSide {
        hgcm: target.clone(),
    };
    assert_eq!(host.set("/T/a", "2", None), Status::VINF_SUCCESS);
    let n = decode_notification(rx.recv_timeout(DEADLINE).expect("woken"));
    assert_eq!((n.status, n.value.as_str()), (Status::VINF_SUCCESS, "2"));
    assert!(n.timestamp > seen);
}

#[test]
fn restore_rewrites_the_store_file() {
    let source = Fixture::new("");
    source.connect(KERNEL).set("/T/from-snapshot", "s", None);
    let bytes = source.hgcm.save().expect("saves").to_bytes();
    source.hgcm.shutdown();

    let dir = TempDir::new("restore");
    let config = store_config(&dir);
    {
        let target = Fixture::new(&config);
        target.connect(KERNEL).set("/T/before-restore", "b", None);
        target
            .hgcm
            .restore(&HgcmSnapshot::from_bytes(&bytes).expect("parses"))
            .expect("restores");
        target.hgcm.shutdown();
    }
    let after = Fixture::new(&config);
    let host = after.host();
    assert_eq!(host.get("/T/from-snapshot").value, "s");
    assert_eq!(host.get("/T/before-restore").status, Status::VERR_NOT_FOUND);
}
