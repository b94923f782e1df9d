//! Fuzz target `heap_snapshot`: see `plimsoll::fuzzing::heap_snapshot` for what it drives.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| plimsoll::fuzzing::heap_snapshot(data));
