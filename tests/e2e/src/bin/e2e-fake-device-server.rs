//! A device server that hangs up: it creates the vfio-user socket like `vmmdev-vfio-user`, accepts one
//! connection and closes it at once. The boot tests use it to check what a run reports when the device
//! side breaks (QEMU's reason, the server's log), without depending on the real server.

use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let socket = match (args.next(), args.next()) {
        (Some(flag), Some(path)) if flag == "--socket" => PathBuf::from(path),
        _ => {
            eprintln!("usage: e2e-fake-device-server --socket PATH");
            return ExitCode::FAILURE;
        }
    };
    let listener = match UnixListener::bind(&socket) {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!(
                "e2e-fake-device-server: cannot listen on {}: {error}",
                socket.display()
            );
            return ExitCode::FAILURE;
        }
    };
    println!("e2e-fake-device-server: listening on {}", socket.display());
    match listener.accept() {
        Ok((connection, _)) => {
            println!("e2e-fake-device-server: client connected; hanging up");
            drop(connection);
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("e2e-fake-device-server: accept failed: {error}");
            ExitCode::FAILURE
        }
    }
}
