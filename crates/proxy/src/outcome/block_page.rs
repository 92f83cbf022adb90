//! The block page (SPEC §3): an HTML page saying what was blocked and why, with
//! `Cache-Control: no-store` and `X-Sluice-Block: <reason>`. Every value put into the
//! page is HTML-escaped: the URL and the detail come from the network.

use bytes::Bytes;
use http::{header, Response, StatusCode};
use sluice_inspect::{render_template, BlockPageFields};

/// Why a request was answered with the block page (the `X-Sluice-Block` value).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockReason {
    Rule,
    Phishing,
    Virus,
    Oversize,
    ScanFailed,
    CertError,
    UpstreamTlsFailed,
    HostMismatch,
}

impl BlockReason {
    pub fn as_str(&self) -> &'static str {
        match self {
            BlockReason::Rule => "rule",
            BlockReason::Phishing => "phishing",
            BlockReason::Virus => "virus",
            BlockReason::Oversize => "oversize",
            BlockReason::ScanFailed => "scan_failed",
            BlockReason::CertError => "cert_error",
            BlockReason::UpstreamTlsFailed => "upstream_tls_failed",
            BlockReason::HostMismatch => "host_mismatch",
        }
    }

    fn headline(&self) -> &'static str {
        match self {
            BlockReason::Rule => "This page is blocked by your organisation's policy",
            BlockReason::Phishing => "This page is a known phishing site",
            BlockReason::Virus => "A virus was found in this download",
            BlockReason::Oversize => "This download is too large to be checked for viruses",
            BlockReason::ScanFailed => "This content could not be checked for viruses",
            BlockReason::CertError => "The site's certificate is not valid",
            BlockReason::UpstreamTlsFailed => "The site's secure connection failed",
            BlockReason::HostMismatch => "The request does not match the site it was sent to",
        }
    }

    fn advice(&self) -> &'static str {
        match self {
            BlockReason::Rule => {
                "If you need this page for your work, ask your network administrator to \
                 review the rule named below."
            }
            BlockReason::Phishing => {
                "Phishing sites imitate trusted ones to steal passwords and payment details. \
                 Do not enter any information. If you believe this is a mistake, tell your \
                 network administrator."
            }
            BlockReason::Virus => {
                "The file was stopped before it reached your computer. Nothing was saved. \
                 If you expected this file, contact its sender or your administrator."
            }
            BlockReason::Oversize => {
                "Files above the scanning limit are not delivered. Ask your network \
                 administrator if you need it."
            }
            BlockReason::ScanFailed => {
                "The virus scanner is unavailable, so the content was held back for your \
                 safety. Try again in a few minutes; if it persists, tell your administrator."
            }
            BlockReason::CertError => {
                "Someone may be impersonating the site, or it is misconfigured. \
                 If you believe the site is safe, ask your network administrator to review it."
            }
            BlockReason::UpstreamTlsFailed => {
                "The server could not agree on a secure connection with the proxy \
                 (it may only support outdated TLS versions or ciphers, or require a client \
                 certificate). Ask your network administrator if you need this site."
            }
            BlockReason::HostMismatch => {
                "A request inside a secure connection named a different site than the \
                 connection itself, a technique used to hide where traffic really goes."
            }
        }
    }
}

/// What the page tells the user.
pub struct BlockPage<'a> {
    pub reason: BlockReason,
    pub detail: &'a str,
    pub url: &'a str,
    pub rule: &'a str,
    pub request_id: &'a str,
}

impl BlockPage<'_> {
    pub fn render(&self) -> String {
        format!(
            r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Blocked by sluice</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;background:#f4f5f7;color:#1d2330;margin:0}}
main{{max-width:42rem;margin:8vh auto;background:#fff;border-radius:12px;padding:2rem 2.5rem;box-shadow:0 2px 12px rgba(0,0,0,.08)}}
h1{{font-size:1.4rem;margin:0 0 .5rem;color:#b3261e}}
dl{{display:grid;grid-template-columns:max-content 1fr;gap:.4rem 1rem;margin:1.5rem 0}}
dt{{color:#5f6675}}dd{{margin:0;word-break:break-all}}
p.advice{{color:#3a4050}}
footer{{color:#8a90a0;font-size:.85rem;margin-top:1.5rem}}
</style></head>
<body><main>
<h1>{headline}</h1>
<p>{detail}</p>
<dl>
<dt>Address</dt><dd>{url}</dd>
<dt>Reason</dt><dd>{reason}</dd>
<dt>Rule</dt><dd>{rule}</dd>
<dt>Request ID</dt><dd>{request_id}</dd>
</dl>
<p class="advice">{advice}</p>
<footer>Quote the request ID when you contact your administrator. &mdash; sluice</footer>
</main></body></html>
"#,
            headline = self.reason.headline(),
            detail = escape(self.detail),
            url = escape(self.url),
            reason = self.reason.as_str(),
            rule = escape(self.rule),
            request_id = escape(self.request_id),
            advice = self.reason.advice(),
        )
    }

    /// The page from a configured template (`block_page.template`), whose placeholders
    /// get HTML-escaped values.
    fn render_template(&self, template: &str) -> String {
        let fields = BlockPageFields {
            reason: self.reason.as_str(),
            detail: self.detail,
            url: self.url,
            rule: self.rule,
            request_id: self.request_id,
        };
        render_template(template, &fields)
    }

    /// The full response: `status`, the page (from `template` when one is configured),
    /// and the block headers.
    pub fn response(&self, status: StatusCode, template: Option<&str>) -> Response<Bytes> {
        let page = match template {
            Some(template) => self.render_template(template),
            None => self.render(),
        };
        let mut response = Response::new(Bytes::from(page));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            "text/html; charset=utf-8".parse().unwrap(),
        );
        headers.insert(header::CACHE_CONTROL, "no-store".parse().unwrap());
        headers.insert("x-sluice-block", self.reason.as_str().parse().unwrap());
        response
    }
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_names_reason_detail_url_and_escapes_them() {
        let page = BlockPage {
            reason: BlockReason::CertError,
            detail: "certificate error: expired",
            url: "https://evil.example/<script>",
            rule: "default",
            request_id: "abc123",
        };
        let response = page.response(StatusCode::BAD_GATEWAY, None);
        assert_eq!(response.status(), 502);
        assert_eq!(response.headers()["x-sluice-block"], "cert_error");
        assert_eq!(response.headers()["cache-control"], "no-store");
        let body = std::str::from_utf8(response.body()).unwrap();
        assert!(body.contains("certificate error: expired"));
        assert!(body.contains("https://evil.example/&lt;script&gt;"));
        assert!(!body.contains("<script>"));
        assert!(body.contains("abc123"));
    }

    #[test]
    fn a_custom_template_gets_the_placeholders_escaped() {
        let page = BlockPage {
            reason: BlockReason::Virus,
            detail: "Eicar-Signature",
            url: "http://x.example/?a=<b>",
            rule: "default",
            request_id: "r1",
        };
        let template = "<h1>{reason}</h1><p>{detail}</p><a>{url}</a>{rule}/{request_id} {other}";
        let response = page.response(StatusCode::FORBIDDEN, Some(template));
        assert_eq!(response.headers()["x-sluice-block"], "virus");
        assert_eq!(
            std::str::from_utf8(response.body()).unwrap(),
            "<h1>virus</h1><p>Eicar-Signature</p><a>http://x.example/?a=&lt;b&gt;</a>default/r1 {other}"
        );
    }
}
