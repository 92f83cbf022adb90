//! `[cluster]` (SPEC §12): the Redis (or Valkey) server a fleet of nodes shares its
//! learned bypasses, client-leg ticket keys and authentication back-off through.
//!
//! Only the address is checked here (scheme, host); connecting is the data path's.

use std::path::{Path, PathBuf};

use toml::Spanned;

use crate::diagnostics::Diagnostics;
use crate::raw::RawCluster;
use crate::settings::Secret;

/// `[cluster]`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterSettings {
    /// `cluster.redis`; `None` (empty): each node alone.
    pub redis: Option<RedisSettings>,
}

/// Where the fleet's Redis is and how to log in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisSettings {
    /// `cluster.redis`: `redis://[user[:password]@]host[:port][/db]` or `rediss://…`
    /// (TLS). A secret, as it may carry the password.
    pub url: Secret,
    /// `cluster.redis_password_file`: the password, overriding one in the URL.
    pub password: Option<Secret>,
    /// `cluster.redis_ca`: the roots a `rediss://` server is verified against (PEM);
    /// `None`: the system's roots.
    pub ca: Option<PathBuf>,
}

impl RedisSettings {
    /// Whether the connection is TLS (`rediss://`).
    pub fn tls(&self) -> bool {
        self.url.0.starts_with("rediss://")
    }

    /// The URL without its credentials, for diagnostics.
    pub fn redacted(&self) -> String {
        redact(&self.url.0)
    }
}

/// `url` with any `user:password@` left out.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return String::new();
    };
    let host = match rest.split_once('/') {
        Some((authority, _)) => authority,
        None => rest,
    };
    let host = host.rsplit_once('@').map_or(host, |(_, host)| host);
    format!("{scheme}://{host}")
}

pub(crate) fn compile(
    raw: RawCluster,
    base_dir: &Path,
    diag: &mut Diagnostics<'_>,
) -> ClusterSettings {
    let Some(url) = raw.redis.filter(|v| !v.get_ref().trim().is_empty()) else {
        for (key, value) in [
            ("cluster.redis_password_file", &raw.redis_password_file),
            ("cluster.redis_ca", &raw.redis_ca),
        ] {
            if let Some(value) = value {
                diag.at(value.span(), format!("{key}: needs cluster.redis"));
            }
        }
        return ClusterSettings::default();
    };
    let text = url.get_ref().trim();
    if let Err(problem) = check_url(text) {
        diag.at(url.span(), format!("cluster.redis: {problem}"));
        return ClusterSettings::default();
    }
    let password = raw
        .redis_password_file
        .and_then(|file| read_secret(&file, base_dir, diag));
    let ca = raw.redis_ca.and_then(|file| {
        if !text.starts_with("rediss://") {
            diag.at(
                file.span(),
                "cluster.redis_ca: only a rediss:// (TLS) server is verified against a CA",
            );
            return None;
        }
        readable(&file, base_dir, "cluster.redis_ca", diag)
    });
    ClusterSettings {
        redis: Some(RedisSettings {
            url: Secret(text.to_string()),
            password,
            ca,
        }),
    }
}

/// `redis://` or `rediss://`, then a host.
fn check_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("redis://")
        .or_else(|| url.strip_prefix("rediss://"))
        .ok_or_else(|| {
            format!(
                "`{}` is not a Redis URL; expected redis://host:6379/0 or rediss://host:6380/0",
                redact(url)
            )
        })?;
    let authority = rest.split('/').next().unwrap_or_default();
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if host.is_empty() || host.starts_with(':') {
        return Err("no host in the URL".to_string());
    }
    let db = rest.split_once('/').map_or("", |(_, db)| db);
    if !db.is_empty() && db.parse::<u32>().is_err() {
        return Err(format!("database `{db}` is not a number"));
    }
    Ok(())
}

/// A file's content without its final line break.
fn read_secret(
    file: &Spanned<String>,
    base_dir: &Path,
    diag: &mut Diagnostics<'_>,
) -> Option<Secret> {
    let path = base_dir.join(file.get_ref());
    match std::fs::read_to_string(&path) {
        Ok(text) => Some(Secret(text.trim_end_matches(['\r', '\n']).to_string())),
        Err(e) => {
            diag.at(
                file.span(),
                format!(
                    "cluster.redis_password_file: cannot read {}: {e}",
                    path.display()
                ),
            );
            None
        }
    }
}

fn readable(
    file: &Spanned<String>,
    base_dir: &Path,
    key: &str,
    diag: &mut Diagnostics<'_>,
) -> Option<PathBuf> {
    let path = base_dir.join(file.get_ref());
    match std::fs::read(&path) {
        Ok(_) => Some(path),
        Err(e) => {
            diag.at(
                file.span(),
                format!("{key}: cannot read {}: {e}", path.display()),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;

    fn errors(text: &str) -> Vec<String> {
        match Config::from_str(text, "sluice.toml", Path::new("/nonexistent")) {
            Ok(_) => Vec::new(),
            Err(errors) => errors.iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn absent_or_empty_is_each_node_alone() {
        let config = Config::from_str("", "sluice.toml", Path::new("")).unwrap();
        assert_eq!(config.settings.cluster.redis, None);
        let config =
            Config::from_str("[cluster]\nredis = \"\"\n", "sluice.toml", Path::new("")).unwrap();
        assert_eq!(config.settings.cluster.redis, None);
    }

    #[test]
    fn a_redis_url_with_its_password_file_and_ca() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pw"), "s3cret\n").unwrap();
        std::fs::write(dir.path().join("ca.pem"), "x").unwrap();
        let text = "[cluster]\nredis = \"rediss://:inurl@redis.internal:6380/2\"\n\
                    redis_password_file = \"pw\"\nredis_ca = \"ca.pem\"\n";
        let config = Config::from_str(text, "sluice.toml", dir.path()).unwrap();
        let redis = config.settings.cluster.redis.unwrap();
        assert!(redis.tls());
        assert_eq!(redis.password, Some(Secret("s3cret".into())));
        assert_eq!(redis.ca, Some(dir.path().join("ca.pem")));
        assert_eq!(redis.redacted(), "rediss://redis.internal:6380");
        assert!(
            !format!("{redis:?}").contains("inurl"),
            "Debug hides the URL"
        );
    }

    #[test]
    fn bad_values_name_their_line() {
        let e = errors("[cluster]\nredis = \"http://redis:6379\"\n");
        assert_eq!(e.len(), 1);
        assert!(
            e[0].contains("sluice.toml:2") && e[0].contains("not a Redis URL"),
            "{e:?}"
        );
        let e = errors("[cluster]\nredis = \"redis://:pw@\"\n");
        assert!(e[0].contains("no host") && !e[0].contains("pw"), "{e:?}");
        let e = errors("[cluster]\nredis = \"redis://h/zero\"\n");
        assert!(e[0].contains("not a number"), "{e:?}");
        let e = errors("[cluster]\nredis = \"redis://h\"\nredis_password_file = \"none\"\n");
        assert!(
            e[0].contains("sluice.toml:3") && e[0].contains("cannot read"),
            "{e:?}"
        );
        let e = errors("[cluster]\nredis = \"redis://h\"\nredis_ca = \"ca.pem\"\n");
        assert!(e[0].contains("only a rediss://"), "{e:?}");
        let e = errors("[cluster]\nredis_ca = \"ca.pem\"\n");
        assert!(e[0].contains("needs cluster.redis"), "{e:?}");
    }
}
