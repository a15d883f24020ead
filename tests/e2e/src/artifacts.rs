//! Where the boot tests find QEMU, the kernel and the image: environment variables set by
//! `tests/run-all.sh` after it ran the provisioning scripts.
//!
//! `cargo test` itself never downloads or builds any of these. When a variable is unset (a plain
//! `cargo test` on a developer machine), a boot test prints a loud `SKIPPED:` line and returns; run-all.sh
//! always sets them, so CI never skips.

use std::path::{Path, PathBuf};

/// The QEMU binary or wrapper (from `tests/scripts/provision-qemu.sh`).
pub const ENV_QEMU: &str = "VMMDEV_QEMU";
/// The guest kernel the boot tests use: `vmlinux` from `tests/scripts/fetch-guest.sh`, Debian's kernel
/// decompressed, which QEMU starts through its PVH entry point (seconds faster under TCG than the bzImage).
pub const ENV_KERNEL: &str = "VMMDEV_KERNEL";
/// Debian's kernel as shipped (`vmlinuz`, a bzImage); optional, booted once to cover the standard path.
pub const ENV_BZIMAGE: &str = "VMMDEV_BZIMAGE";
/// The directory holding [`INITRD_FILE_NAME`] (from `tests/scripts/build-initramfs.sh`).
pub const ENV_INITRD_DIR: &str = "VMMDEV_INITRD_DIR";
/// The vfio-user device server (`vmmdev-vfio-user`); optional until that crate exists.
pub const ENV_VFIO_USER_SERVER: &str = "VMMDEV_VFIO_USER_SERVER";
/// The image's file name inside [`ENV_INITRD_DIR`].
pub const INITRD_FILE_NAME: &str = "initrd.cpio.gz";

/// Errors of finding the artifacts.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ArtifactError {
    /// A required variable is not set.
    #[error("{0} is not set (tests/run-all.sh sets it after provisioning)")]
    Unset(&'static str),
    /// A variable names a file that does not exist.
    #[error("{var}={path} does not exist")]
    Missing {
        /// The variable.
        var: &'static str,
        /// What it names.
        path: PathBuf,
    },
}

/// The files a boot test needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifacts {
    /// The QEMU binary or wrapper.
    pub qemu: PathBuf,
    /// The guest kernel.
    pub kernel: PathBuf,
    /// The same kernel as a bzImage, when known.
    pub bzimage: Option<PathBuf>,
    /// The guest image.
    pub initrd: PathBuf,
    /// The device server, when it was built.
    pub vfio_user_server: Option<PathBuf>,
}

impl Artifacts {
    /// Reads the artifacts from the process environment.
    pub fn from_env() -> Result<Self, ArtifactError> {
        Self::from_lookup(|var| {
            std::env::var_os(var)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        })
    }

    /// Reads the artifacts through `lookup` (variable name → value) and checks that the files exist.
    pub fn from_lookup(
        lookup: impl Fn(&'static str) -> Option<PathBuf>,
    ) -> Result<Self, ArtifactError> {
        let existing = |var: &'static str, path: PathBuf| {
            if path.exists() {
                Ok(path)
            } else {
                Err(ArtifactError::Missing { var, path })
            }
        };
        let required = |var: &'static str| lookup(var).ok_or(ArtifactError::Unset(var));
        let qemu = existing(ENV_QEMU, required(ENV_QEMU)?)?;
        let kernel = existing(ENV_KERNEL, required(ENV_KERNEL)?)?;
        let initrd = existing(
            ENV_INITRD_DIR,
            required(ENV_INITRD_DIR)?.join(INITRD_FILE_NAME),
        )?;
        let optional = |var: &'static str| lookup(var).map(|path| existing(var, path)).transpose();
        let bzimage = optional(ENV_BZIMAGE)?;
        let vfio_user_server = optional(ENV_VFIO_USER_SERVER)?;
        Ok(Self {
            qemu,
            kernel,
            bzimage,
            initrd,
            vfio_user_server,
        })
    }

    /// The device server, which a test booting with the vfio-user device cannot do without.
    pub fn device_server(&self) -> Result<&Path, ArtifactError> {
        self.vfio_user_server
            .as_deref()
            .ok_or(ArtifactError::Unset(ENV_VFIO_USER_SERVER))
    }
}

/// The artifacts, or `None` after printing `SKIPPED: <test>: <why>` to stdout and stderr.
///
/// A variable that is set but names a missing file is not a reason to skip: that is a broken setup, and
/// the test panics with the reason.
pub fn artifacts_or_skip(test: &str) -> Option<Artifacts> {
    match Artifacts::from_env() {
        Ok(artifacts) => Some(artifacts),
        Err(reason @ ArtifactError::Unset(_)) => {
            let line =
                format!("SKIPPED: {test}: {reason}; run tests/run-all.sh to boot real guests");
            println!("{line}");
            eprintln!("{line}");
            None
        }
        Err(broken) => panic!("{test}: {broken}"),
    }
}

/// The directory for a test's run files: `<target>/tmp/e2e/<test>` when built by cargo.
pub fn run_dir(target_tmpdir: &Path, test: &str) -> PathBuf {
    target_tmpdir.join("e2e").join(test)
}

/// What a boot test with the vfio-user device starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceTest {
    /// QEMU, kernel and image.
    pub artifacts: Artifacts,
    /// The device server.
    pub server: PathBuf,
    /// The test's run directory ([`run_dir`]), already created.
    pub dir: PathBuf,
}

/// [`artifacts_or_skip`] for a test that boots with the vfio-user device, plus its server and its run
/// directory under `target_tmpdir` (cargo's `CARGO_TARGET_TMPDIR`).
///
/// Unset artifacts skip the test as [`artifacts_or_skip`] does. An unset server does not: run-all.sh
/// always builds it, so its absence is a broken setup and the test panics, as it does when the run
/// directory cannot be created.
pub fn device_test_or_skip(test: &str, target_tmpdir: &Path) -> Option<DeviceTest> {
    let artifacts = artifacts_or_skip(test)?;
    let server = match artifacts.device_server() {
        Ok(server) => server.to_owned(),
        Err(unset) => panic!("{test}: {unset}"),
    };
    let dir = run_dir(target_tmpdir, test);
    if let Err(error) = std::fs::create_dir_all(&dir) {
        panic!("{test}: cannot create {}: {error}", dir.display());
    }
    Some(DeviceTest {
        artifacts,
        server,
        dir,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup<'a>(
        vars: &'a HashMap<&'static str, PathBuf>,
    ) -> impl Fn(&'static str) -> Option<PathBuf> + 'a {
        |var| vars.get(var).cloned()
    }

    fn existing_dir() -> PathBuf {
        std::env::temp_dir()
    }

    #[test]
    fn unset_variable_is_named() {
        let vars = HashMap::new();
        assert_eq!(
            Artifacts::from_lookup(lookup(&vars)),
            Err(ArtifactError::Unset(ENV_QEMU))
        );
    }

    #[test]
    fn initrd_is_looked_up_inside_its_directory() {
        let vars = HashMap::from([
            (ENV_QEMU, existing_dir()),
            (ENV_KERNEL, existing_dir()),
            (ENV_INITRD_DIR, PathBuf::from("/nonexistent/images")),
        ]);
        assert_eq!(
            Artifacts::from_lookup(lookup(&vars)),
            Err(ArtifactError::Missing {
                var: ENV_INITRD_DIR,
                path: PathBuf::from("/nonexistent/images/initrd.cpio.gz"),
            })
        );
    }

    #[test]
    fn server_is_optional_but_must_exist_when_named() {
        let mut vars = HashMap::from([(ENV_QEMU, existing_dir()), (ENV_KERNEL, existing_dir())]);
        let images =
            std::env::temp_dir().join(format!("vmmdev-e2e-artifacts-{}", std::process::id()));
        std::fs::create_dir_all(&images).unwrap();
        std::fs::write(images.join(INITRD_FILE_NAME), b"").unwrap();
        vars.insert(ENV_INITRD_DIR, images.clone());

        let without = Artifacts::from_lookup(lookup(&vars));
        vars.insert(
            ENV_VFIO_USER_SERVER,
            PathBuf::from("/nonexistent/vmmdev-vfio-user"),
        );
        let with_missing = Artifacts::from_lookup(lookup(&vars));
        std::fs::remove_dir_all(&images).unwrap();

        assert_eq!(without.unwrap().vfio_user_server, None);
        assert!(matches!(
            with_missing,
            Err(ArtifactError::Missing {
                var: ENV_VFIO_USER_SERVER,
                ..
            })
        ));
    }

    #[test]
    fn device_server_of_artifacts_without_one_names_its_variable() {
        let artifacts = Artifacts {
            qemu: existing_dir(),
            kernel: existing_dir(),
            bzimage: None,
            initrd: existing_dir(),
            vfio_user_server: None,
        };
        assert_eq!(
            artifacts.device_server(),
            Err(ArtifactError::Unset(ENV_VFIO_USER_SERVER))
        );
    }
}
