//! Replays every target's seeds, and the inputs kept in `regressions/<target>/`, through the
//! targets on the stable toolchain: the fuzz targets build and their checks hold in every test
//! run, not only when someone fuzzes.

use std::path::Path;

use vmmdev_services_fuzz::{TARGETS, script, seeds};

#[test]
fn every_seed_and_regression_passes_its_target() {
    let regressions = Path::new(env!("CARGO_MANIFEST_DIR")).join("regressions");
    for &(target, run) in TARGETS {
        let seeds = seeds::of(target);
        assert!(!seeds.is_empty(), "{target} has no seeds");
        for seed in seeds {
            run(&seed.input);
        }
        let Ok(entries) = std::fs::read_dir(regressions.join(target)) else {
            continue;
        };
        for entry in entries.flatten() {
            let input = std::fs::read(entry.path()).expect("a regression input is readable");
            run(&input);
        }
    }
}

#[test]
fn seed_scripts_survive_encoding() {
    for &(target, _) in TARGETS {
        if target == "clipboard_convert" {
            continue; // Raw bytes, not a script.
        }
        for seed in seeds::of(target) {
            let script = script::decode(&seed.input);
            assert_eq!(
                script::encode(&script),
                seed.input,
                "{target}/{}",
                seed.name
            );
        }
    }
}

#[test]
fn random_inputs_pass_every_target() {
    // A fixed pseudo-random stream: the same inputs on every run.
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for &(_, run) in TARGETS {
        for _ in 0..40 {
            let len = (next() % 512) as usize;
            let input: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            run(&input);
        }
    }
}
