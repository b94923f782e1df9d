//! Fuzz target `pm2_ecosystem`: see `plimsoll::fuzzing::pm2_ecosystem` for what it drives.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| plimsoll::fuzzing::pm2_ecosystem(data));
