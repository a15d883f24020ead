//! `vboxcontrol`: the guest control command line, shaped like VirtualBox's `VBoxControl`
//! (see [`vmmdev_guest_tools::control`] for the commands, output and exit codes).

use std::io::{self, Write};
use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use vmmdev_guest_ioctl::Device;
use vmmdev_guest_tools::clipboard;
use vmmdev_guest_tools::control::{self, Cli, Command, ExitStatus};

fn main() -> ExitCode {
    let cli = Cli::parse_from(control::normalize_args(std::env::args_os()));
    let mut out = io::stdout().lock();
    let mut err = io::stderr().lock();
    if cli.version {
        return print(&mut out, &mut err, &control::version()).into();
    }
    if !cli.nologo {
        print(&mut out, &mut err, &control::logo());
    }
    let status = match &cli.command {
        None => {
            // A usage error, as VBoxControl treats a missing command.
            let _ = Cli::command().write_help(&mut err);
            ExitStatus::Syntax
        }
        Some(Command::Version) => print(&mut out, &mut err, &control::version()),
        Some(Command::GuestProperty(command)) => match open(&cli, &mut err) {
            Ok(device) => control::guest_property(&device, command, &mut out, &mut err),
            Err(status) => status,
        },
        Some(Command::Clipboard(command)) => match open(&cli, &mut err) {
            Ok(device) => {
                clipboard::clipboard(&device, command, &mut io::stdin(), &mut out, &mut err)
            }
            Err(status) => status,
        },
    };
    status.into()
}

/// Opens the driver's node, or reports why it cannot be reached.
fn open(cli: &Cli, err: &mut dyn Write) -> Result<Device, ExitStatus> {
    Device::open_path(&cli.device).map_err(|error| {
        control::fail(
            err,
            &format!(
                "Could not contact the host system. Make sure that you are running this \
                 application inside a virtual machine with the vboxguest driver, and that you \
                 have sufficient user permissions: {error}"
            ),
        )
    })
}

/// Writes `text` to stdout; a closed stdout is a failure.
fn print(out: &mut dyn Write, err: &mut dyn Write, text: &str) -> ExitStatus {
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => ExitStatus::Success,
        Err(error) => control::fail(err, &format!("writing the output: {error}")),
    }
}
