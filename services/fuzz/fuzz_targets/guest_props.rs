#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vmmdev_services_fuzz::guest_props::run(data));
