//! `sluice explain`: which SSL rule decides at each stage for a hypothetical connection.
//! No network access: the destination IP is known only when --host is an IP literal.
//! The learned bypasses are those the running proxy last wrote to `tls.learn_state`.

use std::net::IpAddr;
use std::process::ExitCode;
use std::time::SystemTime;

use sluice_policy::{normalize_domain, SslFacts};
use sluice_proxy::bypass::read_state;
use sluice_proxy::ldap::Directory;

use crate::cli::ExplainArgs;
use crate::config_file;

pub fn explain(args: &ExplainArgs) -> anyhow::Result<ExitCode> {
    let config = match config_file::load(args.config.as_deref()) {
        Ok(config) => config,
        Err(code) => return Ok(code),
    };
    let host = args.host.trim_start_matches('[').trim_end_matches(']');
    let dest_ip: Option<IpAddr> = host.parse().ok();
    let auth = &config.settings.auth;
    let groups = match (&args.user, &auth.ldap) {
        // A Kerberos principal is looked up by its short name (SPEC §10).
        (Some(user), Some(ldap)) if auth.kerberos.is_some() => {
            directory_groups(ldap, sluice_policy::principal_short_name(user))
        }
        (Some(user), Some(ldap)) => directory_groups(ldap, user),
        _ => Vec::new(),
    };
    if let Some(user) = &args.user {
        println!("user {user}, groups: [{}]", groups.join("; "));
    }
    let facts = SslFacts {
        client: args.client,
        user: args.user.as_deref(),
        groups: &groups,
        user_agent: None,
        dest_name: dest_ip.is_none().then_some(host),
        dest_ip,
        port: args.port,
    };
    let name = args.sni.as_deref().or(facts.dest_name);
    let learned = match name.and_then(normalize_domain) {
        None => false,
        Some(name) => {
            let state = &config.settings.tls.learn_state;
            let kept = read_state(state, SystemTime::now()).unwrap_or_else(|e| {
                eprintln!(
                    "sluice: cannot read the learned bypasses in {}: {e}",
                    state.display()
                );
                Vec::new()
            });
            kept.iter().any(|learned| learned.sni == name)
        }
    };
    let explanation = config
        .policy
        .explain_learned(&facts, args.sni.as_deref(), learned);
    println!("{explanation}");
    Ok(ExitCode::SUCCESS)
}

/// `user`'s groups in the directory (SPEC §10); none, said on stderr, when the lookup
/// fails (the rules are then explained without groups).
fn directory_groups(ldap: &sluice_policy::LdapSettings, user: &str) -> Vec<String> {
    let lookup = || -> Result<Vec<String>, String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let directory = Directory::new(ldap).map_err(|e| e.to_string())?;
        runtime.block_on(directory.groups_of(user))
    };
    lookup().unwrap_or_else(|e| {
        eprintln!("sluice: cannot look up the groups of {user}: {e}");
        Vec::new()
    })
}
