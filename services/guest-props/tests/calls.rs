//! Guest and host functions through the HGCM framework: parameters, limits, flag rules, patterns,
//! status codes and the caller policy.

mod common;

use common::*;
use vmmdev_hgcm::Parm;
use vmmdev_protocol::status::Status;
use vmmdev_svc_guest_props::{Function, HostFunction};

/// Properties the service publishes at start (host information, counters, Sysprep).
const PUBLISHED: usize = 8;

fn fixture() -> (Fixture, Guest) {
    let fixture = Fixture::new("");
    let guest = fixture.connect(KERNEL);
    (fixture, guest)
}

// ----- GET_PROP ----------------------------------------------------------------------------------

#[test]
fn get_returns_value_flags_timestamp_and_size() {
    let (_f, guest) = fixture();
    assert_eq!(
        guest.set("/T/a", "hello", Some("TRANSIENT")),
        Status::VINF_SUCCESS
    );
    let got = guest.get("/T/a");
    assert_eq!(got.status, Status::VINF_SUCCESS);
    assert_eq!(
        (got.value.as_str(), got.flags.as_str()),
        ("hello", "TRANSIENT")
    );
    assert_eq!(got.needed, 16);
    assert!(
        got.timestamp > 1_600_000_000_000_000_000,
        "{}",
        got.timestamp
    );
}

#[test]
fn get_of_missing_property_is_not_found() {
    let (_f, guest) = fixture();
    assert_eq!(guest.get("/T/missing").status, Status::VERR_NOT_FOUND);
}

#[test]
fn get_with_small_buffer_overflows_without_data_or_timestamp() {
    let (_f, guest) = fixture();
    guest.set("/T/a", "0123456789", None);
    let got = guest.get_with("/T/a", 11);
    assert_eq!(got.status, Status::VERR_BUFFER_OVERFLOW);
    assert_eq!(got.needed, 12);
    assert_eq!(got.timestamp, 0);
    assert_eq!(got.value, "");
    let retry = guest.get_with("/T/a", got.needed as usize);
    assert_eq!(retry.status, Status::VINF_SUCCESS);
    assert_eq!(retry.value, "0123456789");
}

#[test]
fn get_with_wrong_parameters_is_invalid_parameter() {
    let (_f, guest) = fixture();
    guest.set("/T/a", "1", None);
    let three = vec![string("/T/a"), out(64), Parm::U64(0)];
    assert_eq!(
        guest.status(Function::GET_PROP, three),
        Status::VERR_INVALID_PARAMETER
    );
    let swapped = vec![string("/T/a"), out(64), Parm::U32(0), Parm::U64(0)];
    assert_eq!(
        guest.status(Function::GET_PROP, swapped),
        Status::VERR_INVALID_PARAMETER
    );
    let read_only_out = vec![
        string("/T/a"),
        bytes_in(&[0; 64]),
        Parm::U64(0),
        Parm::U32(0),
    ];
    assert_eq!(
        guest.status(Function::GET_PROP, read_only_out),
        Status::VERR_INVALID_PARAMETER
    );
}

#[test]
fn get_of_name_with_pattern_character_is_invalid_parameter() {
    let (_f, guest) = fixture();
    assert_eq!(guest.get("/T/*").status, Status::VERR_INVALID_PARAMETER);
}

// ----- SET_PROP / SET_PROP_VALUE -----------------------------------------------------------------

#[test]
fn both_set_functions_accept_two_or_three_parameters() {
    let (_f, guest) = fixture();
    for function in [Function::SET_PROP, Function::SET_PROP_VALUE] {
        let with_flags = vec![string("/T/a"), string("1"), string("RDONLYHOST")];
        assert_eq!(guest.status(function, with_flags), Status::VINF_SUCCESS);
        assert_eq!(guest.get("/T/a").flags, "RDONLYHOST");
        let without = vec![string("/T/a"), string("2")];
        assert_eq!(guest.status(function, without), Status::VINF_SUCCESS);
        assert_eq!(
            guest.get("/T/a").flags,
            "",
            "two-parameter form clears flags"
        );
    }
}

#[test]
fn set_with_one_or_four_parameters_is_invalid_parameter() {
    let (_f, guest) = fixture();
    assert_eq!(
        guest.status(Function::SET_PROP, vec![string("/T/a")]),
        Status::VERR_INVALID_PARAMETER
    );
    let four = vec![string("/T/a"), string("1"), string(""), string("")];
    assert_eq!(
        guest.status(Function::SET_PROP, four),
        Status::VERR_INVALID_PARAMETER
    );
}

#[test]
fn name_buffer_of_64_bytes_is_the_longest_accepted() {
    let (_f, guest) = fixture();
    let longest = format!("/{}", "n".repeat(62));
    assert_eq!(guest.set(&longest, "v", None), Status::VINF_SUCCESS);
    let too_long = format!("/{}", "n".repeat(63));
    assert_eq!(
        guest.set(&too_long, "v", None),
        Status::VERR_INVALID_PARAMETER
    );
}

#[test]
fn value_buffer_over_1024_bytes_is_too_much_data() {
    let (_f, guest) = fixture();
    assert_eq!(
        guest.set("/T/a", &"v".repeat(1023), None),
        Status::VINF_SUCCESS
    );
    assert_eq!(
        guest.set("/T/a", &"v".repeat(1024), None),
        Status::VERR_TOO_MUCH_DATA
    );
}

#[test]
fn empty_value_buffer_is_invalid_parameter_but_empty_string_is_fine() {
    let (_f, guest) = fixture();
    let empty = vec![string("/T/a"), bytes_in(&[])];
    assert_eq!(
        guest.status(Function::SET_PROP_VALUE, empty),
        Status::VERR_INVALID_PARAMETER
    );
    assert_eq!(guest.set("/T/a", "", None), Status::VINF_SUCCESS);
    assert_eq!(guest.get("/T/a").value, "");
}

#[test]
fn raised_value_limit_accepts_large_values() {
    let fixture = Fixture::new("max_value_len=65536");
    let guest = fixture.connect(KERNEL);
    let big = "x".repeat(60_000);
    assert_eq!(guest.set("/T/big", &big, None), Status::VINF_SUCCESS);
    assert_eq!(guest.get_with("/T/big", 70_000).value, big);
}

#[test]
fn bad_flags_are_a_parse_error_and_change_nothing() {
    let (_f, guest) = fixture();
    assert_eq!(
        guest.set("/T/a", "1", Some("TRANSIENT, STICKY")),
        Status::VERR_PARSE_ERROR
    );
    assert_eq!(guest.get("/T/a").status, Status::VERR_NOT_FOUND);
}

#[test]
fn validation_order_is_name_value_flags() {
    let (_f, guest) = fixture();
    let big = "v".repeat(2000);
    assert_eq!(
        guest.set("/T/*", &big, Some("BAD")),
        Status::VERR_INVALID_PARAMETER
    );
    assert_eq!(
        guest.set("/T/a", &big, Some("BAD")),
        Status::VERR_TOO_MUCH_DATA
    );
    assert_eq!(
        guest.set("/T/a", "v", Some("BAD")),
        Status::VERR_PARSE_ERROR
    );
}

#[test]
fn flags_are_rendered_exactly_as_virtualbox_does() {
    let (_f, guest) = fixture();
    let cases = [
        ("transreset", "TRANSIENT, TRANSRESET"),
        ("RDONLYHOST, TRANSIENT", "TRANSIENT, RDONLYHOST"),
        (" transient ,rdonlyhost ", "TRANSIENT, RDONLYHOST"),
        ("", ""),
    ];
    for (i, (given, rendered)) in cases.iter().enumerate() {
        let name = format!("/T/{i}");
        assert_eq!(
            guest.set(&name, "v", Some(given)),
            Status::VINF_SUCCESS,
            "{given}"
        );
        assert_eq!(guest.get(&name).flags, *rendered, "{given}");
    }
    let host = _f.host();
    assert_eq!(
        host.set("/T/r", "v", Some("READONLY, TRANSRESET")),
        Status::VINF_SUCCESS
    );
    assert_eq!(guest.get("/T/r").flags, "TRANSIENT, READONLY, TRANSRESET");
    assert_eq!(
        host.set("/T/g", "v", Some("RDONLYGUEST, TRANSRESET")),
        Status::VINF_SUCCESS
    );
    assert_eq!(
        guest.get("/T/g").flags,
        "TRANSIENT, RDONLYGUEST, TRANSRESET"
    );
}

#[test]
fn rdonlyguest_property_refuses_guest_set_and_delete() {
    let (f, guest) = fixture();
    f.host().set("/T/a", "host", Some("RDONLYGUEST"));
    assert_eq!(
        guest.set("/T/a", "guest", None),
        Status::VERR_PERMISSION_DENIED
    );
    assert_eq!(guest.del("/T/a"), Status::VERR_PERMISSION_DENIED);
    assert_eq!(guest.get("/T/a").value, "host");
}

#[test]
fn readonly_property_refuses_both_sides() {
    let (f, guest) = fixture();
    assert_eq!(
        guest.set("/T/a", "1", Some("READONLY")),
        Status::VINF_SUCCESS
    );
    assert_eq!(guest.get("/T/a").flags, "READONLY");
    assert_eq!(guest.set("/T/a", "2", None), Status::VERR_PERMISSION_DENIED);
    assert_eq!(
        f.host().set("/T/a", "2", None),
        Status::VERR_PERMISSION_DENIED
    );
    assert_eq!(f.host().del("/T/a"), Status::VERR_PERMISSION_DENIED);
}

#[test]
fn guest_rdonlyhost_locks_the_host_out() {
    let (f, guest) = fixture();
    guest.set("/T/mine", "1", Some("RDONLYHOST"));
    assert_eq!(
        f.host().set("/T/mine", "2", None),
        Status::VERR_PERMISSION_DENIED
    );
    assert_eq!(f.host().del("/T/mine"), Status::VERR_PERMISSION_DENIED);
    assert_eq!(guest.del("/T/mine"), Status::VINF_SUCCESS);
}

#[test]
fn guest_cannot_write_host_reserved_namespaces() {
    let (_f, guest) = fixture();
    for name in [
        "/VirtualBox/HostInfo/New",
        "/VirtualBox/GuestAdd/VBoxService/--timesync-interval",
        "/VirtualBox/GuestAdd/PAM/CredsWait",
        "/VirtualBox/GuestAdd/Greeter/HideRestart",
        "/VirtualBox/GuestAdd/SharedFolders/MountPrefix",
        "/VirtualBox/VMInfo/ResetCounter",
    ] {
        assert_eq!(
            guest.set(name, "x", None),
            Status::VERR_PERMISSION_DENIED,
            "{name}"
        );
    }
    assert_eq!(
        guest.set("/VirtualBox/GuestInfo/OS/Product", "Linux", None),
        Status::VINF_SUCCESS
    );
}

#[test]
fn host_writes_to_reserved_namespaces_gain_rdonlyguest() {
    let (f, guest) = fixture();
    let name = "/VirtualBox/GuestAdd/VBoxService/--timesync-interval";
    assert_eq!(f.host().set(name, "10000", None), Status::VINF_SUCCESS);
    assert_eq!(guest.get(name).flags, "RDONLYGUEST");
}

#[test]
fn property_beyond_the_count_limit_is_too_much_data() {
    let (f, guest) = fixture();
    let mut created = 0;
    let status = loop {
        let status = guest.set(&format!("/T/{created}"), "v", None);
        if status != Status::VINF_SUCCESS {
            break status;
        }
        created += 1;
    };
    assert_eq!(status, Status::VERR_TOO_MUCH_DATA);
    assert_eq!(created + PUBLISHED, 256);
    assert_eq!(
        f.host().set("/T/host", "v", None),
        Status::VERR_TOO_MUCH_DATA
    );
    assert_eq!(guest.set("/T/0", "replaced", None), Status::VINF_SUCCESS);
}

#[test]
fn global_rdonlyguest_turns_guest_writes_into_successful_no_ops() {
    let (f, guest) = fixture();
    guest.set("/T/a", "1", None);
    let host = f.host();
    assert_eq!(
        host.call(HostFunction::SET_GLOBAL_FLAGS, &mut [Parm::U32(4)]),
        Status::VINF_SUCCESS
    );
    assert_eq!(guest.set("/T/a", "2", None), Status::VINF_PERMISSION_DENIED);
    assert_eq!(
        guest.set("/T/new", "2", None),
        Status::VINF_PERMISSION_DENIED
    );
    assert_eq!(guest.del("/T/a"), Status::VINF_PERMISSION_DENIED);
    assert_eq!(guest.get("/T/a").value, "1");
    assert_eq!(guest.get("/T/new").status, Status::VERR_NOT_FOUND);
    assert_eq!(host.set("/T/a", "host", None), Status::VINF_SUCCESS);
    host.call(HostFunction::SET_GLOBAL_FLAGS, &mut [Parm::U32(0)]);
    assert_eq!(guest.set("/T/a", "3", None), Status::VINF_SUCCESS);
}

#[test]
fn global_flags_can_be_configured() {
    let fixture = Fixture::new("global_flags=RDONLYGUEST");
    let guest = fixture.connect(KERNEL);
    assert_eq!(guest.set("/T/a", "1", None), Status::VINF_PERMISSION_DENIED);
}

// ----- DEL_PROP ----------------------------------------------------------------------------------

#[test]
fn delete_removes_and_deleting_again_succeeds() {
    let (_f, guest) = fixture();
    guest.set("/T/a", "1", None);
    assert_eq!(guest.del("/T/a"), Status::VINF_SUCCESS);
    assert_eq!(guest.get("/T/a").status, Status::VERR_NOT_FOUND);
    assert_eq!(guest.del("/T/a"), Status::VINF_SUCCESS);
}

#[test]
fn delete_with_two_parameters_is_invalid_parameter() {
    let (_f, guest) = fixture();
    assert_eq!(
        guest.status(Function::DEL_PROP, vec![string("/T/a"), string("x")]),
        Status::VERR_INVALID_PARAMETER
    );
}

// ----- ENUM_PROPS --------------------------------------------------------------------------------

#[test]
fn enumeration_lists_matching_properties_with_decimal_timestamps() {
    let (_f, guest) = fixture();
    guest.set("/VirtualBox/GuestInfo/Net/0/V4/IP", "10.0.2.15", None);
    guest.set("/VirtualBox/GuestInfo/Net/0/MAC", "080027000001", None);
    guest.set(
        "/VirtualBox/GuestInfo/OS/Product",
        "Linux",
        Some("TRANSRESET"),
    );
    let listed = guest.list(&["/VirtualBox/GuestInfo/Net/*", "*/Product"]);
    assert_eq!(listed.status, Status::VINF_SUCCESS);
    let found: Vec<(&str, &str, &str)> = listed
        .records
        .iter()
        .map(|(n, v, _, f)| (n.as_str(), v.as_str(), f.as_str()))
        .collect();
    assert_eq!(
        found,
        [
            ("/VirtualBox/GuestInfo/Net/0/MAC", "080027000001", ""),
            ("/VirtualBox/GuestInfo/Net/0/V4/IP", "10.0.2.15", ""),
            (
                "/VirtualBox/GuestInfo/OS/Product",
                "Linux",
                "TRANSIENT, TRANSRESET"
            ),
        ]
    );
    let product = guest.get("/VirtualBox/GuestInfo/OS/Product");
    assert_eq!(listed.records[2].2, product.timestamp);
}

#[test]
fn enumeration_without_patterns_lists_everything() {
    let (_f, guest) = fixture();
    guest.set("/T/a", "1", None);
    let listed = guest.list(&[]);
    assert_eq!(listed.records.len(), PUBLISHED + 1);
}

#[test]
fn enumeration_output_ends_with_four_nuls_and_needed_counts_them() {
    let (_f, guest) = fixture();
    guest.set("/T/a", "1", None);
    let outcome = guest.call(
        Function::ENUM_PROPS,
        vec![bytes_in(b"/T/a\0\0"), out(256), Parm::U32(0)],
    );
    assert_eq!(outcome.status, 0);
    let needed = outcome.params[2].as_u32().expect("u32") as usize;
    let bytes = buffer_bytes(outcome.params, 1);
    let timestamp = guest.get("/T/a").timestamp.to_string();
    let expected = format!("/T/a\x001\0{timestamp}\0\0\0\0\0\0");
    assert_eq!(&bytes[..needed], expected.as_bytes());
}

#[test]
fn enumeration_into_small_buffer_overflows_and_retry_with_needed_size_works() {
    let (_f, guest) = fixture();
    for i in 0..10 {
        guest.set(&format!("/T/{i}"), &"v".repeat(100), None);
    }
    let small = guest.list_with(&["/T/*"], 64);
    assert_eq!(small.status, Status::VERR_BUFFER_OVERFLOW);
    let exact = guest.list_with(&["/T/*"], small.needed as usize);
    assert_eq!(exact.status, Status::VINF_SUCCESS);
    assert_eq!(exact.records.len(), 10);
    let short_by_one = guest.list_with(&["/T/*"], small.needed as usize - 1);
    assert_eq!(short_by_one.status, Status::VERR_BUFFER_OVERFLOW);
}

#[test]
fn enumeration_patterns_over_the_limit_are_too_much_data() {
    let (_f, guest) = fixture();
    let long = "a".repeat(1024);
    assert_eq!(
        guest.list(&[long.as_str()]).status,
        Status::VERR_TOO_MUCH_DATA
    );
}

#[test]
fn enumeration_pattern_quirks_match_virtualbox() {
    let (_f, guest) = fixture();
    guest.set("/T/a", "1", None);
    guest.set("/T/ab", "1", None);
    guest.set("/T/é", "1", None);
    let names = |patterns: &[&str]| -> Vec<String> {
        guest
            .list(patterns)
            .records
            .into_iter()
            .map(|r| r.0)
            .collect()
    };
    assert_eq!(names(&["/T/?"]), ["/T/a"]);
    assert_eq!(names(&["/T/??"]), ["/T/ab", "/T/é"]);
    assert_eq!(names(&["/T/a*?"]), ["/T/a", "/T/ab"]);
    assert_eq!(names(&["/t/*"]), Vec::<String>::new());
}

// ----- other functions ---------------------------------------------------------------------------

#[test]
fn unknown_guest_function_is_not_implemented() {
    let (_f, guest) = fixture();
    assert_eq!(
        guest.status(Function(7), vec![]),
        Status::VERR_NOT_IMPLEMENTED
    );
    assert_eq!(
        guest.status(Function(0), vec![]),
        Status::VERR_NOT_IMPLEMENTED
    );
}

#[test]
fn unknown_and_removed_host_functions_are_not_supported() {
    let (f, _guest) = fixture();
    let host = f.host();
    assert_eq!(
        host.call(
            HostFunction::GET_DBGF_INFO,
            &mut [Parm::U32(0), Parm::U32(0)]
        ),
        Status::VERR_NOT_SUPPORTED
    );
    assert_eq!(
        host.call(HostFunction(99), &mut []),
        Status::VERR_NOT_SUPPORTED
    );
}

// ----- host functions ----------------------------------------------------------------------------

fn bulk(names: &[&str], values: &[&str], stamps: &[u64], flags: &[&str]) -> Vec<Parm> {
    let join =
        |items: &[&str]| -> Vec<u8> { items.iter().flat_map(|s| s.bytes().chain([0])).collect() };
    let stamps: Vec<u8> = stamps.iter().flat_map(|t| t.to_le_bytes()).collect();
    vec![
        bytes_in(&join(names)),
        bytes_in(&join(values)),
        bytes_in(&stamps),
        bytes_in(&join(flags)),
    ]
}

#[test]
fn bulk_load_sets_timestamps_and_flags_without_notifying() {
    let (f, guest) = fixture();
    f.drain_notifications();
    let mut params = bulk(
        &["/T/a", "/VirtualBox/GuestAdd/PAM/CredsWait"],
        &["1", ""],
        &[111, 222],
        &["RDONLYHOST", ""],
    );
    assert_eq!(
        f.host().call(HostFunction::SET_PROPS, &mut params),
        Status::VINF_SUCCESS
    );
    let a = guest.get("/T/a");
    assert_eq!(
        (a.value.as_str(), a.flags.as_str(), a.timestamp),
        ("1", "RDONLYHOST", 111)
    );
    let pam = guest.get("/VirtualBox/GuestAdd/PAM/CredsWait");
    assert_eq!((pam.flags.as_str(), pam.timestamp), ("RDONLYGUEST", 222));
    assert!(f.notifications.recv_timeout(QUIET).is_err());
}

#[test]
fn bulk_load_with_a_bad_flag_loads_nothing() {
    let (f, guest) = fixture();
    let mut params = bulk(&["/T/a", "/T/b"], &["1", "2"], &[1, 2], &["", "NOPE"]);
    assert_eq!(
        f.host().call(HostFunction::SET_PROPS, &mut params),
        Status::VERR_PARSE_ERROR
    );
    assert_eq!(guest.get("/T/a").status, Status::VERR_NOT_FOUND);
}

#[test]
fn bulk_load_with_lists_of_different_lengths_is_invalid_parameter() {
    let (f, _guest) = fixture();
    let mut params = bulk(&["/T/a", "/T/b"], &["1"], &[1, 2], &["", ""]);
    assert_eq!(
        f.host().call(HostFunction::SET_PROPS, &mut params),
        Status::VERR_INVALID_PARAMETER
    );
}

#[test]
fn bulk_load_is_not_limited_by_the_property_count() {
    let fixture = Fixture::new("max_props=10");
    let names: Vec<String> = (0..50).map(|i| format!("/T/{i}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let values = vec!["v"; 50];
    let flags = vec![""; 50];
    let stamps = vec![1u64; 50];
    let mut params = bulk(&names, &values, &stamps, &flags);
    let host = fixture.host();
    assert_eq!(
        host.call(HostFunction::SET_PROPS, &mut params),
        Status::VINF_SUCCESS
    );
    assert_eq!(host.list(b"/T/*\0\0").records.len(), 50);
}

#[test]
fn host_get_and_enum_see_what_the_guest_set() {
    let (f, guest) = fixture();
    guest.set("/T/a", "guest", Some("TRANSIENT"));
    let got = f.host().get("/T/a");
    assert_eq!(
        (got.status, got.value.as_str()),
        (Status::VINF_SUCCESS, "guest")
    );
    let listed = f.host().list(b"/T/*\0");
    assert_eq!(listed.records.len(), 1);
}

#[test]
fn host_set_with_two_parameters_clears_flags() {
    let (f, guest) = fixture();
    let host = f.host();
    host.set("/T/a", "1", Some("TRANSIENT"));
    let mut params = [string("/T/a"), string("2")];
    assert_eq!(
        host.call(HostFunction::SET_PROP_VALUE, &mut params),
        Status::VINF_SUCCESS
    );
    assert_eq!(guest.get("/T/a").flags, "");
}

// ----- policy ------------------------------------------------------------------------------------

#[test]
fn default_policy_lets_vboxuser_processes_set_get_and_delete() {
    let fixture = Fixture::new("");
    let user = fixture.connect(USER_DEVICE);
    assert_eq!(user.set("/Test/Foo", "bar", None), Status::VINF_SUCCESS);
    assert_eq!(user.get("/Test/Foo").value, "bar");
    assert_eq!(user.del("/Test/Foo"), Status::VINF_SUCCESS);
    assert_eq!(user.get("/Test/Foo").status, Status::VERR_NOT_FOUND);
    fixture.host().set("/Test/FromHost", "h", None);
    assert_eq!(user.get("/Test/FromHost").value, "h");
}

#[test]
fn read_only_policy_refuses_vboxuser_writes_but_not_root() {
    let fixture = Fixture::new("policy=vboxuser:ro:*");
    let user = fixture.connect(USER_DEVICE);
    let root = fixture.connect(ROOT);
    assert_eq!(root.set("/T/a", "1", None), Status::VINF_SUCCESS);
    assert_eq!(user.get("/T/a").value, "1");
    assert_eq!(user.set("/T/a", "2", None), Status::VERR_PERMISSION_DENIED);
    assert_eq!(user.del("/T/a"), Status::VERR_PERMISSION_DENIED);
    assert_eq!(root.get("/T/a").value, "1");
}

#[test]
fn hidden_prefix_looks_missing_to_the_restricted_caller() {
    let fixture = Fixture::new("policy=vboxuser:none:/Secret/,policy=all:rw:/Secret/Public/");
    let user = fixture.connect(USER_DEVICE);
    let kernel = fixture.connect(KERNEL);
    kernel.set("/Secret/key", "k", None);
    kernel.set("/Secret/Public/motd", "hi", None);
    assert_eq!(user.get("/Secret/key").status, Status::VERR_NOT_FOUND);
    assert_eq!(user.get("/Secret/Public/motd").value, "hi");
    let names: Vec<String> = user
        .list(&["/Secret/*"])
        .records
        .into_iter()
        .map(|r| r.0)
        .collect();
    assert_eq!(names, ["/Secret/Public/motd"]);
    assert_eq!(kernel.get("/Secret/key").value, "k");
}

#[test]
fn bad_configuration_refuses_the_load() {
    for config in [
        "max_value_len=0",
        "colour=blue",
        "policy=nobody:rw:*",
        "store=",
    ] {
        match Fixture::try_new(config) {
            Err(vmmdev_hgcm::RegisterError::InitRefused(status)) => {
                assert_eq!(Status(status), Status::VERR_INVALID_PARAMETER, "{config}");
            }
            Err(other) => panic!("{config}: unexpected error {other}"),
            Ok(_) => panic!("{config}: accepted"),
        }
    }
}

#[test]
fn plugin_build_serves_the_same_protocol() {
    let hgcm = vmmdev_hgcm::Hgcm::new(vmmdev_hgcm::HgcmConfig::default());
    let path = plugin_path();
    let name = hgcm
        .load_plugin(path.to_str().expect("utf-8 path"), "max_props=300")
        .expect("plugin loads");
    assert_eq!(name, vmmdev_svc_guest_props::SERVICE_NAME);
    let fixture = Fixture {
        notifications: hgcm.subscribe(),
        hgcm,
    };
    let guest = fixture.connect(KERNEL);
    assert_eq!(
        guest.set("/T/a", "plugin", Some("TRANSRESET")),
        Status::VINF_SUCCESS
    );
    let got = guest.get("/T/a");
    assert_eq!(
        (got.value.as_str(), got.flags.as_str()),
        ("plugin", "TRANSIENT, TRANSRESET")
    );
}
