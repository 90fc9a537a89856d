#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hello_oauth_fuzz::session_data(data));
