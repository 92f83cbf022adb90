//! `loadgen`: the load generator of the proxy benchmark (`bench/run.sh`).
//!
//! `loadgen MODE [OPTIONS]` with MODE one of conns, requests, download, hold, certs;
//! `loadgen MODE --help` lists the options. Each mode prints one JSON object on stdout;
//! diagnostics go to stderr. Exit status 0 when the mode ran (even with errors counted),
//! 1 when nothing worked, 2 when it could not start.
//!
//! The runtime is single-threaded: the benchmark pins the generator to one core (shared
//! with the origin), where a multi-threaded runtime would only add cross-thread wakeups.

use std::process::ExitCode;

use clap::Parser;
use nix::sys::resource::{getrlimit, setrlimit, Resource};
use sluice_bench::loadgen::cli::{CertsArgs, Cli, Mode};
use sluice_bench::loadgen::stats::emit;
use sluice_bench::loadgen::{certs, run_load, LoadMode};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (args, mode) = match &cli.mode {
        Mode::Certs(args) => return write_certs(args),
        Mode::Conns(conns) => (&conns.load, LoadMode::Conns { count: conns.count }),
        Mode::Requests(requests) => (
            &requests.load,
            LoadMode::Requests {
                streams: usize::try_from(requests.streams).unwrap_or(1),
            },
        ),
        Mode::Download(args) => (args, LoadMode::Download),
        Mode::Hold(args) => (args, LoadMode::Hold),
    };
    raise_open_files_limit();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return fail(&format!("tokio runtime: {e}")),
    };
    let outcome = runtime.block_on(run_load(args, mode));
    // `hold` may leave a blocking read of stdin behind, which a plain drop would wait for.
    runtime.shutdown_background();
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("loadgen: nothing succeeded");
            ExitCode::FAILURE
        }
        Err(e) => fail(&e),
    }
}

fn write_certs(args: &CertsArgs) -> ExitCode {
    match certs::run(args) {
        Ok(report) => {
            emit(&report);
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("loadgen: {message}");
    ExitCode::from(2)
}

/// Raises the soft limit on open files to the hard one: `hold` keeps thousands open.
fn raise_open_files_limit() {
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => {
            if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
                eprintln!("loadgen: cannot raise the open-files limit to {hard}: {e}");
            }
        }
        Ok(_) => {}
        Err(e) => eprintln!("loadgen: cannot read the open-files limit: {e}"),
    }
}
