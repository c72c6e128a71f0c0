//! The `steerscope` binary: the library's jobs behind a command line.

mod cli;

use clap::error::ErrorKind;
use clap::Parser;

/// Print one line to stderr and exit with status 2.
fn fail(msg: &str) -> ! {
    eprintln!("{}", msg.replace('\n', " "));
    std::process::exit(2);
}

fn main() {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(err)
            if matches!(
                err.kind(),
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
            ) =>
        {
            err.exit()
        }
        Err(err) => {
            // clap's message without its usage block, as one line.
            let rendered = err.render().to_string();
            let msg: Vec<&str> = rendered
                .lines()
                .map(str::trim)
                .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
                .filter(|l| !l.is_empty())
                .collect();
            fail(&msg.join(" "));
        }
    };
    if let Err(err) = cli::run(cli) {
        // The error and its causes, joined.
        let msg = err
            .chain()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(": ");
        fail(&format!("error: {msg}"));
    }
}
