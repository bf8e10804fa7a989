//! Refiners: the few pieces of knowledge a pattern cannot carry because they compare numbers.
//! A signature names one with `refine = "…"`; the refiner may replace the signature's causes.

/// Every refiner a signature may name (checked when the database loads).
pub const NAMES: &[&str] = &["uwsgi-block-size"];

/// Applies the refiner `name` to a match's causes, given the fields its regex extracted.
pub fn apply(name: &str, causes: &[String], fields: &[(String, String)]) -> Vec<String> {
    let number = |key: &str| {
        fields
            .iter()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| v.trim().parse::<u64>().ok())
    };
    match name {
        // uWSGI reads the first 4 bytes of a request as its packet header. Plain HTTP sent to a
        // uwsgi socket makes "GET " a block size of 21573 ('E' + 'T'·256), far above any buffer;
        // a size just above the buffer is a real uwsgi request whose headers (cookies) are too big.
        "uwsgi-block-size" => match (number("size"), number("max")) {
            (Some(size), Some(max)) if size > max.saturating_mul(4) || size > 16 * 1024 => {
                vec!["protocol-mismatch".to_string()]
            }
            (Some(_), Some(_)) => vec!["upstream-request-header-too-big".to_string()],
            _ => causes.to_vec(),
        },
        _ => causes.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(size: &str, max: &str) -> Vec<(String, String)> {
        vec![("size".into(), size.into()), ("max".into(), max.into())]
    }

    #[test]
    fn uwsgi_block_size_tells_http_from_big_headers() {
        let both = vec![
            "protocol-mismatch".to_string(),
            "upstream-request-header-too-big".to_string(),
        ];
        assert_eq!(
            apply("uwsgi-block-size", &both, &fields("21573", "4096")),
            ["protocol-mismatch"]
        );
        assert_eq!(
            apply("uwsgi-block-size", &both, &fields("4313", "4096")),
            ["upstream-request-header-too-big"]
        );
        assert_eq!(apply("uwsgi-block-size", &both, &[]), both);
    }
}
