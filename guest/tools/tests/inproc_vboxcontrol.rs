//! `vboxcontrol guestproperty` end to end without a VM: the commands run over the ioctl
//! library, a test transport playing the vboxguest driver, the in-process guest and device, and
//! the real guest-properties service.

#[path = "../../ioctl/tests/support/inproc_driver.rs"]
mod inproc_driver;

use std::ffi::OsString;
use std::time::Duration;

use clap::Parser;
use inproc_driver::InprocDriver;
use vmmdev_guest_ioctl::Device;
use vmmdev_guest_tools::control::{self, Cli, Command, ExitStatus};
use vmmdev_hgcm::{Buffer, Direction, Hgcm, HgcmConfig, Parm};
use vmmdev_svc_guest_props::{HostFunction, SERVICE_NAME};

fn device() -> Device<InprocDriver> {
    let hgcm = Hgcm::new(HgcmConfig::default());
    hgcm.register_builtin(vmmdev_svc_guest_props::guest_props_entry, "")
        .expect("register the guest properties service");
    Device::with_transport(InprocDriver::new(hgcm)).expect("version handshake")
}

/// What one command printed and returned.
#[derive(Debug)]
struct Run {
    status: ExitStatus,
    out: String,
    err: String,
}

/// Runs `vboxcontrol guestproperty ARGS...` over `device`.
fn run(device: &Device<InprocDriver>, args: &[&str]) -> Run {
    let args = ["vboxcontrol", "--nologo", "guestproperty"]
        .iter()
        .chain(args)
        .map(OsString::from);
    let cli = Cli::try_parse_from(control::normalize_args(args)).expect("valid command line");
    let Some(Command::GuestProperty(command)) = cli.command else {
        panic!("not a guestproperty command");
    };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let status = control::guest_property(device, &command, &mut out, &mut err);
    Run {
        status,
        out: String::from_utf8(out).expect("UTF-8 output"),
        err: String::from_utf8(err).expect("UTF-8 errors"),
    }
}

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
    assert_eq!(status, 0);
}

#[test]
fn set_then_get_prints_the_value() {
    let device = device();
    let set = run(&device, &["set", "/Test/Foo", "bar"]);
    assert_eq!((set.status, set.out.as_str()), (ExitStatus::Success, ""));
    let get = run(&device, &["get", "/Test/Foo"]);
    assert_eq!(
        (get.status, get.out.as_str()),
        (ExitStatus::Success, "Value: bar\n")
    );
}

#[test]
fn verbose_get_prints_timestamp_and_flags() {
    let device = device();
    run(
        &device,
        &[
            "set",
            "/Test/Foo",
            "bar",
            "--flags",
            "transreset,RDONLYHOST",
        ],
    );
    let get = run(&device, &["get", "/Test/Foo", "-verbose"]);
    let lines: Vec<&str> = get.out.lines().collect();
    assert_eq!(lines.len(), 3, "{}", get.out);
    assert_eq!(lines[0], "Value: bar");
    let timestamp = lines[1]
        .strip_prefix("Timestamp: ")
        .and_then(|rest| rest.strip_suffix(" ns"))
        .expect("timestamp line");
    assert!(timestamp.parse::<u64>().expect("decimal") > 0);
    assert_eq!(lines[2], "Flags: TRANSIENT, RDONLYHOST, TRANSRESET");
}

#[test]
fn get_of_a_missing_property_prints_no_value_set_and_fails() {
    let device = device();
    let get = run(&device, &["get", "/Test/Missing"]);
    assert_eq!(
        (get.status, get.out.as_str()),
        (ExitStatus::Failure, "No value set!\n")
    );
}

#[test]
fn value_set_by_the_host_is_printed() {
    let device = device();
    host_set(&device, "/Test/FromHost", "hello-from-host", "");
    let get = run(&device, &["get", "/Test/FromHost"]);
    assert_eq!(get.out, "Value: hello-from-host\n");
}

#[test]
fn set_without_a_value_deletes_the_property() {
    let device = device();
    run(&device, &["set", "/Test/Foo", "bar"]);
    assert_eq!(
        run(&device, &["set", "/Test/Foo"]).status,
        ExitStatus::Success
    );
    assert_eq!(
        run(&device, &["get", "/Test/Foo"]).status,
        ExitStatus::Failure
    );
}

#[test]
fn delete_and_unset_remove_the_property() {
    let device = device();
    for command in ["delete", "unset"] {
        run(&device, &["set", "/Test/Foo", "bar"]);
        assert_eq!(
            run(&device, &[command, "/Test/Foo"]).status,
            ExitStatus::Success
        );
        assert_eq!(run(&device, &["get", "/Test/Foo"]).out, "No value set!\n");
    }
}

#[test]
fn set_of_a_read_only_property_fails_with_a_message() {
    let device = device();
    host_set(&device, "/Test/Locked", "host", "RDONLYGUEST");
    let set = run(&device, &["set", "/Test/Locked", "guest"]);
    assert_eq!(set.status, ExitStatus::Failure);
    assert_eq!(
        set.err,
        "vboxcontrol: error: Failed to store the property value, error VERR_PERMISSION_DENIED\n"
    );
}

#[test]
fn malformed_flags_fail_without_storing() {
    let device = device();
    let set = run(&device, &["set", "/Test/Foo", "bar", "--flags", "VOLATILE"]);
    assert_eq!(set.status, ExitStatus::Failure);
    assert_eq!(
        run(&device, &["get", "/Test/Foo"]).status,
        ExitStatus::Failure
    );
}

#[test]
fn enumerate_prints_one_line_per_matching_property() {
    let device = device();
    run(&device, &["set", "/Test/A", "1"]);
    run(&device, &["set", "/Test/B", "2", "--flags", "TRANSIENT"]);
    run(&device, &["set", "/Other", "3"]);
    let list = run(&device, &["enumerate", "--patterns", "/Test/*"]);
    assert_eq!(list.status, ExitStatus::Success);
    let mut lines: Vec<String> = list
        .out
        .lines()
        .map(|line| {
            // Drop the timestamp, which differs per run.
            let (start, rest) = line.split_once(", timestamp: ").expect("timestamp field");
            let (timestamp, flags) = rest.split_once(", flags: ").expect("flags field");
            assert!(timestamp.parse::<u64>().is_ok(), "{line}");
            format!("{start}, flags: {flags}")
        })
        .collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            "Name: /Test/A, value: 1, flags: ",
            "Name: /Test/B, value: 2, flags: TRANSIENT"
        ]
    );
}

#[test]
fn wait_prints_the_change_it_was_woken_by() {
    let device = device();
    run(&device, &["set", "/Baseline", ""]);
    let after = run(&device, &["get", "/Baseline", "--verbose"]).out;
    let after = after
        .lines()
        .find_map(|line| line.strip_prefix("Timestamp: "))
        .and_then(|rest| rest.strip_suffix(" ns"))
        .expect("timestamp")
        .to_owned();
    let wait = std::thread::scope(|scope| {
        let waiter = scope.spawn(|| {
            run(
                &device,
                &[
                    "wait",
                    "/Test/*",
                    "--timestamp",
                    &after,
                    "--timeout",
                    "10000",
                ],
            )
        });
        std::thread::sleep(Duration::from_millis(200));
        run(&device, &["set", "/Test/Bar", "1"]);
        waiter.join().expect("waiter thread")
    });
    assert_eq!(wait.status, ExitStatus::Success, "{}", wait.err);
    let lines: Vec<&str> = wait.out.lines().collect();
    assert_eq!(lines[..2], ["Name: /Test/Bar", "Value: 1"]);
    assert!(lines[2].starts_with("Timestamp: ") && lines[2].ends_with(" ns"));
    assert_eq!(lines[3], "Flags: ");
}

#[test]
fn wait_reports_a_deletion() {
    let device = device();
    run(&device, &["set", "/Test/Gone", "x"]);
    let timestamp = run(&device, &["get", "/Test/Gone", "--verbose"]).out;
    let timestamp = timestamp
        .lines()
        .find_map(|line| line.strip_prefix("Timestamp: "))
        .and_then(|rest| rest.strip_suffix(" ns"))
        .expect("timestamp")
        .to_owned();
    run(&device, &["delete", "/Test/Gone"]);
    let wait = run(&device, &["wait", "/Test/Gone", "--timestamp", &timestamp]);
    assert_eq!(wait.out, "Property /Test/Gone was deleted\n");
}

#[test]
fn wait_timeout_fails_with_1_or_with_2_when_asked_to() {
    let device = device();
    let plain = run(&device, &["wait", "/Test/Never", "--timeout", "50"]);
    assert_eq!(plain.status, ExitStatus::Failure);
    assert_eq!(
        plain.err,
        "vboxcontrol: error: The request timed out or was interrupted\n"
    );
    let strict = run(
        &device,
        &[
            "wait",
            "/Test/Never",
            "--timeout",
            "50",
            "--fail-on-timeout",
        ],
    );
    assert_eq!(strict.status, ExitStatus::Syntax);
}
