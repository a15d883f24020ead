//! Builds the end-to-end guest image (`initrd.cpio.gz`); see `vmmdev_e2e::image`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use vmmdev_e2e::image::{self, ImageSources};

/// Build the initramfs of the end-to-end guest.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Guest directory written by tests/scripts/fetch-guest.sh (bin/busybox, lib/modules/<release>).
    #[arg(long)]
    guest: PathBuf,
    /// Directory of static guest programs to install in /usr/local/bin (repeatable).
    #[arg(long = "bin-dir")]
    bin_dirs: Vec<PathBuf>,
    /// Directory with init, lib.sh, vmmdev-step and steps/ (default: the scripts of this crate).
    #[arg(long)]
    scripts: Option<PathBuf>,
    /// Output file.
    #[arg(long)]
    out: PathBuf,
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args = Args::parse();
    let sources = ImageSources {
        guest_dir: args.guest,
        scripts_dir: args.scripts.unwrap_or_else(image::default_scripts_dir),
        bin_dirs: args.bin_dirs,
    };
    match image::build(&sources, &args.out) {
        Ok(summary) => {
            log::info!(
                "{}: {} entries, {} KiB, kernel {}, programs: {}",
                args.out.display(),
                summary.entries,
                summary.compressed_bytes / 1024,
                summary.kernel_release,
                summary.programs.join(" ")
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            let mut message = format!("e2e-initramfs: {error}");
            let mut source = std::error::Error::source(&error);
            while let Some(cause) = source {
                message.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            eprintln!("{message}");
            ExitCode::FAILURE
        }
    }
}
