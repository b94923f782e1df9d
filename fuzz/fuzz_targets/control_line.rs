//! Fuzz target `control_line`: see `plimsoll::fuzzing::control_line` for what it drives.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| plimsoll::fuzzing::control_line(data));
