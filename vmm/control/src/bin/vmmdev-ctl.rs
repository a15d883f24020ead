//! `vmmdev-ctl`: controls a running VMMDev binary through its `--control` socket, with the commands and
//! output of `VBoxManage guestproperty` and `VBoxManage sharedfolder` (without the VM argument: the
//! socket names the VM), and `clipboard get|set|mode` for the shared clipboard. Bad arguments exit with 2,
//! failures with 1 after one line on stderr.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use serde_json::{Value, json};

/// Largest response accepted from the endpoint.
const MAX_RESPONSE_LEN: u64 = 16 * 1024 * 1024;

#[derive(Debug, Parser)]
#[command(
    name = "vmmdev-ctl",
    about = "Controls guest properties and shared folders of a running VM"
)]
struct Cli {
    /// The control socket of the VM (its --control PATH).
    #[arg(long, value_name = "PATH")]
    control: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Guest properties.
    #[command(subcommand)]
    Guestproperty(PropertyCommand),
    /// Shared folders.
    #[command(subcommand)]
    Sharedfolder(ShareCommand),
    /// The shared clipboard.
    #[command(subcommand)]
    Clipboard(ClipboardCommand),
}

#[derive(Debug, Subcommand)]
enum ClipboardCommand {
    /// Prints the clipboard: what the guest offers if it owns the clipboard, else the host content. A
    /// bitmap is written as a BMP file; a clipboard without that format is an error.
    Get {
        /// The format.
        #[arg(long, value_parser = ["text", "html", "bitmap"], default_value = "text")]
        format: String,
        /// Longest wait for the guest in milliseconds.
        #[arg(long, value_name = "MS")]
        timeout: Option<u64>,
    },
    /// Sets the host clipboard (announced to the guest) from VALUE, --file, or standard input.
    Set {
        /// The format.
        #[arg(long, value_parser = ["text", "html", "bitmap"], default_value = "text")]
        format: String,
        /// The content (text or HTML).
        value: Option<String>,
        /// Reads the content from FILE (a BMP file for bitmaps).
        #[arg(long, value_name = "FILE", conflicts_with = "value")]
        file: Option<PathBuf>,
    },
    /// Prints the clipboard mode; with MODE, sets it first.
    Mode {
        /// The new mode.
        #[arg(value_parser = ["off", "host-to-guest", "guest-to-host", "bidirectional"])]
        mode: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum PropertyCommand {
    /// Prints a property's value.
    Get {
        /// Property name.
        name: String,
        /// Also prints the timestamp and flags.
        #[arg(long)]
        verbose: bool,
    },
    /// Sets a property; without VALUE, deletes it.
    Set {
        /// Property name.
        name: String,
        /// New value.
        value: Option<String>,
        /// Flags, e.g. TRANSIENT,RDONLYGUEST.
        #[arg(long, requires = "value")]
        flags: Option<String>,
    },
    /// Deletes a property.
    #[command(alias = "unset")]
    Delete {
        /// Property name.
        name: String,
    },
    /// Lists the properties, or those matching any PATTERN.
    Enumerate {
        /// Name patterns (`*`, `?`, `|`).
        #[arg(long = "patterns", num_args = 1.., value_name = "PATTERN")]
        patterns: Vec<String>,
    },
    /// Waits for a change of a property whose name matches PATTERNS.
    Wait {
        /// Name patterns (`*`, `?`, `|`).
        patterns: String,
        /// Longest wait in milliseconds.
        #[arg(long, value_name = "MS")]
        timeout: Option<u64>,
    },
}

#[derive(Debug, Subcommand)]
enum ShareCommand {
    /// Adds a shared folder.
    Add {
        /// Share name.
        #[arg(long)]
        name: String,
        /// Host directory.
        #[arg(long = "hostpath", value_name = "PATH")]
        host_path: String,
        /// The guest may only read.
        #[arg(long)]
        readonly: bool,
        /// Guest automounters mount it.
        #[arg(long)]
        automount: bool,
        /// Where guest automounters mount it.
        #[arg(long = "auto-mount-point", value_name = "PATH", default_value = "")]
        auto_mount_point: String,
        /// Which symbolic links the guest may create.
        #[arg(long, value_parser = ["deny", "inside", "allow"])]
        symlinks: Option<String>,
    },
    /// Removes a shared folder.
    Remove {
        /// Share name.
        #[arg(long)]
        name: String,
    },
    /// Lists the shared folders.
    List,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("vmmdev-ctl: error: {message}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: &Cli) -> Result<(), String> {
    let request = match &cli.command {
        Command::Clipboard(ClipboardCommand::Set {
            format,
            value,
            file,
        }) => clipboard_set_request(format, value.as_deref(), file.as_deref())?,
        command => request_of(command),
    };
    let response = exchange(cli, &request)?;
    if response.get("ok") != Some(&Value::Bool(true)) {
        let error = response
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("malformed response");
        return Err(error.to_owned());
    }
    print_response(&cli.command, &response)
}

fn request_of(command: &Command) -> Value {
    match command {
        Command::Guestproperty(PropertyCommand::Get { name, .. }) => {
            json!({"op": "guestproperty.get", "name": name})
        }
        Command::Guestproperty(PropertyCommand::Set {
            name,
            value: Some(value),
            flags,
        }) => {
            json!({"op": "guestproperty.set", "name": name, "value": value, "flags": flags})
        }
        Command::Guestproperty(PropertyCommand::Set {
            name, value: None, ..
        })
        | Command::Guestproperty(PropertyCommand::Delete { name }) => {
            json!({"op": "guestproperty.delete", "name": name})
        }
        Command::Guestproperty(PropertyCommand::Enumerate { patterns }) => {
            json!({"op": "guestproperty.enumerate", "patterns": patterns})
        }
        Command::Guestproperty(PropertyCommand::Wait { patterns, timeout }) => {
            json!({"op": "guestproperty.wait", "pattern": patterns, "timeout_ms": timeout})
        }
        Command::Sharedfolder(ShareCommand::Add {
            name,
            host_path,
            readonly,
            automount,
            auto_mount_point,
            symlinks,
        }) => json!({
            "op": "sharedfolder.add", "name": name, "path": host_path, "readonly": readonly,
            "automount": automount, "automount_point": auto_mount_point, "symlinks": symlinks,
        }),
        Command::Sharedfolder(ShareCommand::Remove { name }) => {
            json!({"op": "sharedfolder.remove", "name": name})
        }
        Command::Sharedfolder(ShareCommand::List) => json!({"op": "sharedfolder.list"}),
        Command::Clipboard(ClipboardCommand::Get { format, timeout }) => {
            json!({"op": "clipboard.get", "format": format, "timeout_ms": timeout})
        }
        Command::Clipboard(ClipboardCommand::Set { .. }) => json!({"op": "clipboard.set"}),
        Command::Clipboard(ClipboardCommand::Mode { mode }) => {
            json!({"op": "clipboard.mode", "mode": mode})
        }
    }
}

/// The `clipboard.set` request: a file travels as its absolute path, other content inline.
fn clipboard_set_request(
    format: &str,
    value: Option<&str>,
    file: Option<&std::path::Path>,
) -> Result<Value, String> {
    if let Some(file) = file {
        let path = std::path::absolute(file)
            .map_err(|e| format!("cannot resolve {}: {e}", file.display()))?;
        return Ok(
            json!({"op": "clipboard.set", format!("{format}_path"): path.to_string_lossy()}),
        );
    }
    let bytes = match value {
        Some(value) => value.as_bytes().to_vec(),
        None => {
            let mut bytes = Vec::new();
            std::io::stdin()
                .read_to_end(&mut bytes)
                .map_err(|e| format!("cannot read standard input: {e}"))?;
            bytes
        }
    };
    let request = if format == "bitmap" {
        use base64::Engine;
        let encoded = base64::engine::general_purpose::STANDARD.encode(&bytes);
        json!({"op": "clipboard.set", "bitmap_base64": encoded})
    } else {
        let text = String::from_utf8(bytes).map_err(|_| format!("the {format} is not UTF-8"))?;
        json!({"op": "clipboard.set", format: text})
    };
    let len = serde_json::to_vec(&request).map_or(0, |line| line.len());
    if len > vmmdev_control::MAX_REQUEST_LEN {
        return Err(format!(
            "the content is too large for one request ({len} bytes); pass it with --file"
        ));
    }
    Ok(request)
}

fn exchange(cli: &Cli, request: &Value) -> Result<Value, String> {
    let path = cli.control.display();
    let mut stream =
        UnixStream::connect(&cli.control).map_err(|e| format!("cannot connect to {path}: {e}"))?;
    let mut line = serde_json::to_vec(request).map_err(|e| e.to_string())?;
    line.push(b'\n');
    stream
        .write_all(&line)
        .map_err(|e| format!("cannot send to {path}: {e}"))?;
    let mut reply = Vec::new();
    BufReader::new(stream.take(MAX_RESPONSE_LEN))
        .read_until(b'\n', &mut reply)
        .map_err(|e| format!("cannot read from {path}: {e}"))?;
    if reply.is_empty() {
        return Err(format!("{path} closed the connection without answering"));
    }
    serde_json::from_slice(&reply).map_err(|e| format!("malformed response from {path}: {e}"))
}

fn field<'a>(response: &'a Value, name: &str) -> &'a str {
    response.get(name).and_then(Value::as_str).unwrap_or("")
}

fn print_response(command: &Command, response: &Value) -> Result<(), String> {
    let mut out = std::io::stdout().lock();
    let result = match command {
        Command::Guestproperty(PropertyCommand::Get { verbose, .. }) => match response.get("value")
        {
            Some(Value::String(value)) => {
                let mut text = format!("Value: {value}\n");
                if *verbose {
                    let timestamp = response
                        .get("timestamp")
                        .and_then(Value::as_u64)
                        .unwrap_or(0);
                    text += &format!(
                        "Timestamp: {timestamp}\nFlags: {}\n",
                        field(response, "flags")
                    );
                }
                out.write_all(text.as_bytes())
            }
            _ => writeln!(out, "No value set!"),
        },
        Command::Guestproperty(PropertyCommand::Enumerate { .. }) => {
            let empty = Vec::new();
            let properties = response
                .get("properties")
                .and_then(Value::as_array)
                .unwrap_or(&empty);
            properties.iter().try_for_each(|p| {
                let timestamp = p.get("timestamp").and_then(Value::as_u64).unwrap_or(0);
                writeln!(
                    out,
                    "Name: {}, value: {}, timestamp: {timestamp}, flags: {}",
                    field(p, "name"),
                    field(p, "value"),
                    field(p, "flags")
                )
            })
        }
        Command::Guestproperty(PropertyCommand::Wait { .. }) => {
            if response.get("timed_out") == Some(&Value::Bool(true)) {
                return Err("time out while waiting for a notification".to_owned());
            }
            match response.get("value") {
                Some(Value::String(value)) => writeln!(
                    out,
                    "Name: {}, value: {value}, flags: {}",
                    field(response, "name"),
                    field(response, "flags")
                ),
                _ => writeln!(out, "Name: {}, deleted", field(response, "name")),
            }
        }
        Command::Sharedfolder(ShareCommand::Remove { name }) => {
            if response.get("deferred") == Some(&Value::Bool(true)) {
                writeln!(
                    out,
                    "Shared folder '{name}' is in use by the guest; it goes away when the guest unmaps it."
                )
            } else {
                Ok(())
            }
        }
        Command::Sharedfolder(ShareCommand::List) => {
            let empty = Vec::new();
            let shares = response
                .get("shares")
                .and_then(Value::as_array)
                .unwrap_or(&empty);
            if shares.is_empty() {
                writeln!(out, "No shared folders.")
            } else {
                shares
                    .iter()
                    .try_for_each(|s| writeln!(out, "{}", share_line(s)))
            }
        }
        Command::Clipboard(ClipboardCommand::Get { format, .. }) => {
            if response.get("empty") == Some(&Value::Bool(true)) {
                return Err(format!("the clipboard holds no {format}"));
            }
            match format.as_str() {
                "bitmap" => {
                    use base64::Engine;
                    let bmp = base64::engine::general_purpose::STANDARD
                        .decode(field(response, "bitmap_base64"))
                        .map_err(|_| "malformed bitmap in the response".to_owned())?;
                    out.write_all(&bmp)
                }
                name => out.write_all(field(response, name).as_bytes()),
            }
        }
        Command::Clipboard(ClipboardCommand::Mode { .. }) => {
            writeln!(out, "{}", field(response, "mode"))
        }
        _ => Ok(()),
    };
    result.map_err(|e| format!("cannot write the output: {e}"))
}

/// One share as VBoxManage describes shared folders.
fn share_line(share: &Value) -> String {
    let flag = |name: &str| share.get(name) == Some(&Value::Bool(true));
    let mut line = format!(
        "Name: '{}', Host path: '{}' (machine mapping), {}",
        field(share, "name"),
        field(share, "path"),
        if flag("writable") {
            "writable"
        } else {
            "readonly"
        }
    );
    if flag("automount") {
        line += ", auto-mount";
    }
    let mount_point = field(share, "automount_point");
    if !mount_point.is_empty() {
        line += &format!(", mount-point: '{mount_point}'");
    }
    let maps = share.get("maps").and_then(Value::as_u64).unwrap_or(0);
    line += &format!(
        ", symlinks: {}, state: {}, mappings: {maps}",
        field(share, "symlinks"),
        field(share, "state")
    );
    line
}
