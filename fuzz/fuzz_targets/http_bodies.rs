#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| aidledger_fuzz_targets::http_bodies(data));
