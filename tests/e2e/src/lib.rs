//! End-to-end tests: the guest image, the boot runner and the scripted checks in a real Linux guest.
//!
//! An unmodified Debian 12 guest (stock kernel, in-tree `vboxguest`/`vboxsf`) boots against the VMMDev
//! device and checks itself from a scripted `/init`. The pieces, in the order a run uses them:
//!
//! - `tests/scripts/provision-qemu.sh`, `fetch-guest.sh`: QEMU >= 10.1 with `vfio-user-pci`, the stock
//!   kernel, its modules and a static busybox, cached outside the repository.
//! - [`image`] (the `e2e-initramfs` binary, `tests/scripts/build-initramfs.sh`): the initramfs, built with
//!   [`cpio`]; it carries the `/init` and step scripts of `tests/e2e/guest/`.
//! - [`backend`]: the [`Backend`](backend::Backend) trait and the boot description; [`qemu`] implements it
//!   with QEMU/TCG and the device over vfio-user ([`server`] starts the device process), [`kvm`] with the
//!   project's KVM monitor and the device in-process.
//! - [`runner`]: one run with serial capture, time limit and clean-up ([`process`]); [`console`] parses the
//!   guest's `@@` report lines; [`expect`] compares them with what a test expects and explains failures.
//! - [`artifacts`]: where tests find QEMU, kernel and image (environment set by `tests/run-all.sh`).
//!
//! ```no_run
//! use std::path::Path;
//! use vmmdev_e2e::backend::BootSpec;
//! use vmmdev_e2e::expect::Expectations;
//! use vmmdev_e2e::qemu::QemuTcg;
//! use vmmdev_e2e::runner::{RunOptions, boot};
//!
//! let Some(artifacts) = vmmdev_e2e::artifacts::artifacts_or_skip("example") else { return };
//! let expected = Expectations::new().pass(&["init", "proc-mounted"]);
//! let spec = BootSpec::test(&artifacts.kernel, &artifacts.initrd, &expected.step_names());
//! let backend = QemuTcg::new(&artifacts.qemu);
//! let run = boot(&backend, &spec, Path::new("target/tmp/e2e/example"), &RunOptions::default()).unwrap();
//! if let Err(mismatch) = run.verify(&expected) {
//!     panic!("{mismatch}");
//! }
//! println!("{}", run.summary());
//! ```

pub mod artifacts;
pub mod backend;
pub mod console;
pub mod cpio;
pub mod expect;
pub mod full_session;
pub mod host_agent;
pub mod host_side;
pub mod image;
pub mod kvm;
pub mod process;
pub mod qemu;
pub mod runner;
pub mod server;
pub mod steps;
