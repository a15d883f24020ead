//! The C interface from C: `tests/c/smoke.c` is compiled with the system C compiler (`cc`)
//! against `include/vmmdev_guest.h`, linked with the shared and with the static library cargo
//! built for this test, and run.

use std::path::{Path, PathBuf};
use std::process::Command;

const CRATE_DIR: &str = env!("CARGO_MANIFEST_DIR");

/// The directory cargo put this crate's shared and static libraries in: the test binary's
/// `deps` directory or its parent.
fn library_dir(file: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let deps = exe.parent().expect("deps directory");
    [deps, deps.parent().expect("profile directory")]
        .into_iter()
        .find(|dir| dir.join(file).is_file())
        .unwrap_or_else(|| panic!("{file} not found next to {}", exe.display()))
        .to_path_buf()
}

/// Compiles the smoke test with `link` arguments and runs it.
fn build_and_run(name: &str, link: &[&str]) {
    let output_dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let program = output_dir.join(name);
    let crate_dir = Path::new(CRATE_DIR);
    let compile = Command::new("cc")
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic", "-I"])
        .arg(crate_dir.join("include"))
        .arg(crate_dir.join("tests/c/smoke.c"))
        .args(link)
        .arg("-o")
        .arg(&program)
        .output()
        .expect("the C compiler `cc` must be installed to test the C interface");
    assert!(
        compile.status.success(),
        "cc failed:\n{}",
        String::from_utf8_lossy(&compile.stderr)
    );
    let run = Command::new(&program).output().expect("run the C program");
    assert!(
        run.status.success(),
        "{name} failed: {}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&run.stdout), "ok\n");
}

#[test]
fn c_program_works_with_the_shared_library() {
    let dir = library_dir("libvmmdev_guest_ioctl.so");
    let dir = dir.to_str().expect("UTF-8 target path");
    build_and_run(
        "c_api_smoke_shared",
        &[
            &format!("-L{dir}"),
            &format!("-Wl,-rpath,{dir}"),
            "-lvmmdev_guest_ioctl",
        ],
    );
}

#[test]
fn c_program_works_with_the_static_library() {
    let archive = library_dir("libvmmdev_guest_ioctl.a").join("libvmmdev_guest_ioctl.a");
    let archive = archive.to_str().expect("UTF-8 target path");
    build_and_run("c_api_smoke_static", &[archive, "-lpthread", "-ldl", "-lm"]);
}
