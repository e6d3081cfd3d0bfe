//! The `kiln` command: parses the command line, runs it, maps the result to
//! an exit code. Everything else lives in the library.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = kiln::cli::Cli::parse();
    match kiln::cli::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("{}", kiln::cli::render_error(&e));
            ExitCode::from(e.exit_code())
        }
    }
}
