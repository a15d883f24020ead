//! What one tick of [`DesktopSync`](vmmdev_svc_clipboard::DesktopSync) costs with the desktop
//! backend, against a real X server (Xvfb), for what the desktop clipboard holds: nothing, 1 KiB and
//! 1 MiB of text copied by another X client (xclip), and 1 MiB the service put there itself.
//!
//! A tick is what the sync thread does when nothing changed: SYNC_HOST and QUERY_STATE. On X11 the
//! backend learns of copies from XFixes owner events, so a quiet tick reads no clipboard data; the
//! first tick after a copy loads the content (timed apart). Each size is timed over many ticks; the
//! report gives p50, p99 and the share of one CPU the sync would take at the binaries' interval
//! (200 ms), counting wall time (the X server and xclip work meanwhile too).
//!
//! Run: `cargo bench -p vmmdev-svc-clipboard --features desktop --bench desktop_sync` (needs Xvfb
//! and xclip: `tests/scripts/install-desktop-clipboard-deps.sh`).

use std::time::{Duration, Instant};

use vmmdev_hgcm::{Hgcm, HgcmConfig, HostCallError, Parm};
use vmmdev_svc_clipboard::{ClipboardHost, Content, SERVICE_NAME};
use vmmdev_test_xvfb::{Xvfb, available};

/// The binaries' sync interval.
const INTERVAL: Duration = Duration::from_millis(200);

type Host = ClipboardHost<Box<dyn FnMut(u32, &mut [Parm]) -> Result<i32, HostCallError>>>;

fn host(hgcm: &Hgcm) -> Host {
    let hgcm = hgcm.clone();
    ClipboardHost::new(Box::new(move |function, params: &mut [Parm]| {
        hgcm.host_call(SERVICE_NAME, function, params)
    }))
}

/// Times `rounds` ticks; returns the sorted latencies.
fn ticks(host: &mut Host, rounds: usize) -> Vec<Duration> {
    let mut times: Vec<Duration> = (0..rounds)
        .map(|_| {
            let start = Instant::now();
            host.sync_host().expect("sync");
            host.state().expect("state");
            start.elapsed()
        })
        .collect();
    times.sort();
    times
}

fn report(case: &str, times: &[Duration]) {
    let p = |q: f64| times[((times.len() - 1) as f64 * q) as usize];
    let mean = times.iter().sum::<Duration>() / times.len() as u32;
    println!(
        "{case:<34} ticks={:>4}  p50={:>9.3} ms  p99={:>9.3} ms  mean={:>9.3} ms  CPU at {} ms: {:.2} %",
        times.len(),
        p(0.5).as_secs_f64() * 1e3,
        p(0.99).as_secs_f64() * 1e3,
        mean.as_secs_f64() * 1e3,
        INTERVAL.as_millis(),
        mean.as_secs_f64() / INTERVAL.as_secs_f64() * 100.0
    );
}

fn main() {
    if !available("desktop_sync bench") {
        return;
    }
    let x = Xvfb::start();
    // SAFETY: set before the service (and its X connection) starts, while this program has no
    // other thread.
    unsafe { std::env::set_var("DISPLAY", x.display()) };
    let hgcm = Hgcm::new(HgcmConfig::default());
    hgcm.register_builtin(
        vmmdev_svc_clipboard::clipboard_entry,
        "mode=bidirectional,backend=desktop",
    )
    .expect("the desktop backend opens");
    let mut host = host(&hgcm);

    report("empty desktop clipboard", &ticks(&mut host, 500));
    for (case, size, rounds) in [
        ("1 KiB copied by xclip", 1 << 10, 500),
        ("1 MiB copied by xclip", 1 << 20, 100),
    ] {
        let text = "x".repeat(size);
        x.copy("UTF8_STRING", text.as_bytes());
        // The first tick takes the change (the service loads the content); the rest are the
        // steady state.
        let start = Instant::now();
        host.sync_host().expect("sync");
        println!(
            "{case:<34} first tick, loading the copy: {:.3} ms",
            start.elapsed().as_secs_f64() * 1e3
        );
        report(case, &ticks(&mut host, rounds));
    }
    host.set_content(&Content {
        text: Some("y".repeat(1 << 20)),
        ..Content::default()
    })
    .expect("set");
    report("1 MiB set by the service itself", &ticks(&mut host, 100));
    hgcm.shutdown();
}
