//! Fuzz target `up_config`: see `plimsoll::fuzzing::up_config` for what it drives.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| plimsoll::fuzzing::up_config(data));
