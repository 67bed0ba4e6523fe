//! The `hrmig` binary: parse the command line, start logging, dispatch.

fn main() -> std::process::ExitCode {
    hrmig::cli::main()
}
