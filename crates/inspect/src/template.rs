//! Block-page templates (SPEC §3, `block_page.template`): the placeholders `{reason}`,
//! `{detail}`, `{url}`, `{rule}` and `{request_id}` replaced by HTML-escaped values.
//! Pure.
//!
//! Only those five exact placeholders are replaced; every other brace is left as it is,
//! so a template may hold CSS (`body { margin: 0 }`) or scripts. Values are escaped for
//! HTML text and attribute values (`&`, `<`, `>`, `"`, `'`), so a URL cannot inject
//! markup into the page.

/// The values of a block page's placeholders, unescaped.
#[derive(Clone, Copy, Debug, Default)]
pub struct BlockPageFields<'a> {
    /// `{reason}`: the block reason (`rule`, `phishing`, `virus`...).
    pub reason: &'a str,
    /// `{detail}`: what exactly (the threat, the phishing-list entry, the error).
    pub detail: &'a str,
    /// `{url}`: the blocked URL.
    pub url: &'a str,
    /// `{rule}`: the deciding rule's name, or `default`.
    pub rule: &'a str,
    /// `{request_id}`: the request's id, as in the access log.
    pub request_id: &'a str,
}

/// `template` with its placeholders replaced.
pub fn render_template(template: &str, fields: &BlockPageFields<'_>) -> String {
    let placeholders = [
        ("{reason}", fields.reason),
        ("{detail}", fields.detail),
        ("{url}", fields.url),
        ("{rule}", fields.rule),
        ("{request_id}", fields.request_id),
    ];
    let mut out = String::with_capacity(template.len() + 256);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let here = &rest[open..];
        match placeholders.iter().find(|(name, _)| here.starts_with(name)) {
            Some((name, value)) => {
                escape_into(&mut out, value);
                rest = &here[name.len()..];
            }
            None => {
                out.push('{');
                rest = &here[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Append `text` escaped for HTML.
fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn placeholders_are_replaced_and_escaped() {
        let fields = BlockPageFields {
            reason: "virus",
            detail: "Eicar-Test-Signature",
            url: "http://x.example/?a=<script>&b=\"'",
            rule: "default",
            request_id: "r-42",
        };
        let page = render_template(
            "<style>p { color: red }</style><p>{reason}: {detail}</p><a href=\"{url}\">{url}</a> {rule} {request_id} {unknown} {reason",
            &fields,
        );
        assert_eq!(
            page,
            "<style>p { color: red }</style><p>virus: Eicar-Test-Signature</p><a href=\"http://x.example/?a=&lt;script&gt;&amp;b=&quot;&#39;\">http://x.example/?a=&lt;script&gt;&amp;b=&quot;&#39;</a> default r-42 {unknown} {reason"
        );
    }

    #[test]
    fn values_are_not_rescanned_for_placeholders() {
        let fields = BlockPageFields {
            reason: "{url}",
            url: "u",
            ..BlockPageFields::default()
        };
        assert_eq!(render_template("{reason}{url}é", &fields), "{url}ué");
    }

    proptest! {
        #[test]
        fn rendering_never_panics_and_never_leaks_markup(
            template in "\\PC{0,60}",
            value in "\\PC{0,30}",
        ) {
            let fields = BlockPageFields { reason: &value, detail: &value, url: &value, rule: &value, request_id: &value };
            let _ = render_template(&template, &fields);
            let rendered = render_template("{url}", &fields);
            prop_assert!(!rendered.contains(['<', '>', '"', '\'']));
        }
    }
}
