//! A tiny program for the guest image, built like the project's guest tools (static glibc, see
//! `tests/scripts/build-guest-bins.sh`): the `static-hello` step runs it to prove such binaries work there.

fn main() {
    println!(
        "hello from a static Rust binary (pid {})",
        std::process::id()
    );
}
