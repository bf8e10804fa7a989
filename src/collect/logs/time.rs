//! Timestamps of the log formats gwdoctor reads, as seconds since the Unix epoch.
//!
//! Hand-written because each format needs one fixed shape parsed millions of times: the
//! parsers check the shape byte by byte and do no allocation. Times without a zone (nginx's
//! error log, PHP-FPM, Apache's error log) are taken as written, in the server's local time,
//! which is all a timeline of one server needs; the access log's zone is honoured.

/// Days from 1970-01-01 to the civil date (proleptic Gregorian), after Howard Hinnant.
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = month as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date and time of a Unix time: (year, month, day, hour, minute, second).
pub fn civil_from_unix(t: i64) -> (i64, u32, u32, u32, u32, u32) {
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    let z = days + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        year,
        month,
        day,
        (secs / 3600) as u32,
        ((secs % 3600) / 60) as u32,
        (secs % 60) as u32,
    )
}

/// `2024-05-02 14:02:11` for reports.
pub fn format(t: i64) -> String {
    let (y, mo, d, h, mi, s) = civil_from_unix(t);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}")
}

fn digits(b: &[u8]) -> Option<u32> {
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(b.iter().fold(0u32, |n, &d| n * 10 + u32::from(d - b'0')))
}

fn month_number(name: &[u8]) -> Option<u32> {
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    MONTHS
        .iter()
        .position(|m| m.as_slice() == name)
        .map(|i| i as u32 + 1)
}

fn assemble(year: u32, month: u32, day: u32, h: u32, mi: u32, s: u32) -> Option<i64> {
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    Some(days_from_civil(i64::from(year), month, day) * 86_400 + i64::from(h * 3600 + mi * 60 + s))
}

/// `HH:MM:SS` at `b[0..8]`.
fn clock(b: &[u8]) -> Option<(u32, u32, u32)> {
    if b.len() < 8 || b[2] != b':' || b[5] != b':' {
        return None;
    }
    Some((digits(&b[0..2])?, digits(&b[3..5])?, digits(&b[6..8])?))
}

/// nginx error log: `2024/05/02 14:02:11` at the start of the line.
pub fn nginx_error(b: &[u8]) -> Option<i64> {
    if b.len() < 19 || b[4] != b'/' || b[7] != b'/' || b[10] != b' ' {
        return None;
    }
    let (h, mi, s) = clock(&b[11..19])?;
    assemble(
        digits(&b[0..4])?,
        digits(&b[5..7])?,
        digits(&b[8..10])?,
        h,
        mi,
        s,
    )
}

/// nginx/Apache access log `$time_local`: `02/May/2024:14:02:11 +0200` (without the brackets),
/// converted to UTC.
pub fn time_local(b: &[u8]) -> Option<i64> {
    if b.len() < 20 || b[2] != b'/' || b[6] != b'/' || b[11] != b':' {
        return None;
    }
    let (h, mi, s) = clock(&b[12..20])?;
    let t = assemble(
        digits(&b[7..11])?,
        month_number(&b[3..6])?,
        digits(&b[0..2])?,
        h,
        mi,
        s,
    )?;
    // " +0200"
    if b.len() >= 26 && b[20] == b' ' && (b[21] == b'+' || b[21] == b'-') {
        let hours = digits(&b[22..24])? as i64;
        let minutes = digits(&b[24..26])? as i64;
        let offset = (hours * 3600 + minutes * 60) * if b[21] == b'-' { -1 } else { 1 };
        return Some(t - offset);
    }
    Some(t)
}

/// ISO 8601 / RFC 3339 (`$time_iso8601`, JSON logs, gunicorn): `2024-05-02T14:02:11+00:00`,
/// `2024-05-02 14:02:11 +0000`, with optional fractions and zone.
pub fn iso8601(b: &[u8]) -> Option<i64> {
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || !(b[10] == b'T' || b[10] == b' ') {
        return None;
    }
    let (h, mi, s) = clock(&b[11..19])?;
    let t = assemble(
        digits(&b[0..4])?,
        digits(&b[5..7])?,
        digits(&b[8..10])?,
        h,
        mi,
        s,
    )?;
    let mut rest = &b[19..];
    if rest.first() == Some(&b'.') || rest.first() == Some(&b',') {
        let n = rest[1..].iter().take_while(|c| c.is_ascii_digit()).count();
        rest = &rest[1 + n..];
    }
    if rest.first() == Some(&b' ') {
        rest = &rest[1..];
    }
    match rest.first() {
        Some(b'Z') => Some(t),
        Some(&sign @ (b'+' | b'-')) => {
            let zone: Vec<u8> = rest[1..]
                .iter()
                .copied()
                .filter(|c| *c != b':')
                .take(4)
                .collect();
            if zone.len() < 4 {
                return Some(t);
            }
            let offset = i64::from(digits(&zone[0..2])? * 3600 + digits(&zone[2..4])? * 60);
            Some(if sign == b'-' { t + offset } else { t - offset })
        }
        _ => Some(t),
    }
}

/// Apache error log: `[Thu May 02 14:02:11.123456 2024]` (the text inside the brackets).
pub fn apache_error(b: &[u8]) -> Option<i64> {
    // "Thu May 02 14:02:11.123456 2024"
    if b.len() < 24 || b[3] != b' ' || b[7] != b' ' || b[10] != b' ' {
        return None;
    }
    let (h, mi, s) = clock(&b[11..19])?;
    let year_at = b.iter().rposition(|&c| c == b' ')? + 1;
    assemble(
        digits(&b[year_at..])?,
        month_number(&b[4..7])?,
        digits(b[8..10].trim_ascii())?,
        h,
        mi,
        s,
    )
}

/// PHP-FPM and PHP: `02-May-2024 14:02:11` (inside the brackets).
pub fn fpm(b: &[u8]) -> Option<i64> {
    if b.len() < 20 || b[2] != b'-' || b[6] != b'-' || b[11] != b' ' {
        return None;
    }
    let (h, mi, s) = clock(&b[12..20])?;
    assemble(
        digits(&b[7..11])?,
        month_number(&b[3..6])?,
        digits(&b[0..2])?,
        h,
        mi,
        s,
    )
}

/// syslog: `May  2 14:02:11` (no year: the year of `reference` is used).
pub fn syslog(b: &[u8], reference_year: i64) -> Option<i64> {
    if b.len() < 15 || b[3] != b' ' || b[6] != b' ' {
        return None;
    }
    let (h, mi, s) = clock(&b[7..15])?;
    assemble(
        reference_year as u32,
        month_number(&b[0..3])?,
        digits(b[4..6].trim_ascii())?,
        h,
        mi,
        s,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_format_gives_the_same_instant() {
        let t = 1_714_658_531; // 2024-05-02 14:02:11 UTC
        assert_eq!(nginx_error(b"2024/05/02 14:02:11 [error]"), Some(t));
        assert_eq!(time_local(b"02/May/2024:14:02:11 +0000"), Some(t));
        assert_eq!(time_local(b"02/May/2024:16:02:11 +0200"), Some(t));
        assert_eq!(iso8601(b"2024-05-02T14:02:11+00:00"), Some(t));
        assert_eq!(iso8601(b"2024-05-02T16:02:11.123+02:00"), Some(t));
        assert_eq!(iso8601(b"2024-05-02 14:02:11 +0000"), Some(t));
        assert_eq!(iso8601(b"2024-05-02T14:02:11Z"), Some(t));
        assert_eq!(apache_error(b"Thu May 02 14:02:11.123456 2024"), Some(t));
        assert_eq!(fpm(b"02-May-2024 14:02:11"), Some(t));
        assert_eq!(syslog(b"May  2 14:02:11", 2024), Some(t));
        assert_eq!(format(t), "2024-05-02 14:02:11");
    }

    #[test]
    fn malformed_times_are_refused() {
        for bad in [
            &b"2024/13/02 14:02:11"[..],
            b"2024/05/02 25:02:11",
            b"xx",
            b"",
            b"2024/05/02 14:0",
        ] {
            assert_eq!(nginx_error(bad), None);
        }
        assert_eq!(time_local(b"02/Foo/2024:14:02:11 +0000"), None);
        for t in [0i64, 86_399, 951_782_400, 4_102_444_800] {
            let (y, mo, d, h, mi, s) = civil_from_unix(t);
            assert_eq!(assemble(y as u32, mo, d, h, mi, s), Some(t));
        }
    }
}
