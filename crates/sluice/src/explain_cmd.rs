//! `sluice explain`: which SSL rule decides at each stage for a hypothetical connection.
//! No network access: the destination IP is known only when --host is an IP literal.

use std::net::IpAddr;
use std::process::ExitCode;

use sluice_policy::SslFacts;

use crate::cli::ExplainArgs;
use crate::config_file;

pub fn explain(args: &ExplainArgs) -> anyhow::Result<ExitCode> {
    let config = match config_file::load(args.config.as_deref()) {
        Ok(config) => config,
        Err(code) => return Ok(code),
    };
    let host = args.host.trim_start_matches('[').trim_end_matches(']');
    let dest_ip: Option<IpAddr> = host.parse().ok();
    let facts = SslFacts {
        client: args.client,
        user: args.user.as_deref(),
        user_agent: None,
        dest_name: dest_ip.is_none().then_some(host),
        dest_ip,
        port: args.port,
    };
    let explanation = config.policy.explain(&facts, args.sni.as_deref());
    println!("{explanation}");
    Ok(ExitCode::SUCCESS)
}
