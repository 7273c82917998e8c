//! `callbackd` under another name, so this package's tests can start it as a
//! process (`CARGO_BIN_EXE_callbackd-node`); it runs the very same code.

fn main() -> std::process::ExitCode {
    http_front::cli::main()
}
