//! The shared clipboard under a hostile guest, and its format conversions under hostile data.
//!
//! [`run`]: two guest clients calling any function of either protocol with any parameters while
//! the host sets content, changes the mode and asks the guest for data (the asynchronous reads
//! whose answers come back through DATA_WRITE).
//!
//! [`convert`]: the wire decoders on arbitrary bytes, and what the two directions promise each
//! other: text survives the trip to the wire and back (up to the documented normalisation),
//! the wire length is known without converting, HTML and bitmaps round-trip.

use vmmdev_protocol::services::clipboard::SERVICE_NAME;
use vmmdev_protocol::services::clipboard::convert::{
    bmp_to_dib, dib_to_bmp, html_from_wire, html_to_wire, text_from_wire, text_to_wire,
    text_wire_len,
};

use crate::script;
use crate::session::{ROOT, Session, Target, USER_DEVICE};

/// Runs one fuzz input against the service.
pub fn run(input: &[u8]) {
    let target = Target {
        service: SERVICE_NAME,
        requestors: [ROOT, USER_DEVICE],
        frame_text: |bytes| text_to_wire(&String::from_utf8_lossy(bytes)),
        host_functions: |_| true,
    };
    // The smallest data limit, so inputs reach it.
    let session = Session::start(
        vmmdev_svc_clipboard::clipboard_entry,
        "mode=bidirectional,max_data=4096",
        target,
    );
    session.run(&script::decode(input));
}

/// Runs one fuzz input through the conversions.
pub fn convert(input: &[u8]) {
    // Whatever the bytes, the decoders answer.
    let _ = text_from_wire(input);
    let _ = html_from_wire(input);
    let _ = bmp_to_dib(input);

    if let Ok(bmp) = dib_to_bmp(input) {
        match bmp_to_dib(&bmp) {
            Ok(dib) if *dib == *input => {}
            other => panic!("a DIB did not survive the BMP file: {other:?}"),
        }
    }

    let text = String::from_utf8_lossy(input);
    let wire = text_to_wire(&text);
    assert_eq!(
        text_wire_len(&text),
        wire.len(),
        "the announced wire length of {text:?}"
    );
    // A leading U+FFFE encodes as a big-endian byte-order mark: the one text the wire cannot
    // carry (a Unicode noncharacter, never seen in clipboards).
    if !text.starts_with('\u{FFFE}') {
        let until_nul = text.split('\0').next().unwrap_or_default();
        let expected = until_nul
            .strip_prefix('\u{FEFF}')
            .unwrap_or(until_nul)
            .replace("\r\n", "\n");
        assert_eq!(
            text_from_wire(&wire).as_deref(),
            Ok(expected.as_str()),
            "text to the wire and back: {text:?}"
        );
    }

    if !input.starts_with(&[0xFF, 0xFE]) && !input.starts_with(&[0xFE, 0xFF]) {
        let until_nul = input.split(|&b| b == 0).next().unwrap_or_default();
        assert_eq!(
            html_from_wire(&html_to_wire(input)).as_deref(),
            Ok(until_nul),
            "HTML to the wire and back"
        );
    }
}
