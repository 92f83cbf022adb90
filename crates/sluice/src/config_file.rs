//! Loading the configuration for a command: the file given with -c, or the embedded
//! default. Errors are printed one per line as `FILE:LINE: msg`.

use std::path::Path;
use std::process::ExitCode;

use sluice_policy::Config;

/// The configuration, or `Err` after every error has been printed on stderr.
pub fn load(path: Option<&Path>) -> Result<Config, ExitCode> {
    match path {
        None => Ok(Config::embedded_default()),
        Some(path) => Config::load(path).map_err(|errors| {
            for error in &errors {
                eprintln!("{error}");
            }
            ExitCode::FAILURE
        }),
    }
}

/// `sluice check`.
pub fn check(path: Option<&Path>) -> anyhow::Result<ExitCode> {
    Ok(match load(path) {
        Ok(_) => ExitCode::SUCCESS,
        Err(code) => code,
    })
}
