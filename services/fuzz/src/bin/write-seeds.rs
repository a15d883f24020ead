//! Writes the seed scripts as corpus files: `write-seeds DIR` makes `DIR/<target>/<seed>`.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(dir) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: write-seeds DIR");
        return ExitCode::from(2);
    };
    for &(target, _) in vmmdev_services_fuzz::TARGETS {
        let target_dir = dir.join(target);
        if let Err(error) = std::fs::create_dir_all(&target_dir) {
            eprintln!(
                "write-seeds: cannot create {}: {error}",
                target_dir.display()
            );
            return ExitCode::FAILURE;
        }
        for seed in vmmdev_services_fuzz::seeds::of(target) {
            let path = target_dir.join(seed.name);
            if let Err(error) = std::fs::write(&path, &seed.input) {
                eprintln!("write-seeds: cannot write {}: {error}", path.display());
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}
