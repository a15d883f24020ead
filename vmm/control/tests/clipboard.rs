//! The clipboard operations of the control endpoint over the built-in service, driven by `vmmdev-ctl`
//! and by raw protocol lines, with an in-process guest client where the guest has to answer.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crossbeam_channel::bounded;
use vmmdev_control::{Control, ControlServer};
use vmmdev_hgcm::{Buffer, CallRequest, ClientId, Direction, Hgcm, Parm, Requestor};
use vmmdev_host_options::HostOptions;
use vmmdev_protocol::services::clipboard::{Function, SERVICE_NAME};

struct Scratch(PathBuf);

impl Scratch {
    fn new(test: &str) -> Scratch {
        let dir =
            std::env::temp_dir().join(format!("vmmdev-control-clip-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch directory");
        Scratch(dir)
    }

    fn socket(&self) -> PathBuf {
        self.0.join("control.sock")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn start(scratch: &Scratch) -> (ControlServer, Hgcm) {
    let hgcm = HostOptions::default()
        .build_hgcm()
        .expect("built-in services");
    let server =
        ControlServer::start(&scratch.socket(), Control::new(hgcm.clone())).expect("start");
    (server, hgcm)
}

fn ctl(socket: &Path, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_vmmdev-ctl"))
        .arg("--control")
        .arg(socket)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run vmmdev-ctl");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin)
        .expect("write stdin");
    child.wait_with_output().expect("vmmdev-ctl exits")
}

fn request(socket: &Path, line: &str) -> serde_json::Value {
    let mut stream = BufReader::new(UnixStream::connect(socket).expect("connect"));
    stream
        .get_mut()
        .write_all(format!("{line}\n").as_bytes())
        .expect("send");
    let mut reply = String::new();
    stream.read_line(&mut reply).expect("reply");
    serde_json::from_str(&reply).expect("JSON")
}

/// A guest client of the message protocol that owns the clipboard with text.
struct Guest {
    hgcm: Hgcm,
    client: ClientId,
}

impl Guest {
    fn connect(hgcm: &Hgcm) -> Guest {
        let (tx, rx) = bounded(1);
        hgcm.connect(
            SERVICE_NAME,
            Requestor(0x8B),
            Box::new(move |o| {
                let _ = tx.send(o);
            }),
        )
        .expect("connect");
        let client = rx
            .recv_timeout(Duration::from_secs(5))
            .expect("connected")
            .client;
        let guest = Guest {
            hgcm: hgcm.clone(),
            client,
        };
        guest.call(
            Function::REPORT_FEATURES,
            vec![Parm::U64(1), Parm::U64(1 << 63)],
        );
        guest
    }

    fn call(&self, function: Function, params: Vec<Parm>) -> (i32, Vec<Parm>) {
        let (tx, rx) = bounded(1);
        self.hgcm
            .call(
                CallRequest {
                    client: self.client,
                    function: function.raw(),
                    params,
                    requestor: Requestor(0x8B),
                    restored: false,
                },
                Box::new(move |o| {
                    let _ = tx.send(o);
                }),
            )
            .expect("call");
        let outcome = rx.recv_timeout(Duration::from_secs(10)).expect("completes");
        (outcome.status, outcome.params)
    }

    /// Answers the next READ_DATA_CID with `text`.
    fn answer(&self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (status, params) = self.call(Function::MSG_GET, vec![Parm::U64(5), Parm::U32(0)]);
            if status == 0 {
                let context = params[0].as_u64().expect("context");
                let wire: Vec<u8> = format!("{text}\0")
                    .encode_utf16()
                    .flat_map(u16::to_le_bytes)
                    .collect();
                let data = Parm::Buffer(Buffer::host(wire, Direction::ToHost));
                let (status, _) = self.call(
                    Function::DATA_WRITE,
                    vec![Parm::U64(context), Parm::U32(1), data],
                );
                assert_eq!(status, 0);
                return;
            }
            if status == vmmdev_hgcm::Status::VERR_MISMATCH.raw() {
                // An announcement is ahead of the request: take it.
                self.call(Function::MSG_GET, vec![Parm::U32(3), Parm::U32(0)]);
                continue;
            }
            assert!(Instant::now() < deadline, "no read request arrived");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

#[test]
fn text_set_with_vmmdev_ctl_reads_back_with_its_non_ascii_characters() {
    let scratch = Scratch::new("text");
    let (_server, _hgcm) = start(&scratch);
    let set = ctl(&scratch.socket(), &["clipboard", "set", "Grüße, 世界"], b"");
    assert!(
        set.status.success(),
        "{}",
        String::from_utf8_lossy(&set.stderr)
    );
    let get = ctl(&scratch.socket(), &["clipboard", "get"], b"");
    assert!(get.status.success());
    assert_eq!(get.stdout, "Grüße, 世界".as_bytes());
}

#[test]
fn html_set_from_standard_input_and_missing_format_is_an_error() {
    let scratch = Scratch::new("html");
    let (_server, _hgcm) = start(&scratch);
    let set = ctl(
        &scratch.socket(),
        &["clipboard", "set", "--format", "html"],
        b"<b>x</b>",
    );
    assert!(set.status.success());
    let get = ctl(
        &scratch.socket(),
        &["clipboard", "get", "--format", "html"],
        b"",
    );
    assert_eq!(get.stdout, b"<b>x</b>");
    let text = ctl(&scratch.socket(), &["clipboard", "get"], b"");
    assert_eq!(text.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&text.stderr).contains("holds no text"));
}

#[test]
fn bitmap_file_round_trips_through_the_service() {
    let scratch = Scratch::new("bitmap");
    let (_server, _hgcm) = start(&scratch);
    let mut bmp = b"BM".to_vec();
    bmp.extend_from_slice(&62u32.to_le_bytes());
    bmp.extend_from_slice(&[0; 4]);
    bmp.extend_from_slice(&54u32.to_le_bytes());
    bmp.extend_from_slice(&40u32.to_le_bytes());
    bmp.extend_from_slice(&2i32.to_le_bytes());
    bmp.extend_from_slice(&1i32.to_le_bytes());
    bmp.extend_from_slice(&1u16.to_le_bytes());
    bmp.extend_from_slice(&24u16.to_le_bytes());
    bmp.extend_from_slice(&[0; 24]);
    bmp.extend_from_slice(&[0, 0, 255, 0, 255, 0, 0, 0]);
    let file = scratch.0.join("in.bmp");
    std::fs::write(&file, &bmp).expect("write");
    let file = file.to_string_lossy().into_owned();
    let set = ctl(
        &scratch.socket(),
        &["clipboard", "set", "--format", "bitmap", "--file", &file],
        b"",
    );
    assert!(
        set.status.success(),
        "{}",
        String::from_utf8_lossy(&set.stderr)
    );
    let get = ctl(
        &scratch.socket(),
        &["clipboard", "get", "--format", "bitmap"],
        b"",
    );
    assert_eq!(get.stdout, bmp);
}

#[test]
fn mode_is_read_and_set() {
    let scratch = Scratch::new("mode");
    let (_server, _hgcm) = start(&scratch);
    let get = ctl(&scratch.socket(), &["clipboard", "mode"], b"");
    assert_eq!(String::from_utf8_lossy(&get.stdout), "bidirectional\n");
    let set = ctl(
        &scratch.socket(),
        &["clipboard", "mode", "host-to-guest"],
        b"",
    );
    assert_eq!(String::from_utf8_lossy(&set.stdout), "host-to-guest\n");
    let bad = request(&scratch.socket(), r#"{"op":"clipboard.mode","mode":"up"}"#);
    assert_eq!(bad["ok"], false);
}

#[test]
fn guest_data_is_read_through_the_guest() {
    let scratch = Scratch::new("guest");
    let (_server, hgcm) = start(&scratch);
    let guest = Guest::connect(&hgcm);
    let report = guest.call(Function::REPORT_FORMATS, vec![Parm::U32(1)]);
    assert_eq!(report.0, 0);
    let answering = std::thread::spawn(move || guest.answer("from the guest\r\nzwei"));
    let response = request(
        &scratch.socket(),
        r#"{"op":"clipboard.get","timeout_ms":5000}"#,
    );
    answering.join().expect("guest answered");
    assert_eq!(response["ok"], true, "{response}");
    assert_eq!(response["source"], "guest");
    assert_eq!(response["text"], "from the guest\nzwei");
}

#[test]
fn guest_that_never_answers_times_out_and_the_endpoint_stays_usable() {
    let scratch = Scratch::new("timeout");
    let (_server, hgcm) = start(&scratch);
    let guest = Guest::connect(&hgcm);
    guest.call(Function::REPORT_FORMATS, vec![Parm::U32(1)]);
    let started = Instant::now();
    let response = request(
        &scratch.socket(),
        r#"{"op":"clipboard.get","timeout_ms":200}"#,
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(
        response["error"],
        "clipboard.get timed out: the guest did not answer within 200 ms"
    );
    let mode = request(&scratch.socket(), r#"{"op":"clipboard.mode"}"#);
    assert_eq!(mode["mode"], "bidirectional");
}

#[test]
fn reading_guest_data_in_host_to_guest_mode_names_the_forbidden_direction() {
    let scratch = Scratch::new("denied");
    let (_server, hgcm) = start(&scratch);
    let guest = Guest::connect(&hgcm);
    guest.call(Function::REPORT_FORMATS, vec![Parm::U32(1)]);
    request(
        &scratch.socket(),
        r#"{"op":"clipboard.mode","mode":"host-to-guest"}"#,
    );
    let response = request(&scratch.socket(), r#"{"op":"clipboard.get"}"#);
    assert_eq!(
        response["error"],
        "clipboard.get refused: the clipboard mode forbids guest-to-host (VERR_ACCESS_DENIED)"
    );
}

#[test]
fn malformed_set_requests_are_refused_with_one_line() {
    let scratch = Scratch::new("malformed");
    let (_server, _hgcm) = start(&scratch);
    for line in [
        r#"{"op":"clipboard.set","text":"a","text_path":"/etc/hostname"}"#,
        r#"{"op":"clipboard.set","bitmap_base64":"???"}"#,
        r#"{"op":"clipboard.set","html_path":"/no/such/file"}"#,
        r#"{"op":"clipboard.get","format":"rtf"}"#,
    ] {
        let response = request(&scratch.socket(), line);
        assert_eq!(response["ok"], false, "{line}");
        assert!(!response["error"].as_str().expect("error").contains('\n'));
    }
}
