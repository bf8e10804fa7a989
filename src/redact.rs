//! Secrets never reach a report: credentials in URLs, Authorization and Cookie headers, and
//! query parameters whose name says they hold a secret are replaced by `[redacted]`.
//!
//! Every text a report echoes from its input (a log line, a header, a URL) goes through
//! [`redact`].

use regex::Regex;
use std::borrow::Cow;
use std::sync::OnceLock;

const MARK: &str = "[redacted]";

struct Patterns {
    /// `scheme://user:password@host`
    userinfo: Regex,
    /// `Authorization: Bearer …`, `Cookie: …`, `Set-Cookie: …`, `Proxy-Authorization: …`, `X-Api-Key: …`
    header: Regex,
    /// `?password=…&token=…`
    query: Regex,
}

fn patterns() -> &'static Patterns {
    static P: OnceLock<Patterns> = OnceLock::new();
    P.get_or_init(|| Patterns {
        userinfo: Regex::new(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s:@]+:[^/\s@]*@").unwrap(),
        header: Regex::new(
            r#"(?im)\b((?:proxy-)?authorization|set-cookie|cookie|x-api-key|x-auth-token)(\s*[:=]\s*)[^\r\n",]+"#,
        )
        .unwrap(),
        query: Regex::new(
            r"(?i)([?&;](?:password|passwd|pwd|pass|token|access_token|api_key|apikey|secret|client_secret|auth|key|session|sessionid|sig|signature)=)[^&\s#;]+",
        )
        .unwrap(),
    })
}

/// Replaces the secrets in `text`; borrows when there is nothing to replace.
pub fn redact(text: &str) -> Cow<'_, str> {
    let p = patterns();
    let mut out = Cow::Borrowed(text);
    if p.userinfo.is_match(&out) {
        out = Cow::Owned(
            p.userinfo
                .replace_all(&out, format!("${{1}}{MARK}@"))
                .into_owned(),
        );
    }
    if p.header.is_match(&out) {
        out = Cow::Owned(
            p.header
                .replace_all(&out, format!("${{1}}${{2}}{MARK}"))
                .into_owned(),
        );
    }
    if p.query.is_match(&out) {
        out = Cow::Owned(
            p.query
                .replace_all(&out, format!("${{1}}{MARK}"))
                .into_owned(),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn removes_credentials_headers_and_secret_parameters() {
        assert_eq!(
            redact("http://bob:hunter2@db.internal:5432/x"),
            "http://[redacted]@db.internal:5432/x"
        );
        assert_eq!(
            redact("Authorization: Bearer abc.def"),
            "Authorization: [redacted]"
        );
        assert_eq!(redact("cookie: sid=1; theme=dark"), "cookie: [redacted]");
        assert_eq!(
            redact(r#"request: "GET /login?user=a&password=s3cret&x=1 HTTP/1.1""#),
            r#"request: "GET /login?user=a&password=[redacted]&x=1 HTTP/1.1""#
        );
        assert_eq!(redact("GET /health HTTP/1.1"), "GET /health HTTP/1.1");
    }
}
