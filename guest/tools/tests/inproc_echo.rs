//! The echo client and the ioctl library end to end, without a VM: a test transport plays the
//! vboxguest driver's ioctl layer on top of the in-process guest (`vmmdev-guest-inproc`), which
//! drives the real device model and HGCM framework with the Echo service registered.

#[path = "../../ioctl/tests/support/inproc_driver.rs"]
mod inproc_driver;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use inproc_driver::InprocDriver;
use vmmdev_guest_ioctl::{CallOptions, Device, Error, Status};
use vmmdev_guest_tools::echo::{self, EchoClient, WakeReason};
use vmmdev_hgcm::{Hgcm, HgcmConfig};

fn device() -> Device<InprocDriver> {
    let hgcm = Hgcm::new(HgcmConfig::default());
    hgcm.register_builtin(vmmdev_svc_echo::echo_entry, "")
        .expect("register Echo");
    Device::with_transport(InprocDriver::new(hgcm)).expect("version handshake")
}

#[test]
fn client_constants_match_the_echo_service() {
    assert_eq!(echo::SERVICE_NAME, vmmdev_svc_echo::SERVICE_NAME);
    assert_eq!(echo::function::ECHO, vmmdev_svc_echo::FN_ECHO);
    assert_eq!(echo::function::WAIT, vmmdev_svc_echo::FN_WAIT);
    assert_eq!(echo::function::NOOP, vmmdev_svc_echo::FN_NOOP);
    assert_eq!(
        WakeReason::from(vmmdev_svc_echo::WAKE_REASON_HOST),
        WakeReason::Host
    );
    assert_eq!(
        WakeReason::from(vmmdev_svc_echo::WAKE_REASON_TIMEOUT),
        WakeReason::Timeout
    );
}

#[test]
fn echo_returns_the_sent_bytes_through_the_device() {
    let device = device();
    let client = EchoClient::connect(&device, echo::SERVICE_NAME).unwrap();
    let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(client.echo(&data).unwrap(), data);
    client.disconnect().unwrap();
}

#[test]
fn empty_echo_returns_nothing() {
    let device = device();
    let client = EchoClient::connect(&device, echo::SERVICE_NAME).unwrap();
    assert_eq!(client.echo(&[]).unwrap(), Vec::<u8>::new());
}

#[test]
fn connect_to_an_unknown_service_reports_the_host_status() {
    let device = device();
    let err = EchoClient::connect(&device, "NoSuchSvc").unwrap_err();
    assert_eq!(
        err.host_status(),
        Some(Status::VERR_HGCM_SERVICE_NOT_FOUND),
        "{err}"
    );
}

#[test]
fn noop_completes() {
    let device = device();
    let client = EchoClient::connect(&device, echo::SERVICE_NAME).unwrap();
    client.noop().unwrap();
}

#[test]
fn service_timeout_ends_a_wait_with_the_timeout_reason() {
    let device = device();
    let client = EchoClient::connect(&device, echo::SERVICE_NAME).unwrap();
    let reason = client
        .wait(Some(Duration::from_millis(20)), CallOptions::default())
        .unwrap();
    assert_eq!(reason, WakeReason::Timeout);
}

#[test]
fn driver_timeout_cancels_a_wait_and_the_client_keeps_working() {
    let device = device();
    let client = EchoClient::connect(&device, echo::SERVICE_NAME).unwrap();
    let err = client
        .wait(None, CallOptions::with_timeout(Duration::from_millis(50)))
        .unwrap_err();
    assert!(matches!(err, Error::TimedOut { .. }), "{err:?}");
    assert_eq!(client.echo(b"after").unwrap(), b"after");
}

#[test]
fn interrupted_wait_is_cancelled_and_the_client_keeps_working() {
    let device = device();
    let client = EchoClient::connect(&device, echo::SERVICE_NAME).unwrap();
    let signal = Arc::clone(&device.transport().signal);
    let raiser = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        signal.store(true, Ordering::SeqCst);
    });
    let err = client.wait(None, CallOptions::default()).unwrap_err();
    raiser.join().unwrap();
    device.transport().signal.store(false, Ordering::SeqCst);
    assert!(matches!(err, Error::Interrupted { .. }), "{err:?}");
    assert_eq!(client.echo(b"after").unwrap(), b"after");
}

#[test]
fn host_wake_completes_a_wait_with_the_host_reason() {
    let device = device();
    let client = EchoClient::connect(&device, echo::SERVICE_NAME).unwrap();
    std::thread::scope(|scope| {
        let waiter = scope.spawn(|| client.wait(None, CallOptions::default()));
        let hgcm = device.transport().vm.device.hgcm();
        let mut woken = 0;
        while woken == 0 && !waiter.is_finished() {
            std::thread::sleep(Duration::from_millis(5));
            let mut params = [vmmdev_hgcm::Parm::U32(0)];
            hgcm.host_call(
                vmmdev_svc_echo::SERVICE_NAME,
                vmmdev_svc_echo::HOST_FN_WAKE_ALL,
                &mut params,
            )
            .unwrap();
            woken = params[0].as_u32().unwrap_or(0);
        }
        assert_eq!(waiter.join().unwrap().unwrap(), WakeReason::Host);
    });
}
