#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vmmdev_services_fuzz::clipboard::run(data));
