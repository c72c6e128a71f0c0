//! The `steerscope` binary: the library's jobs behind a command line.

mod cli;

use clap::Parser;

fn main() {
    let cli = cli::Cli::parse();
    if let Err(err) = cli::run(cli) {
        // One line: the error and its causes, joined.
        let msg = err
            .chain()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(": ");
        eprintln!("error: {}", msg.replace('\n', " "));
        std::process::exit(2);
    }
}
