//! The real clients: curl and openssl s_client, each bounded in time.

use std::io::Write;
use std::process::{Command, Stdio};

pub struct CurlOutput {
    /// curl's exit code (0 = success, 35 = TLS connect error, 56 = receive failure, 60 =
    /// certificate problem, ...).
    pub code: i32,
    pub status: u16,
    pub headers: String,
    pub body: Vec<u8>,
    pub stderr: String,
}

impl CurlOutput {
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Run curl with `args`; the response head goes to a file, the body to stdout.
pub fn curl(args: &[&str]) -> CurlOutput {
    curl_with_env(args, &[])
}

/// [`curl`] with environment variables (`KRB5CCNAME`, `KRB5_CONFIG`).
pub fn curl_with_env(args: &[&str], env: &[(&str, std::ffi::OsString)]) -> CurlOutput {
    let head = tempfile::NamedTempFile::new().unwrap();
    let output = Command::new("curl")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .args(["-sS", "--max-time", "20", "-D"])
        .arg(head.path())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("running curl");
    let headers = std::fs::read_to_string(head.path()).unwrap_or_default();
    // The last response's status (after a possible "HTTP/1.1 200 Connection established").
    let status = headers
        .lines()
        .filter(|l| l.starts_with("HTTP/"))
        .filter_map(|l| l.split_whitespace().nth(1)?.parse().ok())
        .next_back()
        .unwrap_or(0);
    CurlOutput {
        code: output.status.code().unwrap_or(-1),
        status,
        headers,
        body: output.stdout,
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Run `openssl s_client ARGS`, sending `input`, with a 20 s limit. Returns stdout and
/// stderr together.
pub fn openssl_s_client(args: &[&str], input: &str) -> String {
    let mut child = Command::new("timeout")
        .args(["20", "openssl", "s_client"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running openssl");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// curl through `proxy` to `https://NAME:PORT/PATH`, the CONNECT going to 127.0.0.1:PORT
/// (curl's `--connect-to`), trusting only `cacert`. `extra` goes before the URL.
pub fn fetch(
    proxy: &str,
    name: &str,
    port: u16,
    path: &str,
    cacert: &std::path::Path,
    extra: &[&str],
) -> CurlOutput {
    let url = format!("https://{name}:{port}{path}");
    let connect_to = format!("{name}:{port}:127.0.0.1:{port}");
    let mut args = vec![
        "-x",
        proxy,
        "--cacert",
        cacert.to_str().unwrap(),
        "--connect-to",
        &connect_to,
    ];
    args.extend_from_slice(extra);
    args.push(&url);
    curl(&args)
}
