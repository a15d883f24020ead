//! The guest desktop's clipboard, reached through the command-line tools desktops ship:
//! `xclip` on X11, `wl-copy` / `wl-paste` (wl-clipboard) on Wayland.
//!
//! Driving the tools instead of speaking X11 or Wayland keeps the static guest binary free of
//! display libraries, and the tools already do the hard part: owning a selection and serving it
//! to pasting applications after the writer is gone (both fork a server process on a copy).
//!
//! [`detect`] picks the tool for the session the bridge runs in: Wayland when `WAYLAND_DISPLAY`
//! is set and wl-clipboard is installed, else X11 when `DISPLAY` is set and xclip is installed.
//! When neither applies, its error says which variable or program is missing.
//!
//! Formats map to MIME types and X11 targets as VirtualBox's X11 code maps them: text is
//! `UTF8_STRING` / `text/plain;charset=utf-8` (with `STRING`, `TEXT` and `text/plain` also read
//! as text), HTML is `text/html`, bitmaps are `image/bmp`. Every call has a time limit, so a
//! clipboard owner that never answers cannot stall the bridge.

use std::ffi::{OsStr, OsString};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use vmmdev_guest_ioctl::clipboard::{Format, Formats};

/// How long one call of a clipboard tool may take before it is killed.
pub const TOOL_TIMEOUT: Duration = Duration::from_secs(5);
/// The most a read of the desktop clipboard returns; larger content is not bridged.
pub const MAX_CONTENT: usize = vmmdev_guest_ioctl::clipboard::MAX_DATA;

/// A clipboard of the guest desktop, in the forms users exchange (UTF-8 text, HTML, BMP files).
pub trait DesktopClipboard: Send + Sync {
    /// Names the clipboard for messages (`X11 (xclip)`).
    fn describe(&self) -> String;
    /// The formats the clipboard offers now (none when it is empty or has no owner).
    fn formats(&self) -> io::Result<Formats>;
    /// Reads the clipboard in `format`; `None` when it has nothing in that format.
    fn read(&self, format: Format) -> io::Result<Option<Vec<u8>>>;
    /// Takes ownership of the clipboard with `data` in `format`.
    fn write(&self, format: Format, data: &[u8]) -> io::Result<()>;
}

/// Why no desktop clipboard can be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no guest desktop clipboard: {0}")]
pub struct NoDesktop(pub String);

/// The desktop session kinds the bridge can serve.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Session {
    /// An X11 session, through `xclip`.
    X11,
    /// A Wayland session, through `wl-copy` and `wl-paste`.
    Wayland,
}

/// The desktop clipboard through its command-line tools.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToolClipboard {
    session: Session,
    /// The session's display (`DISPLAY` or `WAYLAND_DISPLAY`) as detected, passed on to the tools.
    display: OsString,
    /// `xclip`, or `wl-paste`.
    reader: PathBuf,
    /// `xclip`, or `wl-copy`.
    writer: PathBuf,
}

/// Finds the desktop clipboard of the session described by `env` (a variable lookup), with the
/// programs found along `path` (a `PATH` value).
pub fn detect(
    env: impl Fn(&str) -> Option<OsString>,
    path: Option<&OsStr>,
) -> Result<ToolClipboard, NoDesktop> {
    let set = |name: &str| env(name).filter(|value| !value.is_empty());
    let find = |program: &str| path.and_then(|path| find_program(program, path));
    if let Some(display) = set("WAYLAND_DISPLAY") {
        return match (find("wl-paste"), find("wl-copy")) {
            (Some(reader), Some(writer)) => Ok(ToolClipboard {
                session: Session::Wayland,
                display,
                reader,
                writer,
            }),
            _ => Err(NoDesktop(
                "WAYLAND_DISPLAY is set but wl-copy/wl-paste (wl-clipboard) are not installed"
                    .to_owned(),
            )),
        };
    }
    if let Some(display) = set("DISPLAY") {
        return match find("xclip") {
            Some(xclip) => Ok(ToolClipboard {
                session: Session::X11,
                display,
                reader: xclip.clone(),
                writer: xclip,
            }),
            None => Err(NoDesktop(
                "DISPLAY is set but xclip is not installed".to_owned(),
            )),
        };
    }
    Err(NoDesktop(
        "neither WAYLAND_DISPLAY nor DISPLAY is set (no X11 or Wayland session)".to_owned(),
    ))
}

/// The first executable file called `program` in the directories of `path`.
fn find_program(program: &str, path: &OsStr) -> Option<PathBuf> {
    std::env::split_paths(path)
        .map(|directory| directory.join(program))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .is_ok_and(|metadata| metadata.is_file() && metadata.permissions().mode() & 0o111 != 0)
}

impl ToolClipboard {
    /// The session kind.
    pub fn session(&self) -> Session {
        self.session
    }

    /// The environment variable that names the session's display.
    fn display_variable(&self) -> &'static str {
        match self.session {
            Session::X11 => "DISPLAY",
            Session::Wayland => "WAYLAND_DISPLAY",
        }
    }

    /// Runs `program` of this session's tools (see [`run`]).
    fn run(
        &self,
        program: &Path,
        arguments: &[&str],
        input: Option<&[u8]>,
    ) -> io::Result<Option<Vec<u8>>> {
        let mut command = Command::new(program);
        command
            .args(arguments)
            .env(self.display_variable(), &self.display);
        run(command, input)
    }

    /// The MIME type or X11 target a format is written and read as.
    fn target(&self, format: Format) -> &'static str {
        match (self.session, format) {
            (Session::X11, Format::UnicodeText) => "UTF8_STRING",
            (Session::Wayland, Format::UnicodeText) => "text/plain;charset=utf-8",
            (_, Format::Html) => "text/html",
            (_, Format::Bitmap) => "image/bmp",
        }
    }
}

impl DesktopClipboard for ToolClipboard {
    fn describe(&self) -> String {
        match self.session {
            Session::X11 => format!("X11 ({})", self.reader.display()),
            Session::Wayland => format!(
                "Wayland ({}, {})",
                self.writer.display(),
                self.reader.display()
            ),
        }
    }

    fn formats(&self) -> io::Result<Formats> {
        let arguments: &[&str] = match self.session {
            Session::X11 => &["-selection", "clipboard", "-o", "-t", "TARGETS"],
            Session::Wayland => &["--list-types"],
        };
        // Both tools fail when the clipboard is empty or has no owner.
        let listing = self.run(&self.reader, arguments, None)?.unwrap_or_default();
        Ok(formats_of_targets(&String::from_utf8_lossy(&listing)))
    }

    fn read(&self, format: Format) -> io::Result<Option<Vec<u8>>> {
        let target = self.target(format);
        let arguments: Vec<&str> = match self.session {
            Session::X11 => vec!["-selection", "clipboard", "-o", "-t", target],
            Session::Wayland => vec!["--no-newline", "--type", target],
        };
        Ok(self
            .run(&self.reader, &arguments, None)?
            .filter(|data| !data.is_empty()))
    }

    fn write(&self, format: Format, data: &[u8]) -> io::Result<()> {
        let target = self.target(format);
        let arguments: Vec<&str> = match self.session {
            Session::X11 => vec!["-selection", "clipboard", "-i", "-t", target],
            Session::Wayland => vec!["--type", target],
        };
        match self.run(&self.writer, &arguments, Some(data))? {
            Some(_) => Ok(()),
            None => Err(io::Error::other(format!(
                "{} refused the {target} data",
                self.writer.display()
            ))),
        }
    }
}

/// The formats a list of X11 targets or MIME types (one per line) offers.
pub fn formats_of_targets(listing: &str) -> Formats {
    let mut formats = Formats::NONE;
    for target in listing.lines().map(str::trim) {
        let lower = target.to_ascii_lowercase();
        let media_type = lower.split(';').next().unwrap_or_default().trim();
        formats |= match media_type {
            "utf8_string" | "string" | "text" | "text/plain" => Formats::UNICODETEXT,
            "text/html" | "application/x-moz-nativehtml" => Formats::HTML,
            "image/bmp" | "image/x-bmp" | "image/x-ms-bmp" => Formats::BITMAP,
            _ => Formats::NONE,
        };
    }
    formats
}

/// Runs `command`, feeding it `input`, within [`TOOL_TIMEOUT`]. Returns its output when it
/// succeeds and `None` when it exits with a failure (the tools' way of saying "nothing there"); a
/// program that cannot be started or overruns is an error.
fn run(mut command: Command, input: Option<&[u8]>) -> io::Result<Option<Vec<u8>>> {
    let mut child = command
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        // A writer forks a server that keeps its output open: do not wait for that.
        .stdout(if input.is_some() {
            Stdio::null()
        } else {
            Stdio::piped()
        })
        .stderr(Stdio::null())
        .spawn()?;
    let outcome = std::thread::scope(|scope| {
        let feeder = child.stdin.take().map(|mut stdin| {
            let data = input.unwrap_or_default();
            scope.spawn(move || stdin.write_all(data))
        });
        let collector = child.stdout.take().map(|stdout| {
            scope.spawn(move || {
                let mut output = Vec::new();
                let limit = u64::try_from(MAX_CONTENT).unwrap_or(u64::MAX);
                stdout.take(limit).read_to_end(&mut output).map(|_| output)
            })
        });
        let status = wait_within(&mut child, TOOL_TIMEOUT);
        let fed = feeder.map(|feeder| feeder.join());
        let collected = collector.map(|collector| collector.join());
        (status, fed, collected)
    });
    let (status, fed, collected) = outcome;
    let status = status?;
    if let Some(Ok(Err(error))) = fed {
        if error.kind() != io::ErrorKind::BrokenPipe {
            return Err(error);
        }
    }
    if !status.success() {
        return Ok(None);
    }
    match collected {
        None => Ok(Some(Vec::new())),
        Some(Ok(output)) => output.map(Some),
        Some(Err(_)) => Err(io::Error::other("the output reader panicked")),
    }
}

/// Waits for `child` for at most `timeout`; kills it when it overruns.
fn wait_within(child: &mut Child, timeout: Duration) -> io::Result<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if Instant::now() >= deadline {
            // Killing closes its pipes, which ends the feeder and the collector.
            child.kill()?;
            child.wait()?;
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("did not finish within {} s", timeout.as_secs()),
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::os::unix::fs::PermissionsExt;

    /// Stand-in tool directories: name, programs, shell script each program runs.
    const FIXTURES: &[(&str, &[&str], &str)] = &[
        ("wayland", &["wl-copy", "wl-paste", "xclip"], "exit 0"),
        ("x11", &["xclip"], "exit 0"),
        ("empty", &[], ""),
        ("noexec", &["xclip"], "exit 0"),
        ("xclip-read", &["xclip"], "printf '%s|' \"$@\""),
        (
            "wl-write",
            &["wl-copy", "wl-paste"],
            "cat > \"$(dirname \"$0\")/written\"; printf '%s' \"$2\" > \"$(dirname \"$0\")/type\"",
        ),
        ("fail", &["xclip"], "exit 1"),
    ];

    /// The stand-in directory `name`. All of them are written before the first is used: a
    /// script still open for writing while another test thread forks could not be executed
    /// (`ETXTBSY`).
    fn bin_dir(name: &str) -> PathBuf {
        static ROOT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
        let root = ROOT.get_or_init(|| {
            let root = std::env::temp_dir().join(format!("vmmdev-desktop-{}", std::process::id()));
            for (name, programs, script) in FIXTURES {
                let dir = root.join(name);
                std::fs::create_dir_all(&dir).unwrap();
                for program in *programs {
                    let path = dir.join(program);
                    std::fs::write(&path, format!("#!/bin/sh\n{script}\n")).unwrap();
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                        .unwrap();
                }
            }
            root
        });
        root.join(name)
    }

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
        let map: HashMap<String, OsString> = pairs
            .iter()
            .map(|(name, value)| ((*name).to_owned(), OsString::from(value)))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn wayland_is_preferred_when_its_tools_exist() {
        let dir = bin_dir("wayland");
        let found = detect(
            env_of(&[("WAYLAND_DISPLAY", "wayland-0"), ("DISPLAY", ":0")]),
            Some(dir.as_os_str()),
        )
        .unwrap();
        assert_eq!(found.session(), Session::Wayland);
        assert_eq!(found.writer, dir.join("wl-copy"));
    }

    #[test]
    fn x11_uses_xclip() {
        let dir = bin_dir("x11");
        let found = detect(env_of(&[("DISPLAY", ":0")]), Some(dir.as_os_str())).unwrap();
        assert_eq!(found.session(), Session::X11);
        assert_eq!(found.reader, dir.join("xclip"));
    }

    #[test]
    fn no_session_says_which_variables_are_missing() {
        let err = detect(env_of(&[("DISPLAY", "")]), Some(OsStr::new("/bin"))).unwrap_err();
        assert!(
            err.to_string()
                .contains("neither WAYLAND_DISPLAY nor DISPLAY"),
            "{err}"
        );
    }

    #[test]
    fn a_session_without_its_tool_names_the_tool() {
        let dir = bin_dir("empty");
        let err = detect(env_of(&[("DISPLAY", ":0")]), Some(dir.as_os_str())).unwrap_err();
        assert!(err.to_string().contains("xclip is not installed"), "{err}");
        let err = detect(
            env_of(&[("WAYLAND_DISPLAY", "wayland-0")]),
            Some(dir.as_os_str()),
        )
        .unwrap_err();
        assert!(err.to_string().contains("wl-clipboard"), "{err}");
    }

    #[test]
    fn a_file_without_execute_permission_is_not_a_program() {
        let dir = bin_dir("noexec");
        std::fs::set_permissions(dir.join("xclip"), std::fs::Permissions::from_mode(0o644))
            .unwrap();
        assert!(detect(env_of(&[("DISPLAY", ":0")]), Some(dir.as_os_str())).is_err());
    }

    #[test]
    fn targets_map_to_formats() {
        let listing = "TIMESTAMP\nTARGETS\nUTF8_STRING\ntext/html;charset=utf-8\nimage/png\n";
        assert_eq!(
            formats_of_targets(listing),
            Formats::UNICODETEXT | Formats::HTML
        );
        assert_eq!(
            formats_of_targets("text/plain;charset=utf-8\nimage/bmp"),
            Formats::UNICODETEXT | Formats::BITMAP
        );
        assert_eq!(formats_of_targets(""), Formats::NONE);
    }

    #[test]
    fn xclip_reads_the_clipboard_selection_in_the_format_target() {
        let dir = bin_dir("xclip-read");
        let clipboard = detect(env_of(&[("DISPLAY", ":0")]), Some(dir.as_os_str())).unwrap();
        let output = clipboard.read(Format::Html).unwrap().unwrap();
        assert_eq!(output, b"-selection|clipboard|-o|-t|text/html|");
    }

    #[test]
    fn wl_copy_gets_the_data_on_stdin_with_its_type() {
        let dir = bin_dir("wl-write");
        let clipboard = detect(env_of(&[("WAYLAND_DISPLAY", "w")]), Some(dir.as_os_str())).unwrap();
        clipboard
            .write(Format::UnicodeText, "größe".as_bytes())
            .unwrap();
        assert_eq!(
            std::fs::read(dir.join("written")).unwrap(),
            "größe".as_bytes()
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("type")).unwrap(),
            "text/plain;charset=utf-8"
        );
    }

    #[test]
    fn a_failing_reader_means_nothing_in_that_format() {
        let dir = bin_dir("fail");
        let clipboard = detect(env_of(&[("DISPLAY", ":0")]), Some(dir.as_os_str())).unwrap();
        assert_eq!(clipboard.read(Format::UnicodeText).unwrap(), None);
        assert_eq!(clipboard.formats().unwrap(), Formats::NONE);
    }

    #[test]
    fn a_refused_write_is_an_error() {
        let dir = bin_dir("fail");
        let clipboard = detect(env_of(&[("DISPLAY", ":0")]), Some(dir.as_os_str())).unwrap();
        assert!(clipboard.write(Format::UnicodeText, b"x").is_err());
    }
}
