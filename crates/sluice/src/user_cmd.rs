//! `sluice user add NAME`: add or replace a user in `auth.users_file`, the password read
//! from standard input and stored as an argon2id hash.

use std::io::{BufRead, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context};
use argon2::password_hash::{PasswordHasher, SaltString};

use crate::config_file;

pub fn add(config: Option<&Path>, name: &str) -> anyhow::Result<ExitCode> {
    let config = match config_file::load(config) {
        Ok(config) => config,
        Err(code) => return Ok(code),
    };
    let Some(path) = config.settings.auth.users_file.clone() else {
        bail!("auth.users_file is not set in the configuration: there is no users file to add to");
    };
    if name.is_empty() || name.contains(|c: char| c == ':' || c.is_whitespace() || c.is_control()) {
        bail!("a user name must be non-empty, without ':', spaces or control characters");
    }
    let mut password = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut password)
        .context("reading the password from standard input")?;
    let password = password.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        bail!("the password (read from standard input) is empty");
    }
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>())
        .map_err(|e| anyhow::anyhow!("making a salt: {e}"))?;
    let hash = argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| anyhow::anyhow!("hashing the password: {e}"))?
        .to_string();

    let existing = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let prefix = format!("{name}:");
    let mut replaced = false;
    let mut lines: Vec<String> = existing
        .lines()
        .map(|line| {
            if line.starts_with(&prefix) {
                replaced = true;
                format!("{name}:{hash}")
            } else {
                line.to_string()
            }
        })
        .collect();
    if !replaced {
        lines.push(format!("{name}:{hash}"));
    }
    write_private(&path, &(lines.join("\n") + "\n"))?;
    let verb = if replaced { "replaced" } else { "added" };
    eprintln!(
        "sluice: user {name} {verb} in {}; reload sluice to apply it",
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Replace `path` with `content` atomically, readable by the owner only (0600).
fn write_private(path: &Path, content: &str) -> anyhow::Result<()> {
    let temporary = path.with_extension("new");
    let _ = std::fs::remove_file(&temporary);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temporary)
        .with_context(|| format!("creating {}", temporary.display()))?;
    file.write_all(content.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&temporary, path).with_context(|| format!("replacing {}", path.display()))?;
    Ok(())
}
