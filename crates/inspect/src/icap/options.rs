//! What an ICAP service says about itself in its OPTIONS response (RFC 3507 §4.10.2),
//! read from a parsed [`IcapResponse`]. Pure.

use std::time::Duration;

use super::parse::IcapResponse;

/// Largest `Max-Connections` honoured: a server announcing more gets this many.
const MAX_CONNECTIONS_CAP: usize = 1024;

/// The settings of an ICAP service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IcapOptions {
    /// `Methods`, uppercase (`RESPMOD`, `REQMOD`).
    pub methods: Vec<String>,
    /// `ISTag`, quotes included, as sent.
    pub istag: Option<String>,
    /// `Service`: the server's description of itself.
    pub service: Option<String>,
    /// `Preview`: how many body bytes the server wants first; `None` when it does not
    /// take previews.
    pub preview: Option<usize>,
    /// `Allow: 204`: whether the server answers 204 outside a preview.
    pub allow_204: bool,
    /// `Max-Connections`, capped at 1024; `None` when not announced.
    pub max_connections: Option<usize>,
    /// `Options-TTL`: how long these options stay valid; `None`: until an error.
    pub ttl: Option<Duration>,
    /// `Transfer-Preview`, `Transfer-Ignore` and `Transfer-Complete`: file extensions,
    /// lowercase, possibly `*`.
    pub transfer_preview: Vec<String>,
    /// See [`IcapOptions::transfer_preview`].
    pub transfer_ignore: Vec<String>,
    /// See [`IcapOptions::transfer_preview`].
    pub transfer_complete: Vec<String>,
}

/// How a body is sent, by the extension of the URL's last path segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transfer {
    /// Send a preview of this many bytes first.
    Preview(usize),
    /// Send the whole body without a preview.
    Complete,
    /// The server does not want it: do not send it at all.
    Ignore,
}

/// An OPTIONS response that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OptionsError {
    /// Not `200 OK`: the service is unknown or failing.
    #[error("OPTIONS answered {status} {reason}")]
    Status {
        /// The status code.
        status: u16,
        /// The reason phrase.
        reason: String,
    },
    /// A header has a value that is not a number where one is needed.
    #[error("OPTIONS header {0} is not a number")]
    BadNumber(&'static str),
}

impl IcapOptions {
    /// Read the options from an OPTIONS response head.
    pub fn from_response(response: &IcapResponse) -> Result<IcapOptions, OptionsError> {
        if response.status != 200 {
            return Err(OptionsError::Status {
                status: response.status,
                reason: response.reason.clone(),
            });
        }
        let list = |name: &str| -> Vec<String> {
            response
                .header(name)
                .map(|v| {
                    v.split(',')
                        .map(|item| item.trim().to_ascii_lowercase())
                        .filter(|item| !item.is_empty())
                        .collect()
                })
                .unwrap_or_default()
        };
        let number = |name: &'static str| -> Result<Option<usize>, OptionsError> {
            response
                .header(name)
                .map(|v| v.trim().parse().map_err(|_| OptionsError::BadNumber(name)))
                .transpose()
        };
        Ok(IcapOptions {
            methods: list("Methods")
                .into_iter()
                .map(|m| m.to_ascii_uppercase())
                .collect(),
            istag: response.header("ISTag").map(str::to_owned),
            service: response.header("Service").map(str::to_owned),
            preview: number("Preview")?,
            allow_204: list("Allow").iter().any(|a| a == "204"),
            max_connections: number("Max-Connections")?.map(|n| n.clamp(1, MAX_CONNECTIONS_CAP)),
            ttl: number("Options-TTL")?
                .map(|secs| Duration::from_secs(u64::try_from(secs).unwrap_or(u64::MAX))),
            transfer_preview: list("Transfer-Preview"),
            transfer_ignore: list("Transfer-Ignore"),
            transfer_complete: list("Transfer-Complete"),
        })
    }

    /// Whether the service takes `method` (`RESPMOD` or `REQMOD`).
    pub fn supports(&self, method: &str) -> bool {
        self.methods.iter().any(|m| m == method)
    }

    /// How to send a body whose URL path ends in `extension` (lowercase, without the
    /// dot; `None` when the last segment has none). A list naming the extension wins;
    /// otherwise the list holding `*` decides; otherwise a preview when the server takes
    /// previews. A preview is only used when the server announced `Preview`.
    pub fn transfer(&self, extension: Option<&str>) -> Transfer {
        let named = |list: &[String]| extension.is_some_and(|e| list.iter().any(|x| x == e));
        let star = |list: &[String]| list.iter().any(|x| x == "*");
        let preview = || self.preview.map_or(Transfer::Complete, Transfer::Preview);
        if named(&self.transfer_ignore) {
            Transfer::Ignore
        } else if named(&self.transfer_complete) {
            Transfer::Complete
        } else if named(&self.transfer_preview) {
            preview()
        } else if star(&self.transfer_ignore) {
            Transfer::Ignore
        } else if star(&self.transfer_complete) {
            Transfer::Complete
        } else {
            preview()
        }
    }
}

/// The extension of the last path segment of a URL or path (`/a/b.EXE?x` → `exe`).
pub(crate) fn extension(uri: &http::Uri) -> Option<String> {
    let segment = uri.path().rsplit('/').next()?;
    let (_, extension) = segment.rsplit_once('.')?;
    (!extension.is_empty()).then(|| extension.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::super::parse::parse_response;
    use super::*;

    fn options(headers: &str) -> IcapOptions {
        let text = format!("ICAP/1.0 200 OK\r\n{headers}Encapsulated: null-body=0\r\n\r\n");
        let (response, _) = parse_response(text.as_bytes()).unwrap().unwrap();
        IcapOptions::from_response(&response).unwrap()
    }

    #[test]
    fn c_icap_virus_scan_options() {
        let capture = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/testdata/options_virus_scan.bin"
        ))
        .unwrap();
        let (response, _) = parse_response(&capture).unwrap().unwrap();
        let o = IcapOptions::from_response(&response).unwrap();
        assert_eq!(o.methods, ["RESPMOD", "REQMOD"]);
        assert!(o.supports("RESPMOD") && o.supports("REQMOD"));
        assert_eq!(
            o.istag.as_deref(),
            Some("\"CI0001-L5CkDhq+qWNs+PZ5DxxXsAAA\"")
        );
        assert_eq!(o.preview, Some(1024));
        assert!(o.allow_204);
        assert_eq!(o.max_connections, Some(8));
        assert_eq!(o.ttl, Some(Duration::from_secs(5)));
        assert_eq!(o.transfer_preview, ["*"]);
        assert_eq!(o.transfer(Some("exe")), Transfer::Preview(1024));
        assert_eq!(o.transfer(None), Transfer::Preview(1024));
        assert_eq!(
            o.service.as_deref(),
            Some("C-ICAP/0.5.10 server - Antivirus service")
        );
    }

    #[test]
    fn transfer_lists_by_extension() {
        let o = options(
            "Preview: 512\r\nTransfer-Preview: *\r\nTransfer-Ignore: JPG, gif\r\nTransfer-Complete: exe\r\n",
        );
        assert_eq!(o.transfer(Some("jpg")), Transfer::Ignore);
        assert_eq!(o.transfer(Some("exe")), Transfer::Complete);
        assert_eq!(o.transfer(Some("html")), Transfer::Preview(512));
        let o = options("Preview: 0\r\nTransfer-Preview: html\r\nTransfer-Complete: *\r\n");
        assert_eq!(o.transfer(Some("html")), Transfer::Preview(0));
        assert_eq!(o.transfer(Some("zip")), Transfer::Complete);
        let o = options("Transfer-Ignore: *\r\nTransfer-Complete: zip\r\n");
        assert_eq!(o.transfer(Some("zip")), Transfer::Complete);
        assert_eq!(o.transfer(None), Transfer::Ignore);
        // No preview announced: never a preview, even for a listed extension.
        let o = options("Transfer-Preview: *\r\n");
        assert_eq!(o.transfer(Some("exe")), Transfer::Complete);
    }

    #[test]
    fn missing_and_bad_values() {
        let o = options("Methods: respmod\r\n");
        assert_eq!(o.methods, ["RESPMOD"]);
        assert!(!o.supports("REQMOD"));
        assert_eq!((o.preview, o.max_connections, o.ttl), (None, None, None));
        assert!(!o.allow_204);
        assert_eq!(options("Max-Connections: 0\r\n").max_connections, Some(1));
        assert_eq!(
            options("Max-Connections: 100000\r\n").max_connections,
            Some(1024)
        );
        let text = "ICAP/1.0 200 OK\r\nPreview: lots\r\n\r\n";
        let (response, _) = parse_response(text.as_bytes()).unwrap().unwrap();
        assert_eq!(
            IcapOptions::from_response(&response),
            Err(OptionsError::BadNumber("Preview"))
        );
        let text = "ICAP/1.0 404 Service not found\r\n\r\n";
        let (response, _) = parse_response(text.as_bytes()).unwrap().unwrap();
        assert_eq!(
            IcapOptions::from_response(&response)
                .unwrap_err()
                .to_string(),
            "OPTIONS answered 404 Service not found"
        );
    }

    #[test]
    fn extensions_of_urls() {
        let ext = |u: &str| extension(&u.parse().unwrap());
        assert_eq!(ext("http://h/a/setup.EXE?x=1"), Some("exe".into()));
        assert_eq!(ext("/file.tar.gz"), Some("gz".into()));
        assert_eq!(ext("/dir.d/file"), None);
        assert_eq!(ext("/"), None);
        assert_eq!(ext("/name."), None);
    }
}
