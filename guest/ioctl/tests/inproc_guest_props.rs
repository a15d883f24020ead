//! The guest-properties client against the real `VBoxGuestPropSvc` service, without a VM: the
//! test transport plays the vboxguest driver's ioctl layer on top of the in-process guest, which
//! drives the real device model and HGCM framework.

mod support;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use support::inproc_driver::InprocDriver;
use vmmdev_guest_ioctl::Device;
use vmmdev_guest_ioctl::guest_props::{GuestPropClient, GuestPropError, PropertyFlags};
use vmmdev_hgcm::{Buffer, Direction, Hgcm, HgcmConfig, Parm};
use vmmdev_svc_guest_props::{HostFunction, SERVICE_NAME};

/// How long a wait that must be woken may take.
const DEADLINE: Duration = Duration::from_secs(10);

fn device_with(config: &str) -> Device<InprocDriver> {
    let hgcm = Hgcm::new(HgcmConfig::default());
    hgcm.register_builtin(vmmdev_svc_guest_props::guest_props_entry, config)
        .expect("register the guest properties service");
    Device::with_transport(InprocDriver::new(hgcm)).expect("version handshake")
}

fn device() -> Device<InprocDriver> {
    device_with("")
}

/// Sets a property from the host side (host SET_PROP).
fn host_set(device: &Device<InprocDriver>, name: &str, value: &str, flags: &str) {
    let string = |text: &str| {
        let mut bytes = text.as_bytes().to_vec();
        bytes.push(0);
        Parm::Buffer(Buffer::host(bytes, Direction::ToHost))
    };
    let mut params = [string(name), string(value), string(flags)];
    let status = device
        .transport()
        .vm
        .device
        .hgcm()
        .host_call(SERVICE_NAME, HostFunction::SET_PROP.raw(), &mut params)
        .expect("host call");
    assert_eq!(status, 0, "host SET_PROP of {name}");
}

/// Records a change and returns its timestamp. A wait from there returns the next matching
/// change whether it comes before or after the wait reaches the service, so tests that wake a
/// waiter do not depend on thread timing for their outcome.
fn baseline(props: &GuestPropClient<'_, InprocDriver>) -> u64 {
    props.set_value("/Baseline", "").unwrap();
    props
        .get("/Baseline")
        .unwrap()
        .expect("baseline exists")
        .timestamp
}

/// Runs `waits` on its own thread, gives it time to park in the service, then runs `wake`.
fn wait_then<R: Send>(waits: impl FnOnce() -> R + Send, wake: impl FnOnce()) -> R {
    std::thread::scope(|scope| {
        let waiter = scope.spawn(waits);
        std::thread::sleep(Duration::from_millis(200));
        wake();
        waiter.join().expect("waiter thread")
    })
}

#[test]
fn set_then_get_returns_value_flags_and_a_recent_timestamp() {
    let device = device();
    let props = GuestPropClient::connect(&device).unwrap();
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    props
        .set(
            "/Test/Foo",
            "bar",
            PropertyFlags::TRANSIENT | PropertyFlags::RDONLYHOST,
        )
        .unwrap();
    let property = props.get("/Test/Foo").unwrap().expect("property exists");
    assert_eq!(property.value, "bar");
    assert_eq!(
        property.flags,
        PropertyFlags::TRANSIENT | PropertyFlags::RDONLYHOST
    );
    assert!(
        property.timestamp >= before,
        "{} < {before}",
        property.timestamp
    );
}

#[test]
fn get_of_a_missing_property_is_none() {
    let device = device();
    let props = GuestPropClient::connect(&device).unwrap();
    assert_eq!(props.get("/Test/Missing").unwrap(), None);
}

#[test]
fn set_value_replaces_the_value_and_clears_the_flags() {
    let device = device();
    let props = GuestPropClient::connect(&device).unwrap();
    props
        .set("/Test/Foo", "one", PropertyFlags::TRANSIENT)
        .unwrap();
    props.set_value("/Test/Foo", "two").unwrap();
    let property = props.get("/Test/Foo").unwrap().expect("property exists");
    assert_eq!(
        (property.value.as_str(), property.flags),
        ("two", PropertyFlags::NILFLAG)
    );
}

#[test]
fn delete_removes_the_property_and_a_second_delete_succeeds() {
    let device = device();
    let props = GuestPropClient::connect(&device).unwrap();
    props.set_value("/Test/Foo", "bar").unwrap();
    props.delete("/Test/Foo").unwrap();
    assert_eq!(props.get("/Test/Foo").unwrap(), None);
    props.delete("/Test/Foo").unwrap();
}

#[test]
fn value_set_by_the_host_is_readable() {
    let device = device();
    host_set(&device, "/Test/FromHost", "hello-from-host", "RDONLYGUEST");
    let props = GuestPropClient::connect(&device).unwrap();
    let property = props
        .get("/Test/FromHost")
        .unwrap()
        .expect("property exists");
    assert_eq!(property.value, "hello-from-host");
    assert_eq!(property.flags, PropertyFlags::RDONLYGUEST);
}

#[test]
fn property_read_only_for_the_guest_cannot_be_changed_or_deleted() {
    let device = device();
    host_set(&device, "/Test/Locked", "host", "RDONLYGUEST");
    let props = GuestPropClient::connect(&device).unwrap();
    for err in [
        props.set_value("/Test/Locked", "guest").unwrap_err(),
        props.delete("/Test/Locked").unwrap_err(),
    ] {
        assert!(
            matches!(
                err,
                GuestPropError::AccessDenied {
                    store_read_only: false,
                    ..
                }
            ),
            "{err:?}"
        );
    }
    assert_eq!(props.get("/Test/Locked").unwrap().unwrap().value, "host");
}

#[test]
fn host_reserved_namespace_is_access_denied() {
    let device = device();
    let props = GuestPropClient::connect(&device).unwrap();
    let err = props
        .set_value("/VirtualBox/HostInfo/Mine", "x")
        .unwrap_err();
    assert!(
        matches!(err, GuestPropError::AccessDenied { .. }),
        "{err:?}"
    );
}

#[test]
fn global_read_only_store_reports_ignored_writes() {
    let device = device_with("global_flags=RDONLYGUEST");
    let props = GuestPropClient::connect(&device).unwrap();
    let err = props.set_value("/Test/Foo", "x").unwrap_err();
    assert!(
        matches!(
            err,
            GuestPropError::AccessDenied {
                store_read_only: true,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(props.get("/Test/Foo").unwrap(), None);
}

#[test]
fn too_long_value_is_too_long() {
    let device = device();
    let props = GuestPropClient::connect(&device).unwrap();
    let err = props.set_value("/Test/Foo", &"v".repeat(1024)).unwrap_err();
    assert!(matches!(err, GuestPropError::TooLong { .. }), "{err:?}");
}

#[test]
fn name_with_a_pattern_character_is_refused() {
    let device = device();
    let props = GuestPropClient::connect(&device).unwrap();
    let err = props.set_value("/Test/*", "x").unwrap_err();
    assert!(matches!(err, GuestPropError::Refused { .. }), "{err:?}");
}

#[test]
fn value_beyond_the_first_buffer_is_read_through_the_retry() {
    let device = device_with("max_value_len=65536");
    let props = GuestPropClient::connect(&device).unwrap();
    let value: String = (0..40_000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    props.set_value("/Test/Big", &value).unwrap();
    assert_eq!(props.get("/Test/Big").unwrap().unwrap().value, value);
}

#[test]
fn enumerate_lists_the_properties_matching_any_pattern() {
    let device = device();
    let props = GuestPropClient::connect(&device).unwrap();
    for name in ["/Test/A/1", "/Test/A/2", "/Test/B/1", "/Other/1"] {
        props.set_value(name, name).unwrap();
    }
    let mut names: Vec<String> = props
        .enumerate(&["/Test/A/*", "/Other/?"])
        .unwrap()
        .into_iter()
        .map(|property| {
            assert_eq!(property.name, property.value);
            property.name
        })
        .collect();
    names.sort();
    assert_eq!(names, ["/Other/1", "/Test/A/1", "/Test/A/2"]);
}

#[test]
fn enumerate_without_patterns_includes_the_host_information() {
    let device = device();
    let props = GuestPropClient::connect(&device).unwrap();
    let all = props.enumerate(&[]).unwrap();
    let version = all
        .iter()
        .find(|property| property.name == "/VirtualBox/HostInfo/VBoxVer")
        .expect("the service publishes the host version");
    assert!(version.flags.contains(PropertyFlags::RDONLYGUEST));
}

#[test]
fn enumerate_larger_than_the_first_buffer_is_complete() {
    let device = device();
    let props = GuestPropClient::connect(&device).unwrap();
    let value = "v".repeat(200);
    for index in 0..100 {
        props
            .set_value(&format!("/Test/Many/{index}"), &value)
            .unwrap();
    }
    let listed = props.enumerate(&["/Test/Many/*"]).unwrap();
    assert_eq!(listed.len(), 100);
    assert!(listed.iter().all(|property| property.value == value));
}

#[test]
fn wait_wakes_on_a_set_from_another_client() {
    let device = device();
    let waiter = GuestPropClient::connect(&device).unwrap();
    let writer = GuestPropClient::connect(&device).unwrap();
    let after = baseline(&writer);
    let change = wait_then(
        || waiter.wait("/Test/*", after, Some(DEADLINE)),
        || writer.set_value("/Test/Bar", "1").unwrap(),
    )
    .unwrap();
    assert_eq!(
        (change.name.as_str(), change.value.as_str()),
        ("/Test/Bar", "1")
    );
    assert!(!change.deleted && !change.missed_changes);
    let stored = writer.get("/Test/Bar").unwrap().unwrap();
    assert_eq!(change.timestamp, stored.timestamp);
}

#[test]
fn wait_ignores_changes_that_do_not_match() {
    let device = device();
    let waiter = GuestPropClient::connect(&device).unwrap();
    let writer = GuestPropClient::connect(&device).unwrap();
    let after = baseline(&writer);
    let change = wait_then(
        || waiter.wait("/Test/Wanted", after, Some(DEADLINE)),
        || {
            writer.set_value("/Test/Other", "x").unwrap();
            writer.set_value("/Test/Wanted", "y").unwrap();
        },
    )
    .unwrap();
    assert_eq!(change.name, "/Test/Wanted");
}

#[test]
fn wait_reports_a_deletion() {
    let device = device();
    let props = GuestPropClient::connect(&device).unwrap();
    props.set_value("/Test/Gone", "x").unwrap();
    let after = baseline(&props);
    let change = wait_then(
        || props.wait("/Test/Gone", after, Some(DEADLINE)),
        || props.delete("/Test/Gone").unwrap(),
    )
    .unwrap();
    assert!(change.deleted);
    assert_eq!(change.value, "");
}

#[test]
fn waits_from_each_timestamp_see_every_change_once_in_order() {
    let device = device();
    let props = GuestPropClient::connect(&device).unwrap();
    let after = baseline(&props);
    let first = wait_then(
        || props.wait("/Seq/*", after, Some(DEADLINE)),
        || {
            for index in 0..5 {
                props.set_value(&format!("/Seq/{index}"), "x").unwrap();
            }
        },
    )
    .unwrap();
    assert_eq!(first.name, "/Seq/0");
    let mut after = first.timestamp;
    for index in 1..5 {
        let change = props.wait("/Seq/*", after, Some(DEADLINE)).unwrap();
        assert_eq!(change.name, format!("/Seq/{index}"));
        assert!(change.timestamp > after);
        after = change.timestamp;
    }
}

#[test]
fn notification_larger_than_the_first_buffer_is_not_lost() {
    let device = device_with("max_value_len=65536");
    let waiter = GuestPropClient::connect(&device).unwrap();
    let writer = GuestPropClient::connect(&device).unwrap();
    let value = "b".repeat(30_000);
    let after = baseline(&writer);
    let change = wait_then(
        || waiter.wait("/Test/Big", after, Some(DEADLINE)),
        || writer.set_value("/Test/Big", &value).unwrap(),
    )
    .unwrap();
    assert_eq!(change.value, value);
}

#[test]
fn wait_times_out_and_the_client_keeps_working() {
    let device = device();
    let props = GuestPropClient::connect(&device).unwrap();
    let err = props
        .wait("/Test/Never", 0, Some(Duration::from_millis(100)))
        .unwrap_err();
    assert!(matches!(err, GuestPropError::TimedOut { .. }), "{err:?}");
    props.set_value("/Test/After", "ok").unwrap();
    assert_eq!(props.get("/Test/After").unwrap().unwrap().value, "ok");
}

#[test]
fn interrupted_wait_is_cancelled_and_the_client_keeps_working() {
    let device = device();
    let props = GuestPropClient::connect(&device).unwrap();
    let signal = Arc::clone(&device.transport().signal);
    let err = wait_then(
        || props.wait("/Test/Never", 0, None),
        || signal.store(true, Ordering::SeqCst),
    )
    .unwrap_err();
    signal.store(false, Ordering::SeqCst);
    assert!(matches!(err, GuestPropError::Interrupted { .. }), "{err:?}");
    props.set_value("/Test/After", "ok").unwrap();
    let change = props.wait("/Test/After", 0, Some(Duration::from_millis(50)));
    assert!(
        matches!(change, Err(GuestPropError::TimedOut { .. })),
        "{change:?}"
    );
}

#[test]
fn hundred_pending_waits_all_complete_on_one_set() {
    const WAITERS: usize = 100;
    let device = device();
    let clients: Vec<_> = (0..WAITERS)
        .map(|_| GuestPropClient::connect(&device).unwrap())
        .collect();
    let writer = GuestPropClient::connect(&device).unwrap();
    let after = baseline(&writer);
    let changes = std::thread::scope(|scope| {
        let waiters: Vec<_> = clients
            .iter()
            .map(|client| scope.spawn(move || client.wait("/Test/Go", after, Some(DEADLINE))))
            .collect();
        std::thread::sleep(Duration::from_millis(500));
        writer.set_value("/Test/Go", "now").unwrap();
        waiters
            .into_iter()
            .map(|waiter| waiter.join().expect("waiter thread"))
            .collect::<Vec<_>>()
    });
    for change in changes {
        assert_eq!(change.unwrap().value, "now");
    }
}
