//! Fuzz target `agent_lines`: see `plimsoll::fuzzing::agent_lines` for what it drives.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| plimsoll::fuzzing::agent_lines(data));
