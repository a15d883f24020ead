//! The control endpoint over a real HGCM framework with the built-in services, driven by the
//! `vmmdev-ctl` binary and by raw protocol lines.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use vmmdev_control::{Control, ControlServer, MAX_CONNECTIONS, MAX_REQUEST_LEN, ServerError};
use vmmdev_host_options::HostOptions;

/// A directory of its own per test, removed at the end.
struct Scratch(PathBuf);

impl Scratch {
    fn new(test: &str) -> Scratch {
        let dir =
            std::env::temp_dir().join(format!("vmmdev-control-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch directory");
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn start(scratch: &Scratch) -> (ControlServer, Control) {
    let hgcm = HostOptions::default()
        .build_hgcm()
        .expect("built-in services");
    let control = Control::new(hgcm);
    let server =
        ControlServer::start(&scratch.0.join("control.sock"), control.clone()).expect("start");
    (server, control)
}

fn ctl(socket: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vmmdev-ctl"))
        .arg("--control")
        .arg(socket)
        .args(args)
        .output()
        .expect("run vmmdev-ctl")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn exchange(stream: &mut BufReader<UnixStream>, line: &[u8]) -> serde_json::Value {
    stream.get_mut().write_all(line).expect("send");
    let mut reply = String::new();
    stream.read_line(&mut reply).expect("reply");
    serde_json::from_str(&reply).expect("one JSON response per line")
}

#[test]
fn cli_sets_gets_enumerates_and_deletes_a_property() {
    let scratch = Scratch::new("props");
    let (server, _control) = start(&scratch);
    let socket = server.path();
    let set = ctl(
        socket,
        &[
            "guestproperty",
            "set",
            "/Test/A",
            "hello world",
            "--flags",
            "TRANSIENT",
        ],
    );
    assert!(set.status.success(), "{set:?}");
    let get = ctl(socket, &["guestproperty", "get", "/Test/A", "--verbose"]);
    assert!(get.status.success(), "{get:?}");
    let text = stdout(&get);
    assert!(text.starts_with("Value: hello world\n"), "{text}");
    assert!(text.contains("Flags: TRANSIENT"), "{text}");
    let list = ctl(
        socket,
        &["guestproperty", "enumerate", "--patterns", "/Test/*"],
    );
    assert!(
        stdout(&list).starts_with("Name: /Test/A, value: hello world, timestamp: "),
        "{list:?}"
    );
    assert_eq!(stdout(&list).lines().count(), 1);
    let delete = ctl(socket, &["guestproperty", "delete", "/Test/A"]);
    assert!(delete.status.success(), "{delete:?}");
    let get = ctl(socket, &["guestproperty", "get", "/Test/A"]);
    assert_eq!(stdout(&get), "No value set!\n");
}

#[test]
fn cli_set_without_value_deletes_the_property() {
    let scratch = Scratch::new("unset");
    let (server, control) = start(&scratch);
    control.set_property("/Test/B", "x", None).expect("set");
    let set = ctl(server.path(), &["guestproperty", "set", "/Test/B"]);
    assert!(set.status.success(), "{set:?}");
    assert_eq!(control.get_property("/Test/B").expect("get"), None);
}

#[test]
fn cli_wait_prints_the_change_another_client_makes() {
    let scratch = Scratch::new("wait");
    let (server, control) = start(&scratch);
    let mut wait = Command::new(env!("CARGO_BIN_EXE_vmmdev-ctl"))
        .arg("--control")
        .arg(server.path())
        .args(["guestproperty", "wait", "/Test/W*", "--timeout", "20000"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("run vmmdev-ctl");
    // The wait sees only changes after it subscribed: keep changing until it reports one.
    let deadline = Instant::now() + Duration::from_secs(20);
    while wait.try_wait().expect("poll").is_none() && Instant::now() < deadline {
        control
            .set_property("/Test/Other", "ignored", None)
            .expect("set");
        control
            .set_property("/Test/Wanted", "seen", None)
            .expect("set");
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = wait.wait_with_output().expect("wait output");
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        stdout(&output),
        "Name: /Test/Wanted, value: seen, flags: \n"
    );
}

#[test]
fn cli_wait_times_out_with_exit_code_1() {
    let scratch = Scratch::new("timeout");
    let (server, _control) = start(&scratch);
    let wait = ctl(
        server.path(),
        &["guestproperty", "wait", "/Never", "--timeout", "100"],
    );
    assert_eq!(wait.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&wait.stderr).contains("time out"),
        "{wait:?}"
    );
}

#[test]
fn cli_adds_lists_and_removes_a_share() {
    let scratch = Scratch::new("shares");
    let (server, _control) = start(&scratch);
    let socket = server.path();
    let dir = scratch.0.to_string_lossy().into_owned();
    let add = ctl(
        socket,
        &[
            "sharedfolder",
            "add",
            "--name",
            "data",
            "--hostpath",
            &dir,
            "--readonly",
        ],
    );
    assert!(add.status.success(), "{add:?}");
    let list = ctl(socket, &["sharedfolder", "list"]);
    let text = stdout(&list);
    assert_eq!(
        text,
        format!(
            "Name: 'data', Host path: '{dir}' (machine mapping), readonly, symlinks: deny, state: ok, mappings: 0\n"
        )
    );
    let remove = ctl(socket, &["sharedfolder", "remove", "--name", "data"]);
    assert!(remove.status.success(), "{remove:?}");
    assert_eq!(
        stdout(&ctl(socket, &["sharedfolder", "list"])),
        "No shared folders.\n"
    );
}

#[test]
fn cli_reports_a_refused_operation_in_one_line_with_exit_code_1() {
    let scratch = Scratch::new("refused");
    let (server, _control) = start(&scratch);
    let remove = ctl(
        server.path(),
        &["sharedfolder", "remove", "--name", "absent"],
    );
    assert_eq!(remove.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&remove.stderr).into_owned();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("VERR_FILE_NOT_FOUND"), "{stderr}");
}

#[test]
fn cli_bad_arguments_exit_with_code_2() {
    let scratch = Scratch::new("usage");
    let (server, _control) = start(&scratch);
    let output = ctl(server.path(), &["guestproperty", "frobnicate"]);
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn cli_without_endpoint_fails_with_exit_code_1() {
    let scratch = Scratch::new("absent");
    let output = ctl(&scratch.0.join("none.sock"), &["sharedfolder", "list"]);
    assert_eq!(output.status.code(), Some(1));
}

#[test]
fn endpoint_answers_garbage_and_unknown_ops_and_keeps_serving() {
    let scratch = Scratch::new("garbage");
    let (server, _control) = start(&scratch);
    let mut stream = BufReader::new(UnixStream::connect(server.path()).expect("connect"));
    for line in [
        &b"\xff\x00garbage\n"[..],
        b"{\"op\":\"vm.reset\"}\n",
        b"{\"op\":\"guestproperty.get\"}\n",
    ] {
        let reply = exchange(&mut stream, line);
        assert_eq!(reply["ok"], false, "{line:?}");
        assert!(reply["error"].is_string());
    }
    let reply = exchange(
        &mut stream,
        b"{\"op\":\"guestproperty.get\",\"name\":\"/None\"}\n",
    );
    assert_eq!(reply, serde_json::json!({"ok": true, "value": null}));
}

#[test]
fn endpoint_answers_an_oversized_line_with_an_error_and_closes() {
    let scratch = Scratch::new("oversized");
    let (server, _control) = start(&scratch);
    let stream = UnixStream::connect(server.path()).expect("connect");
    let mut writer = stream.try_clone().expect("clone");
    let sender = std::thread::spawn(move || {
        // The server stops reading at the limit; the rest may fail to send once it closes.
        let _ = writer.write_all(&vec![b'x'; MAX_REQUEST_LEN * 2]);
    });
    let mut reader = BufReader::new(stream);
    let mut reply = String::new();
    reader.read_line(&mut reply).expect("reply");
    let reply: serde_json::Value = serde_json::from_str(&reply).expect("JSON");
    assert_eq!(reply["ok"], false);
    // Closed: end of stream, or a reset because the unread rest of the line was discarded.
    let mut rest = String::new();
    match reader.read_line(&mut rest) {
        Ok(read) => assert_eq!(read, 0),
        Err(error) => assert_eq!(error.kind(), std::io::ErrorKind::ConnectionReset),
    }
    sender.join().expect("sender");
}

#[test]
fn second_endpoint_on_a_live_socket_is_refused() {
    let scratch = Scratch::new("inuse");
    let (server, control) = start(&scratch);
    let second = ControlServer::start(server.path(), control);
    assert!(matches!(second, Err(ServerError::InUse(_))), "{second:?}");
}

#[test]
fn stale_socket_is_replaced_and_removed_on_drop() {
    let scratch = Scratch::new("stale");
    let path = scratch.0.join("control.sock");
    drop(std::os::unix::net::UnixListener::bind(&path).expect("stale socket"));
    let hgcm = HostOptions::default()
        .build_hgcm()
        .expect("built-in services");
    let server =
        ControlServer::start(&path, Control::new(hgcm)).expect("replaces the stale socket");
    assert!(UnixStream::connect(&path).is_ok());
    drop(server);
    assert!(!path.exists());
}

#[test]
fn share_with_relative_path_is_refused_as_invalid() {
    let scratch = Scratch::new("relative");
    let (server, _control) = start(&scratch);
    let add = ctl(
        server.path(),
        &[
            "sharedfolder",
            "add",
            "--name",
            "rel",
            "--hostpath",
            "rel/dir",
        ],
    );
    assert_eq!(add.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&add.stderr).contains("invalid argument"),
        "{add:?}"
    );
}

#[test]
fn property_with_nul_in_name_is_refused_as_invalid() {
    let scratch = Scratch::new("nul");
    let (server, _control) = start(&scratch);
    let mut stream = BufReader::new(UnixStream::connect(server.path()).expect("connect"));
    let reply = exchange(
        &mut stream,
        b"{\"op\":\"guestproperty.set\",\"name\":\"/A\\u0000B\",\"value\":\"v\"}\n",
    );
    assert_eq!(reply["ok"], false);
    assert!(
        reply["error"].as_str().is_some_and(|e| e.contains("NUL")),
        "{reply}"
    );
}

#[test]
fn enumeration_larger_than_the_first_buffer_is_complete() {
    let scratch = Scratch::new("large");
    let (_server, control) = start(&scratch);
    let value = "v".repeat(1000);
    for index in 0..40 {
        control
            .set_property(&format!("/Large/{index}"), &value, None)
            .expect("set");
    }
    let properties = control
        .enumerate_properties(&["/Large/*".to_owned()])
        .expect("enumerate");
    assert_eq!(properties.len(), 40);
    assert!(properties.iter().all(|p| p.value == value));
}

#[test]
fn connection_beyond_the_limit_is_refused_while_the_others_stay_open() {
    let scratch = Scratch::new("limit");
    let (server, _control) = start(&scratch);
    let get = b"{\"op\":\"guestproperty.get\",\"name\":\"/None\"}\n";
    let mut open: Vec<_> = (0..MAX_CONNECTIONS)
        .map(|_| BufReader::new(UnixStream::connect(server.path()).expect("connect")))
        .collect();
    for stream in &mut open {
        assert_eq!(exchange(stream, get)["ok"], true);
    }
    let mut extra = BufReader::new(UnixStream::connect(server.path()).expect("connect"));
    let mut reply = String::new();
    extra.read_line(&mut reply).expect("refusal");
    assert!(reply.contains("too many control connections"), "{reply}");
    drop(open.pop());
    // The slot frees once the server has seen the close; retry until it has.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut stream = BufReader::new(UnixStream::connect(server.path()).expect("connect"));
        // A refused connection may be closed before the request is sent; its reply is then the
        // refusal, read below, and the send error does not matter.
        let _ = stream.get_mut().write_all(get);
        let mut reply = String::new();
        if stream.read_line(&mut reply).is_ok() && reply.contains("\"ok\":true") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the slot was never freed: {reply}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
