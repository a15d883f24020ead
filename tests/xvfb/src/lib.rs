//! A private X server (Xvfb) with xclip playing the desktop application that copies and pastes, for
//! the tests of the host's and the guest's desktop clipboards.
//!
//! Tests call [`available`] first and return early, saying SKIPPED, where Xvfb or xclip is missing
//! (`tests/scripts/install-desktop-clipboard-deps.sh` installs both; the README's test command runs
//! it).
//!
//! ```no_run
//! use vmmdev_test_xvfb::{Xvfb, available};
//!
//! if available("example") {
//!     let x = Xvfb::start(0);
//!     x.copy("UTF8_STRING", b"hello");
//!     assert_eq!(x.paste("UTF8_STRING"), b"hello");
//! }
//! ```

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long the server and xclip get to come up.
const DEADLINE: Duration = Duration::from_secs(10);

/// Whether `program` is on the `PATH`.
fn installed(program: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).any(|dir| dir.join(program).is_file())
}

/// Whether Xvfb and xclip are installed; if not, prints `SKIPPED <test>: …` with what is missing.
pub fn available(test: &str) -> bool {
    let missing: Vec<&str> = ["Xvfb", "xclip"]
        .into_iter()
        .filter(|program| !installed(program))
        .collect();
    if missing.is_empty() {
        return true;
    }
    eprintln!(
        "SKIPPED {test}: {} not installed (tests/scripts/install-desktop-clipboard-deps.sh)",
        missing.join(" and ")
    );
    false
}

/// An Xvfb server on a display of its own, killed on drop (which also ends the xclip processes
/// serving selections on it).
#[derive(Debug)]
pub struct Xvfb {
    child: Child,
    display: String,
}

impl Xvfb {
    /// Starts Xvfb on a display derived from this process and `slot` (one test binary can run a
    /// few servers at once with different slots, 0 to 3); panics if it does not come up.
    pub fn start(slot: u32) -> Xvfb {
        let display = format!(":{}", 300 + (std::process::id() % 300) * 4 + slot % 4);
        let child = Command::new("Xvfb")
            .args([
                display.as_str(),
                "-nolisten",
                "tcp",
                "-screen",
                "0",
                "64x64x24",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("Xvfb starts");
        let server = Xvfb { child, display };
        let socket = format!("/tmp/.X11-unix/X{}", &server.display[1..]);
        let deadline = Instant::now() + DEADLINE;
        while !Path::new(&socket).exists() {
            assert!(
                Instant::now() < deadline,
                "Xvfb did not come up on {}",
                server.display
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    /// The display, for `DISPLAY`.
    pub fn display(&self) -> &str {
        &self.display
    }

    /// An X application copies `data` as `target`. Returns once xclip (which keeps serving it in
    /// the background) pastes it back.
    pub fn copy(&self, target: &str, data: &[u8]) {
        let mut child = Command::new("xclip")
            .args(["-selection", "clipboard", "-i", "-t", target])
            .env("DISPLAY", &self.display)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("xclip runs");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(data)
            .expect("write to xclip");
        assert!(child.wait().expect("xclip forks and exits").success());
        // The forked xclip takes the selection a moment later.
        let deadline = Instant::now() + DEADLINE;
        while self.paste(target) != data {
            assert!(Instant::now() < deadline, "xclip never took the clipboard");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// An X application pastes `target` (empty if the clipboard does not offer it).
    pub fn paste(&self, target: &str) -> Vec<u8> {
        Command::new("xclip")
            .args(["-selection", "clipboard", "-o", "-t", target])
            .env("DISPLAY", &self.display)
            .stderr(Stdio::null())
            .output()
            .expect("xclip runs")
            .stdout
    }

    /// Waits until pasting `target` gives `data`; panics after a while.
    pub fn wait_for(&self, target: &str, data: &[u8]) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let pasted = self.paste(target);
            if pasted == data {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the X clipboard offers {:?} as {target}, not {:?}",
                String::from_utf8_lossy(&pasted),
                String::from_utf8_lossy(data)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Xvfb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
