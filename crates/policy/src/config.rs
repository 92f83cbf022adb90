//! Loading a configuration: TOML → raw model → validated [`Settings`] and [`Policy`].

use std::path::Path;

use crate::anti_virus;
use crate::categories;
use crate::cluster;
use crate::compile;
use crate::diagnostics::{ConfigError, Diagnostics};
use crate::pac;
use crate::phishing;
use crate::policy::Policy;
use crate::raw::RawConfig;
use crate::recover;
use crate::rules;
use crate::settings::Settings;
use crate::upstream_proxies::{self, Via};

/// A loaded, valid configuration. Built once per load; the caller shares it (`Arc`) and
/// swaps it whole on reload.
#[derive(Debug)]
pub struct Config {
    /// Everything that is not a rule.
    pub settings: Settings,
    /// The compiled SSL and HTTP rules and the anti-phishing lists.
    pub policy: Policy,
}

/// FILE in errors about the embedded default (which has none).
const EMBEDDED_NAME: &str = "<embedded default>";

impl Config {
    /// Read, parse and validate the file at `path`. Errors name the file as given and
    /// relative paths inside it are resolved against its folder.
    pub fn load(path: &Path) -> Result<Config, Vec<ConfigError>> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            vec![ConfigError {
                file: shown.clone(),
                line: None,
                message: format!("cannot read the configuration: {e}"),
            }]
        })?;
        Config::from_str(&text, &shown, path.parent().unwrap_or(Path::new("")))
    }

    /// Parse and validate `text`. `display_name` is FILE in errors; `base_dir` resolves
    /// relative paths (and is where category lists, phishing lists and the block-page
    /// template are read from).
    ///
    /// A TOML syntax error is reported alone; every other problem (unknown keys, values
    /// of the wrong type, bad rules) is collected, so the result lists them all.
    pub fn from_str(
        text: &str,
        display_name: &str,
        base_dir: &Path,
    ) -> Result<Config, Vec<ConfigError>> {
        let (mut raw, shape_errors) = recover::deserialize_all::<RawConfig>(text, display_name)?;
        let mut diag = Diagnostics::new(display_name, text);
        diag.extend(shape_errors);
        let proxy_protocol = raw.proxy.proxy_protocol.unwrap_or(false);
        let hosts_file = compile::hosts_file(raw.proxy.hosts_file.take(), base_dir, &mut diag);
        let proxy_protocol_from = compile::proxy_protocol_from(
            raw.proxy.proxy_protocol_from.take(),
            proxy_protocol,
            &mut diag,
        );
        let deny_destinations =
            compile::deny_destinations(raw.proxy.deny_destinations.take(), &mut diag);
        let upstream_proxies = upstream_proxies::compile(
            std::mem::take(&mut raw.upstream_proxies),
            base_dir,
            &mut diag,
        );
        let default_via = match raw.proxy.default_via.take() {
            None => Via::Direct,
            Some(via) => upstream_proxies::resolve_via(
                &via,
                &upstream_proxies,
                "proxy.default_via",
                &mut diag,
            )
            .unwrap_or_default(),
        };
        let sockets = compile::proxy(raw.proxy, &mut diag);
        let (admin_listen, admin_token) = compile::admin(raw.admin, base_dir, &mut diag);
        let settings = Settings {
            listen: sockets.listen,
            transparent_listen: sockets.transparent_listen,
            proxy_protocol,
            hosts_file,
            proxy_protocol_from,
            admin_listen,
            admin_token,
            deny_destinations,
            upstream_proxies,
            default_via,
            auth: compile::auth(raw.auth, base_dir, &mut diag),
            connect_ports: sockets.connect_ports,
            tls: compile::tls(raw.tls, base_dir, &mut diag),
            anti_virus: anti_virus::compile(raw.anti_virus, base_dir, &mut diag),
            block_page: compile::block_page(raw.block_page, base_dir, &mut diag),
            pac: pac::compile(raw.pac, base_dir, &mut diag),
            log: compile::log(raw.log, base_dir, &mut diag),
            limits: compile::limits(raw.limits, &mut diag),
            cluster: cluster::compile(raw.cluster, base_dir, &mut diag),
        };
        let categories = categories::compile(raw.categories, base_dir, &mut diag);
        let parents = &settings.upstream_proxies;
        let ssl_rules = rules::compile_ssl(raw.ssl_rules, &categories, parents, &mut diag);
        let http_rules = rules::compile_http(raw.http_rules, &categories, parents, &mut diag);
        let phishing = phishing::compile(raw.anti_phishing.lists, base_dir, &mut diag);
        diag.finish()?;
        Ok(Config {
            policy: Policy::new(
                &settings.tls,
                settings.default_via.clone(),
                ssl_rules,
                http_rules,
                phishing,
            ),
            settings,
        })
    }

    /// The embedded default of SPEC §6: an empty configuration (every key at its
    /// default), relative paths resolved against the current directory.
    pub fn embedded_default() -> Config {
        match Config::from_str("", EMBEDDED_NAME, Path::new("")) {
            Ok(config) => config,
            // An empty file is valid by construction; the tests check it.
            Err(errors) => unreachable!("the embedded default is invalid: {errors:?}"),
        }
    }
}
