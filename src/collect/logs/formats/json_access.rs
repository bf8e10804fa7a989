//! JSON-lines access logs: nginx `log_format … escape=json '{…}'`, Caddy's and Traefik's JSON
//! logs. The field names vary, so the common spellings of each are tried.

use super::super::time;
use serde_json::Value;

/// The values of one JSON access line that gwdoctor uses.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct JsonAccess {
    pub time: Option<i64>,
    pub status: Option<u16>,
    pub path: Option<String>,
    pub upstream_addr: Option<String>,
    pub upstream_status: Option<String>,
    pub upstream_response_time: Option<String>,
}

fn lookup<'v>(object: &'v Value, names: &[&str]) -> Option<&'v Value> {
    names.iter().find_map(|name| {
        // "request.uri" reaches into nested objects (Caddy).
        let mut v = object;
        for part in name.split('.') {
            v = v.get(part)?;
        }
        (!v.is_null()).then_some(v)
    })
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Parses one line; `None` when it is not a JSON object with a status.
pub fn parse(line: &[u8]) -> Option<JsonAccess> {
    let trimmed = line.trim_ascii();
    if trimmed.first() != Some(&b'{') {
        return None;
    }
    let object: Value = serde_json::from_slice(trimmed).ok()?;
    let status = lookup(
        &object,
        &[
            "status",
            "status_code",
            "response_status",
            "DownstreamStatus",
            "OriginStatus",
        ],
    )?;
    let status = match status {
        Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }?;
    let time = lookup(
        &object,
        &[
            "time_iso8601",
            "@timestamp",
            "time",
            "timestamp",
            "StartUTC",
            "ts",
            "time_local",
        ],
    )
    .and_then(|v| match v {
        Value::Number(n) => n.as_f64().map(|f| f as i64),
        Value::String(s) => time::iso8601(s.as_bytes()).or_else(|| time::time_local(s.as_bytes())),
        _ => None,
    });
    let path = lookup(
        &object,
        &["request_uri", "uri", "path", "request.uri", "RequestPath"],
    )
    .and_then(text)
    .or_else(|| {
        let request = lookup(&object, &["request"]).and_then(text)?;
        request.split_whitespace().nth(1).map(str::to_string)
    });
    let path = path.map(|p| p.split('?').next().unwrap_or_default().to_string());
    Some(JsonAccess {
        time,
        status: Some(status),
        path,
        upstream_addr: lookup(
            &object,
            &[
                "upstream_addr",
                "upstream",
                "ServiceAddr",
                "upstream_address",
            ],
        )
        .and_then(text),
        upstream_status: lookup(&object, &["upstream_status", "OriginStatus"]).and_then(text),
        upstream_response_time: lookup(
            &object,
            &[
                "upstream_response_time",
                "upstream_duration",
                "OriginDuration",
            ],
        )
        .and_then(text),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nginx_and_caddy_json_lines() {
        let nginx = br#"{"time_iso8601":"2024-05-02T14:02:11+00:00","request":"GET /api/cart?x=1 HTTP/1.1","status":"502","upstream_addr":"127.0.0.1:3000","upstream_status":"502","upstream_response_time":"0.001"}"#;
        let a = parse(nginx).unwrap();
        assert_eq!(a.status, Some(502));
        assert_eq!(a.time, Some(1_714_658_531));
        assert_eq!(a.path.as_deref(), Some("/api/cart"));
        assert_eq!(a.upstream_addr.as_deref(), Some("127.0.0.1:3000"));
        let caddy = br#"{"level":"error","ts":1714658531.5,"logger":"http.log.access","msg":"handled request","request":{"method":"GET","uri":"/x"},"status":502}"#;
        let c = parse(caddy).unwrap();
        assert_eq!(
            (c.status, c.time, c.path.as_deref()),
            (Some(502), Some(1_714_658_531), Some("/x"))
        );
        assert!(parse(b"{not json").is_none());
        assert!(parse(br#"{"msg":"no status"}"#).is_none());
    }
}
