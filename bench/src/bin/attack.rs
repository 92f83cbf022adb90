//! `attack`: the traffic of the soak under attack (`bench/soak.sh`, issue 13).
//!
//! `attack normal|flood|tarpit [OPTIONS]` (`attack MODE --help` lists the options) runs
//! until `--duration` passes, then prints a Markdown table of what it sent and how the
//! proxy answered (and with `--json FILE` writes the same figures as JSON). Exit status
//! 0 when it ran, 2 when it could not start.

use std::process::ExitCode;

use clap::Parser;
use sluice_bench::attack::cli::{Cli, Mode};
use sluice_bench::attack::{self, KindReport};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // One thread: the soak's clients share the machine with the proxy they measure.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return fail(&format!("tokio runtime: {e}")),
    };
    let outcome = runtime.block_on(async {
        match &cli.mode {
            Mode::Normal(args) => attack::run_normal(args).await,
            Mode::Flood(args) => attack::run_flood(args).await,
            Mode::Tarpit(args) => attack::run_tarpit(args).await.map(|r| vec![r]),
        }
    });
    // Connections still held by aborted tasks are dropped, not waited for.
    runtime.shutdown_background();
    match outcome {
        Ok(reports) => print(&reports, cli.json.as_deref()),
        Err(e) => fail(&e),
    }
}

fn print(reports: &[KindReport], json: Option<&std::path::Path>) -> ExitCode {
    print!("{}", attack::markdown(reports));
    if let Some(path) = json {
        let text = serde_json::to_string_pretty(reports).unwrap_or_default();
        if let Err(e) = std::fs::write(path, text + "\n") {
            return fail(&format!("{}: {e}", path.display()));
        }
    }
    ExitCode::SUCCESS
}

fn fail(message: &str) -> ExitCode {
    eprintln!("attack: {message}");
    ExitCode::from(2)
}
