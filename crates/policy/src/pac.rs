//! Proxy auto-configuration (SPEC §11): the PAC script that `/proxy.pac` and `/wpad.dat`
//! serve, either the operator's own file (`pac.file`, read at load time) or one written
//! from `pac.proxy`.

use std::path::Path;

use toml::Spanned;

use crate::diagnostics::Diagnostics;
use crate::raw::RawPac;
use crate::upstream_proxies::{proxy_address, AddressError};

/// The paths a PAC script is served on (admin endpoint and proxy listener alike):
/// `/proxy.pac` by convention, `/wpad.dat` for Web Proxy Auto-Discovery.
pub const PAC_PATHS: [&str; 2] = ["/proxy.pac", "/wpad.dat"];

/// The media type browsers expect a PAC script in.
pub const PAC_CONTENT_TYPE: &str = "application/x-ns-proxy-autoconfig";

/// Whether `path` (without the query) is one a PAC script is served on.
pub fn is_pac_path(path: &str) -> bool {
    PAC_PATHS.contains(&path)
}

/// `[pac]`: the script to serve, or `None` when neither key is set.
pub(crate) fn compile(raw: RawPac, base_dir: &Path, diag: &mut Diagnostics<'_>) -> Option<String> {
    let file = raw.file.filter(|f| !f.get_ref().trim().is_empty());
    let proxy = raw.proxy.filter(|p| !p.get_ref().trim().is_empty());
    match (file, proxy) {
        (None, None) => None,
        (Some(_), Some(proxy)) => {
            diag.at(
                proxy.span(),
                "pac.proxy: set pac.file or pac.proxy, not both",
            );
            None
        }
        (Some(file), None) => read_file(&file, base_dir, diag),
        (None, Some(proxy)) => match check_proxy_address(proxy.get_ref().trim()) {
            Ok(address) => Some(generated_script(address)),
            Err(why) => {
                diag.at(proxy.span(), format!("pac.proxy: {why}"));
                None
            }
        },
    }
}

/// `pac.file`, read now so that a missing file is a load error rather than a 404 later.
fn read_file(
    file: &Spanned<String>,
    base_dir: &Path,
    diag: &mut Diagnostics<'_>,
) -> Option<String> {
    let path = base_dir.join(file.get_ref());
    match std::fs::read_to_string(&path) {
        // Every PAC script defines this function; a file without it is the wrong file.
        Ok(text) if text.contains("FindProxyForURL") => Some(text),
        Ok(_) => {
            let why = "does not define FindProxyForURL, so it is not a PAC script";
            diag.at(file.span(), format!("pac.file: {} {why}", path.display()));
            None
        }
        Err(e) => {
            diag.at(
                file.span(),
                format!("pac.file: cannot read {}: {e}", path.display()),
            );
            None
        }
    }
}

/// `host:port` (host a DNS name, an IPv4 address or a bracketed IPv6 one). Only these
/// characters reach the generated script, so the address cannot break out of its string.
fn check_proxy_address(address: &str) -> Result<&str, String> {
    let why = match proxy_address(address) {
        Ok(_) => return Ok(address),
        Err(AddressError::BadV6 | AddressError::BadHost) => {
            "the host must be a DNS name or an IP address, IPv6 in brackets"
        }
        Err(other) => other.text(),
    };
    Err(format!("`{address}` is not host:port ({why})"))
}

/// The script written from `pac.proxy`: `DIRECT` for plain host names (no dot),
/// `localhost` and addresses in private, loopback and link-local ranges; everything else
/// `PROXY address; DIRECT` (the proxy, then direct when it cannot be reached: SPEC §11's
/// "then DIRECT"). Only IP literals are tested against the ranges, so the script never
/// makes the browser resolve a name; IPv6 literals are tested before `isPlainHostName`,
/// which would call every one of them plain (they have no dot).
fn generated_script(address: &str) -> String {
    format!(
        r#"// Written by sluice from pac.proxy.
function FindProxyForURL(url, host) {{
  if (host.indexOf(":") >= 0) {{
    if (/^(::1|f[cd][0-9a-f]*:.*|fe[89ab][0-9a-f]:.*)$/i.test(host))
      return "DIRECT";
    return "PROXY {address}; DIRECT";
  }}
  if (isPlainHostName(host) || host.toLowerCase() === "localhost")
    return "DIRECT";
  if (/^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$/.test(host) &&
      (isInNet(host, "10.0.0.0", "255.0.0.0") ||
       isInNet(host, "172.16.0.0", "255.240.0.0") ||
       isInNet(host, "192.168.0.0", "255.255.0.0") ||
       isInNet(host, "127.0.0.0", "255.0.0.0") ||
       isInNet(host, "169.254.0.0", "255.255.0.0")))
    return "DIRECT";
  return "PROXY {address}; DIRECT";
}}
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_addresses_are_host_and_port() {
        for good in [
            "proxy.corp.example:3128",
            "10.0.0.1:8080",
            "[2001:db8::1]:3128",
            "proxy:1",
        ] {
            assert_eq!(check_proxy_address(good), Ok(good), "{good}");
        }
        for bad in [
            "proxy.corp.example",
            "proxy.corp.example:0",
            "proxy.corp.example:65536",
            ":3128",
            "2001:db8::1:3128",
            "[2001:db8::zz]:3128",
            "a..b:3128",
            "proxy\";alert(1);\":3128",
            "proxy example:3128",
        ] {
            assert!(check_proxy_address(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_generated_script_names_the_proxy_and_its_exceptions() {
        let script = generated_script("proxy.corp.example:3128");
        assert!(script.contains("function FindProxyForURL(url, host)"));
        assert_eq!(
            script
                .matches("return \"PROXY proxy.corp.example:3128; DIRECT\";")
                .count(),
            2
        );
        assert!(script.contains("isPlainHostName(host)"));
        assert!(script.contains("\"192.168.0.0\", \"255.255.0.0\""));
    }

    #[test]
    fn only_the_pac_paths_are_pac_paths() {
        assert!(is_pac_path("/proxy.pac"));
        assert!(is_pac_path("/wpad.dat"));
        for other in ["/", "/proxy.pac/", "/PROXY.PAC", "/wpad.da", "proxy.pac"] {
            assert!(!is_pac_path(other), "{other}");
        }
    }
}
