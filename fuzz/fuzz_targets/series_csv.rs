//! Fuzz target `series_csv`: see `plimsoll::fuzzing::series_csv` for what it drives.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| plimsoll::fuzzing::series_csv(data));
