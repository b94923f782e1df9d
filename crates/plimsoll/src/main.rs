//! The `plimsoll` binary: everything is in the library; see `lib.rs`.

fn main() -> std::process::ExitCode {
    plimsoll::main()
}
