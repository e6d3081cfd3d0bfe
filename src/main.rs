//! The `kiln` command: parses the command line, runs it, maps the result to
//! an exit code. Everything else lives in the library.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = match kiln::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            // a refused argument is quoted in the message: its control
            // characters are shown escaped
            let text = e.render().to_string();
            eprint!("{}", kiln::util::display::EscapedLines(&text));
            return ExitCode::from(e.exit_code() as u8);
        }
    };
    match kiln::cli::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("{}", kiln::cli::render_error(&e));
            ExitCode::from(e.exit_code())
        }
    }
}
