//! Fuzz target `units`: see `plimsoll::fuzzing::units` for what it drives.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| plimsoll::fuzzing::units(data));
