//! Every guest protocol path through the HGCM framework: features, announcements, peek/get/cancel,
//! the legacy wait, reads with the buffer-too-small retry, writes with and without context IDs.

mod common;

use std::time::Duration;

use common::*;
use vmmdev_hgcm::Parm;
use vmmdev_protocol::services::clipboard::{Function, HostFeatures0, PEEK_SIZE_U32, PEEK_SIZE_U64};
use vmmdev_protocol::status::Status;
use vmmdev_svc_clipboard::{Content, Format, HostError};

fn text(s: &str) -> Content {
    Content {
        text: Some(s.into()),
        ..Content::default()
    }
}

#[test]
fn report_features_answers_context_ids_and_needs_bit_63() {
    let f = Fixture::bidirectional();
    let guest = f.connect();
    let outcome = guest.call(
        Function::REPORT_FEATURES,
        vec![Parm::U64(1), Parm::U64(1 << 63)],
    );
    assert_eq!(Status(outcome.status), Status::VINF_SUCCESS);
    assert_eq!(
        outcome.params[0].as_u64(),
        Some(HostFeatures0::CONTEXT_ID.bits())
    );
    assert_eq!(outcome.params[1].as_u64(), Some(0));
    assert_eq!(
        guest.status(Function::REPORT_FEATURES, vec![Parm::U64(1), Parm::U64(0)]),
        Status::VERR_INVALID_PARAMETER
    );
    let query = guest.call(
        Function::QUERY_FEATURES,
        vec![Parm::U64(0), Parm::U64(1 << 63)],
    );
    assert_eq!(
        query.params[0].as_u64(),
        Some(HostFeatures0::CONTEXT_ID.bits())
    );
}

#[test]
fn new_client_finds_the_host_formats_queued() {
    let f = Fixture::bidirectional();
    f.host().set_content(&text("x")).expect("set");
    let guest = f.connect();
    guest.report_features();
    assert_eq!(
        guest.peek(),
        (Status::VINF_SUCCESS, 3, 2, [PEEK_SIZE_U32, PEEK_SIZE_U32])
    );
    assert_eq!(guest.get_formats(), (Status::VINF_SUCCESS, 1));
    assert_eq!(guest.peek().0, Status::VERR_TRY_AGAIN);
}

#[test]
fn host_text_reaches_a_parked_peek_and_reads_as_utf16_crlf() {
    let f = Fixture::bidirectional();
    let guest = f.modern();
    let (_, parked) = guest.peek_wait();
    assert!(parked.recv_timeout(QUIET).is_err(), "nothing queued yet");
    f.host().set_content(&text("Grüße\n世界")).expect("set");
    let peeked = decode_peek(parked.recv_timeout(DEADLINE).expect("woken"));
    assert_eq!(
        peeked,
        (Status::VINF_SUCCESS, 3, 2, [PEEK_SIZE_U32, PEEK_SIZE_U32])
    );
    assert_eq!(guest.get_formats(), (Status::VINF_SUCCESS, 1));
    let wire = utf16("Grüße\r\n世界\0");
    let (status, bytes, size) = guest.read(1, 4096);
    assert_eq!(status, Status::VINF_SUCCESS);
    assert_eq!(bytes, wire);
    assert_eq!(size as usize, wire.len());
}

#[test]
fn small_buffer_reports_the_size_and_the_retry_succeeds() {
    let f = Fixture::bidirectional();
    let guest = f.modern();
    f.host().set_content(&text("hello world")).expect("set");
    let (status, bytes, size) = guest.read(1, 4);
    assert_eq!(status, Status::VINF_BUFFER_OVERFLOW);
    assert_eq!(bytes.len(), 4);
    assert_eq!(size as usize, utf16("hello world\0").len());
    let (status, bytes, _) = guest.read(1, size as usize);
    assert_eq!(
        status,
        Status::VINF_SUCCESS,
        "an exactly fitting buffer is no overflow"
    );
    assert_eq!(bytes, utf16("hello world\0"));
}

#[test]
fn format_the_host_lacks_reads_as_size_zero() {
    let f = Fixture::bidirectional();
    let guest = f.modern();
    f.host().set_content(&text("x")).expect("set");
    assert_eq!(guest.read(4, 64), (Status::VINF_SUCCESS, Vec::new(), 0));
    assert_eq!(
        guest.read(3, 64).0,
        Status::VERR_INVALID_PARAMETER,
        "two bits"
    );
}

fn guest_answers_one_read(guest: &Guest, data: &[u8]) -> (u64, u32) {
    let (_, parked) = guest.peek_wait();
    let (status, id, _, sizes) = decode_peek(parked.recv_timeout(DEADLINE).expect("request"));
    assert_eq!((status, id), (Status::VINF_SUCCESS, 5));
    assert_eq!(sizes, [PEEK_SIZE_U64, PEEK_SIZE_U32]);
    let (status, context, format) = guest.get_read_cid();
    assert_eq!(status, Status::VINF_SUCCESS);
    assert_eq!(guest.write(context, format, data), Status::VINF_SUCCESS);
    (context, format)
}

#[test]
fn guest_text_reaches_the_host_through_read_data_cid() {
    let f = Fixture::bidirectional();
    let guest = f.modern();
    assert_eq!(guest.report_formats(1), Status::VINF_SUCCESS);
    let mut host = f.host();
    let reader = std::thread::spawn(move || host.read(Format::Text, Duration::from_secs(5)));
    let (_, format) = guest_answers_one_read(&guest, &utf16("from the guest\r\nß\0"));
    assert_eq!(format, 1);
    let read = reader.join().expect("reader").expect("read");
    assert_eq!(read.data.as_deref(), Some("from the guest\nß".as_bytes()));
    // The answer stays as the host content, so a second read needs no guest round trip.
    assert_eq!(
        f.host().read_host(Format::Text).expect("read"),
        Some("from the guest\nß".as_bytes().to_vec())
    );
}

#[test]
fn legacy_client_gets_read_data_and_answers_by_format() {
    let f = Fixture::bidirectional();
    let guest = f.legacy();
    assert_eq!(guest.report_formats(4), Status::VINF_SUCCESS);
    let mut host = f.host();
    let reader = std::thread::spawn(move || host.read(Format::Html, Duration::from_secs(5)));
    let outcome = guest.call(Function::MSG_OLD_GET_WAIT, vec![Parm::U32(0), Parm::U32(0)]);
    assert_eq!(Status(outcome.status), Status::VINF_SUCCESS);
    assert_eq!(
        outcome.params[0].as_u32(),
        Some(2),
        "READ_DATA, not READ_DATA_CID"
    );
    assert_eq!(outcome.params[1].as_u32(), Some(4));
    assert_eq!(
        guest.status(
            Function::DATA_WRITE,
            vec![Parm::U64(1), Parm::U32(4), bytes_in(b"<b>x</b>\0")]
        ),
        Status::VERR_WRONG_PARAMETER_COUNT,
        "a legacy client writes two parameters"
    );
    assert_eq!(
        guest.status(
            Function::DATA_WRITE,
            vec![Parm::U32(4), bytes_in(b"<b>x</b>\0")]
        ),
        Status::VINF_SUCCESS
    );
    let read = reader.join().expect("reader").expect("read");
    assert_eq!(read.data.as_deref(), Some(&b"<b>x</b>"[..]));
}

#[test]
fn legacy_write_without_a_request_is_an_invalid_context() {
    let f = Fixture::bidirectional();
    let guest = f.legacy();
    assert_eq!(
        guest.status(Function::DATA_WRITE, vec![Parm::U32(1), bytes_in(&[0, 0])]),
        Status::VERR_INVALID_CONTEXT
    );
}

#[test]
fn legacy_wait_returns_and_removes_a_queued_message() {
    let f = Fixture::bidirectional();
    let guest = f.legacy();
    f.host().set_content(&text("x")).expect("set");
    let outcome = guest.call(Function::MSG_OLD_GET_WAIT, vec![Parm::U32(0), Parm::U32(0)]);
    assert_eq!(outcome.params[0].as_u32(), Some(3));
    assert_eq!(outcome.params[1].as_u32(), Some(1));
    assert_eq!(guest.peek().0, Status::VERR_TRY_AGAIN, "consumed");
}

#[test]
fn forged_context_is_refused() {
    let f = Fixture::bidirectional();
    let guest = f.modern();
    assert_eq!(
        guest.write(0x7777, 1, &[0, 0]),
        Status::VERR_INVALID_CONTEXT
    );
    assert_eq!(
        guest.write(1 << 40, 1, &[0, 0]),
        Status::VERR_INVALID_CONTEXT
    );
}

#[test]
fn answer_in_another_format_than_requested_is_refused() {
    let f = Fixture::bidirectional();
    let guest = f.modern();
    guest.report_formats(5);
    let mut host = f.host();
    let reader = std::thread::spawn(move || host.read(Format::Text, Duration::from_millis(300)));
    let (_, parked) = guest.peek_wait();
    parked.recv_timeout(DEADLINE).expect("request");
    let (_, context, _) = guest.get_read_cid();
    assert_eq!(
        guest.write(context, 4, b"<p>\0"),
        Status::VERR_INVALID_PARAMETER
    );
    assert!(matches!(
        reader.join().expect("reader"),
        Err(HostError::Timeout(_))
    ));
}

#[test]
fn empty_answer_means_no_data() {
    let f = Fixture::bidirectional();
    let guest = f.modern();
    guest.report_formats(1);
    let mut host = f.host();
    let reader = std::thread::spawn(move || host.read(Format::Text, Duration::from_secs(5)));
    guest_answers_one_read(&guest, &[]);
    assert_eq!(reader.join().expect("reader").expect("read").data, None);
}

#[test]
fn second_parked_wait_is_busy() {
    let f = Fixture::bidirectional();
    let guest = f.modern();
    let (_, _first) = guest.peek_wait();
    let second = guest.call(Function::MSG_PEEK_WAIT, peek_params());
    assert_eq!(Status(second.status), Status::VERR_RESOURCE_BUSY);
    let legacy = guest.call(Function::MSG_OLD_GET_WAIT, vec![Parm::U32(0), Parm::U32(0)]);
    assert_eq!(Status(legacy.status), Status::VERR_RESOURCE_BUSY);
}

#[test]
fn cancel_completes_a_parked_peek_with_canceled() {
    let f = Fixture::bidirectional();
    let guest = f.modern();
    let (_, parked) = guest.peek_wait();
    assert_eq!(
        guest.status(Function::MSG_CANCEL, vec![]),
        Status::VINF_SUCCESS
    );
    let (status, id, _, _) = decode_peek(parked.recv_timeout(DEADLINE).expect("cancelled"));
    assert_eq!((status, id), (Status::VINF_TRY_AGAIN, 4));
    let (_, again) = guest.peek_wait();
    assert!(
        again.recv_timeout(QUIET).is_err(),
        "a new wait parks, not busy"
    );
}

#[test]
fn cancel_completes_a_parked_legacy_wait_with_canceled() {
    let f = Fixture::bidirectional();
    let guest = f.legacy();
    let (_, parked) = guest.submit(Function::MSG_OLD_GET_WAIT, vec![Parm::U32(0), Parm::U32(0)]);
    assert_eq!(
        guest.status(Function::MSG_CANCEL, vec![]),
        Status::VINF_SUCCESS
    );
    let outcome = parked.recv_timeout(DEADLINE).expect("cancelled");
    assert_eq!(Status(outcome.status), Status::VINF_SUCCESS);
    assert_eq!(outcome.params[0].as_u32(), Some(4));
}

#[test]
fn cancel_with_nothing_parked_is_not_found_and_takes_no_parameters() {
    let f = Fixture::bidirectional();
    let guest = f.modern();
    assert_eq!(
        guest.status(Function::MSG_CANCEL, vec![]),
        Status::VWRN_NOT_FOUND
    );
    assert_eq!(
        guest.status(Function::MSG_CANCEL, vec![Parm::U32(0)]),
        Status::VERR_WRONG_PARAMETER_COUNT
    );
}

#[test]
fn driver_cancel_of_a_parked_peek_frees_the_slot() {
    let f = Fixture::bidirectional();
    let guest = f.modern();
    let (id, _parked) = guest.peek_wait();
    f.hgcm.cancel(id).expect("cancelled");
    let (_, again) = guest.peek_wait();
    assert!(
        again.recv_timeout(QUIET).is_err(),
        "parks instead of VERR_RESOURCE_BUSY"
    );
}

#[test]
fn msg_get_checks_the_expected_id_count_and_types() {
    let f = Fixture::bidirectional();
    let guest = f.modern();
    assert_eq!(guest.get_formats().0, Status::VERR_TRY_AGAIN, "empty queue");
    f.host().set_content(&text("x")).expect("set");
    let status = |params| guest.status(Function::MSG_GET, params);
    assert_eq!(
        status(vec![Parm::U64(5), Parm::U32(0)]),
        Status::VERR_MISMATCH
    );
    assert_eq!(
        status(vec![Parm::U32(3)]),
        Status::VERR_WRONG_PARAMETER_COUNT
    );
    assert_eq!(
        status(vec![Parm::U32(u32::MAX), bytes_in(b"x")]),
        Status::VERR_WRONG_PARAMETER_TYPE
    );
    assert_eq!(
        guest.get_formats(),
        (Status::VINF_SUCCESS, 1),
        "still queued"
    );
}

#[test]
fn peek_checks_its_parameters() {
    let f = Fixture::bidirectional();
    let guest = f.modern();
    let status = |params| guest.status(Function::MSG_PEEK_NOWAIT, params);
    assert_eq!(
        status(vec![Parm::U64(0)]),
        Status::VERR_WRONG_PARAMETER_COUNT
    );
    assert_eq!(
        status(vec![Parm::U64(0), Parm::U64(0)]),
        Status::VERR_WRONG_PARAMETER_TYPE
    );
    assert_eq!(
        status(vec![bytes_in(b""), Parm::U32(0)]),
        Status::VERR_WRONG_PARAMETER_TYPE
    );
    // Many size slots are fine; the extra ones stay zero.
    f.host().set_content(&text("x")).expect("set");
    let mut params = vec![Parm::U32(0), Parm::U32(0)];
    params.extend((0..6).map(|_| Parm::U32(7)));
    let outcome = guest.call(Function::MSG_PEEK_NOWAIT, params);
    let values: Vec<u32> = outcome
        .params
        .iter()
        .map(|p| p.as_u32().expect("u32"))
        .collect();
    assert_eq!(values, [3, 2, PEEK_SIZE_U32, PEEK_SIZE_U32, 0, 0, 0, 0]);
}

#[test]
fn peek_with_a_stale_session_reports_the_restore() {
    let f = Fixture::bidirectional();
    let guest = f.modern();
    let outcome = guest.call(
        Function::MSG_PEEK_NOWAIT,
        vec![Parm::U64(12345), Parm::U32(0)],
    );
    assert_eq!(Status(outcome.status), Status::VERR_VM_RESTORED);
    let session = outcome.params[0].as_u64().expect("u64");
    assert_ne!(session, 12345);
    let again = guest.call(
        Function::MSG_PEEK_NOWAIT,
        vec![Parm::U64(session), Parm::U32(0)],
    );
    assert_eq!(
        Status(again.status),
        Status::VERR_TRY_AGAIN,
        "the current session passes"
    );
}

#[test]
fn unknown_and_transfer_functions_are_not_implemented() {
    let f = Fixture::bidirectional();
    let guest = f.modern();
    for function in [5, 11, 24, 28, 29, 1000] {
        assert_eq!(
            guest.status(Function(function), vec![Parm::U32(0), Parm::U32(0)]),
            Status::VERR_NOT_IMPLEMENTED,
            "function {function}"
        );
    }
}

#[test]
fn error_report_is_accepted_with_two_parameters() {
    let f = Fixture::bidirectional();
    let guest = f.modern();
    assert_eq!(
        guest.status(
            Function::ERROR,
            vec![Parm::U64(0), Parm::U32((-37i32) as u32)]
        ),
        Status::VINF_SUCCESS
    );
    assert_eq!(
        guest.status(Function::ERROR, vec![Parm::U64(0)]),
        Status::VERR_INVALID_PARAMETER
    );
}

#[test]
fn html_and_bitmap_travel_in_wire_encodings_both_ways() {
    let f = Fixture::bidirectional();
    let guest = f.modern();
    let dib = tiny_dib();
    let mut bmp = b"BM".to_vec();
    bmp.extend_from_slice(&((dib.len() + 14) as u32).to_le_bytes());
    bmp.extend_from_slice(&[0; 4]);
    bmp.extend_from_slice(&54u32.to_le_bytes());
    bmp.extend_from_slice(&dib);
    let content = Content {
        text: None,
        html: Some("<i>ß</i>".into()),
        bitmap: Some(bmp.clone()),
    };
    f.host().set_content(&content).expect("set");
    assert_eq!(guest.get_formats(), (Status::VINF_SUCCESS, 6));
    assert_eq!(guest.read(4, 256).1, "<i>ß</i>\0".as_bytes());
    assert_eq!(guest.read(2, 256).1, dib, "the DIB without the file header");

    guest.report_formats(2);
    let mut host = f.host();
    let reader = std::thread::spawn(move || host.read(Format::Bitmap, Duration::from_secs(5)));
    guest_answers_one_read(&guest, &dib);
    let read = reader.join().expect("reader").expect("read");
    assert_eq!(read.data, Some(bmp), "the host gets a BMP file");
}

/// A 2x1 24-bit DIB.
pub fn tiny_dib() -> Vec<u8> {
    let mut dib = Vec::new();
    dib.extend_from_slice(&40u32.to_le_bytes());
    dib.extend_from_slice(&2i32.to_le_bytes());
    dib.extend_from_slice(&1i32.to_le_bytes());
    dib.extend_from_slice(&1u16.to_le_bytes());
    dib.extend_from_slice(&24u16.to_le_bytes());
    dib.extend_from_slice(&[0; 24]);
    dib.extend_from_slice(&[0, 0, 255, 0, 255, 0, 0, 0]);
    dib
}

#[test]
fn content_stores_a_wire_dib_as_a_bmp_file_and_gives_the_dib_back() {
    let mut content = Content::default();
    content
        .set_wire_bytes(Format::Bitmap, &tiny_dib())
        .expect("valid");
    let bmp = content.bitmap.clone().expect("stored");
    assert_eq!(&bmp[..2], b"BM");
    assert_eq!(content.wire_bytes(Format::Bitmap), Ok(Some(tiny_dib())));
}

#[test]
fn malformed_guest_bitmap_fails_the_host_read() {
    let f = Fixture::bidirectional();
    let guest = f.modern();
    guest.report_formats(2);
    let mut host = f.host();
    let reader = std::thread::spawn(move || host.read(Format::Bitmap, Duration::from_secs(5)));
    let (_, parked) = guest.peek_wait();
    parked.recv_timeout(DEADLINE).expect("request");
    let (_, context, format) = guest.get_read_cid();
    assert_eq!(
        guest.write(context, format, b"not a dib"),
        Status::VERR_INVALID_PARAMETER
    );
    assert!(matches!(
        reader.join().expect("reader"),
        Err(HostError::Refused {
            status: Status::VERR_INVALID_PARAMETER,
            ..
        })
    ));
}

#[test]
fn empty_report_from_a_non_owner_is_ignored() {
    let f = Fixture::bidirectional();
    let owner = f.modern();
    let other = f.modern();
    owner.report_formats(1);
    assert_eq!(other.report_formats(0), Status::VINF_SUCCESS);
    let state = f.host().state().expect("state");
    assert!(state.guest_owns());
    assert_eq!(state.guest_formats.bits(), 1);
    owner.report_formats(0);
    assert!(!f.host().state().expect("state").guest_owns());
}
