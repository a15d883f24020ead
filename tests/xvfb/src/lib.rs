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
//!     let x = Xvfb::start();
//!     x.copy("UTF8_STRING", b"hello");
//!     assert_eq!(x.paste("UTF8_STRING"), b"hello");
//! }
//! ```

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdout, Command, Stdio};
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

/// An Xvfb server on a display of its own, stopped on drop (which also ends the xclip processes
/// serving selections on it).
#[derive(Debug)]
pub struct Xvfb {
    child: Child,
    display: String,
    /// Xvfb's standard output, kept open so that the server never writes into a closed pipe.
    _output: BufReader<ChildStdout>,
}

impl Xvfb {
    /// Starts Xvfb on a free display, which the server picks and reports once it accepts
    /// connections (`-displayfd`); panics if it does not come up.
    pub fn start() -> Xvfb {
        let mut child = Command::new("Xvfb")
            .args([
                "-displayfd",
                "1",
                "-nolisten",
                "tcp",
                "-screen",
                "0",
                "64x64x24",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("Xvfb starts");
        let mut output = BufReader::new(child.stdout.take().expect("Xvfb's standard output"));
        let mut number = String::new();
        let read = output.read_line(&mut number);
        let number = number.trim().to_owned();
        let server = Xvfb {
            child,
            display: format!(":{number}"),
            _output: output,
        };
        assert!(
            read.is_ok() && !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit()),
            "Xvfb did not report a display (it printed {number:?})"
        );
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
    /// Stops the server with SIGTERM, so it removes its lock file and socket (a killed one leaves
    /// them behind), and kills it if it has not gone after a while.
    fn drop(&mut self) {
        if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: kill(2) with a valid signal number only sends a signal; `pid` is our own
            // child, not yet reaped, so it cannot name another process.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let deadline = Instant::now() + DEADLINE;
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
