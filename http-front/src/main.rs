//! The `callbackd` binary; everything is in `http_front::cli`, so the test
//! suite can build the very same program under its own name.

fn main() -> std::process::ExitCode {
    http_front::cli::main()
}
