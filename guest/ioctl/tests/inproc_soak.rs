//! No leak under a long session, through the whole stack: the guest libraries, the driver's ioctl
//! layer, the device model (requests parsed out of guest memory, completions, cancels), the HGCM
//! framework and the guest-properties and clipboard services. The same round of work, repeated, must
//! leave the live heap where the first rounds left it (counted by `vmmdev_live_heap`, so this binary
//! holds a single test). The warm-up rounds fill what is bounded by design: the device's request log
//! and the service's queue of recent property changes.

mod support;

use std::time::Duration;

use support::inproc_driver::InprocDriver;
use vmmdev_guest_ioctl::Device;
use vmmdev_guest_ioctl::clipboard::{ClipboardClient, Format, Formats, HostEvent, encoding};
use vmmdev_guest_ioctl::guest_props::{GuestPropClient, GuestPropError, PropertyFlags};
use vmmdev_hgcm::{Hgcm, HgcmConfig, Parm};
use vmmdev_live_heap::{CountingAllocator, growth_over_rounds};
use vmmdev_svc_clipboard::{ClipboardHost, Content};

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Rounds run before the baseline is taken: enough requests to fill the device's request log.
const WARM_UP_ROUNDS: usize = 60;
/// Rounds run after it.
const MEASURED_ROUNDS: usize = 120;
/// Growth allowed over the measured rounds: less than one small allocation per round.
const ALLOWED_GROWTH: isize = 1024;
/// How long a wait that must time out waits (the driver then cancels the call in the device).
const SHORT_WAIT: Duration = Duration::from_millis(5);
/// How long the host waits for the guest's clipboard answer.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);

fn device() -> Device<InprocDriver> {
    let hgcm = Hgcm::new(HgcmConfig::default());
    hgcm.register_builtin(vmmdev_svc_guest_props::guest_props_entry, "")
        .expect("register the guest properties service");
    hgcm.register_builtin(vmmdev_svc_clipboard::clipboard_entry, "mode=bidirectional")
        .expect("register the clipboard service");
    Device::with_transport(InprocDriver::new(hgcm)).expect("version handshake")
}

fn clipboard_host(
    device: &Device<InprocDriver>,
) -> ClipboardHost<impl FnMut(u32, &mut [Parm]) -> Result<i32, vmmdev_hgcm::HostCallError> + '_> {
    let hgcm = device.transport().vm.device.hgcm();
    ClipboardHost::new(move |function, params: &mut [Parm]| {
        hgcm.host_call(vmmdev_svc_clipboard::SERVICE_NAME, function, params)
    })
}

/// A client's day with guest properties: writes, reads, enumeration, deletion, a wait answered from
/// the change queue and a wait that times out (cancelled in the device), then disconnect.
fn guest_properties_round(device: &Device<InprocDriver>, index: usize) {
    let props = GuestPropClient::connect(device).expect("connect");
    let mut last = 0;
    for i in 0..10 {
        let name = format!("/Soak/{i}");
        props
            .set(
                &name,
                &format!("value {index}.{i}"),
                PropertyFlags::TRANSIENT,
            )
            .expect("set");
        last = props.get(&name).expect("get").expect("exists").timestamp;
    }
    assert_eq!(props.enumerate(&["/Soak/*"]).expect("enumerate").len(), 10);
    for i in 0..5 {
        props.delete(&format!("/Soak/{i}")).expect("delete");
    }
    let change = props.wait("/Soak/*", last, None).expect("a queued change");
    assert!(
        change.deleted,
        "the next change after the last set is a deletion"
    );
    let err = props
        .wait("/Soak/Never", 0, Some(SHORT_WAIT))
        .expect_err("nothing sets it");
    assert!(matches!(err, GuestPropError::TimedOut { .. }), "{err:?}");
    props.disconnect().expect("disconnect");
}

/// A clipboard client's day: host text read by the guest, guest HTML read by the host, then
/// disconnect.
fn clipboard_round(device: &Device<InprocDriver>, index: usize) {
    let text = format!("round {index}: {}\n", "grüße ".repeat(2000));
    clipboard_host(device)
        .set_content(&Content {
            text: Some(text.clone()),
            ..Content::default()
        })
        .expect("host set");
    let client = ClipboardClient::connect(device).expect("connect");
    let wire = client
        .read(Format::UnicodeText)
        .expect("read")
        .expect("text");
    assert_eq!(encoding::text_from_wire(&wire).expect("decodes"), text);

    client.report_formats(Formats::HTML).expect("report");
    let html = format!("<p>guest {index}</p>");
    let read = std::thread::scope(|scope| {
        let reader = scope.spawn(|| {
            clipboard_host(device).read_guest(vmmdev_svc_clipboard::Format::Html, ANSWER_WITHIN)
        });
        let wire = encoding::to_wire(Format::Html, html.as_bytes()).expect("encodable");
        loop {
            match client
                .next_event(Some(ANSWER_WITHIN))
                .expect("host message")
            {
                HostEvent::DataRequest(request) => {
                    client.write(&request, &wire).expect("answer");
                    break;
                }
                HostEvent::Formats(_) | HostEvent::Canceled => {}
                HostEvent::Quit => panic!("the service closed the client"),
            }
        }
        reader.join().expect("host reader").expect("host read")
    });
    assert_eq!(read, html.as_bytes());
    client.disconnect().expect("disconnect");
}

#[test]
fn repeated_rounds_through_device_and_services_leave_the_live_heap_unchanged() {
    let device = device();
    let growth = growth_over_rounds(WARM_UP_ROUNDS, MEASURED_ROUNDS, |index| {
        guest_properties_round(&device, index);
        clipboard_round(&device, index);
    });
    assert!(
        growth <= ALLOWED_GROWTH,
        "{MEASURED_ROUNDS} rounds after {WARM_UP_ROUNDS} warm-up rounds left {growth} more bytes \
         allocated (allowed: {ALLOWED_GROWTH})"
    );
}
