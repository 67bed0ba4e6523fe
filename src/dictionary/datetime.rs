//! DATETIME values: parsing ISO 8601 / RFC 3339 text to UTC milliseconds and
//! rendering them back in one canonical form.
//!
//! The canonical text is `YYYY-MM-DDTHH:MM:SSZ`, with `.mmm` before the `Z`
//! only when the milliseconds are not zero: the historic files use exactly
//! that form, so a loaded value reads back as it was written.
//! The fast path handles that form without allocating, since a historic load
//! parses one datetime per row.

use chrono::{DateTime, NaiveDateTime, Timelike};

/// Earliest and latest years accepted: the range of SQL Server's `datetime2`
/// and of four-digit ISO years.
pub const MIN_YEAR: i32 = 1;
/// See [`MIN_YEAR`].
pub const MAX_YEAR: i32 = 9999;

/// UTC milliseconds of 0001-01-01T00:00:00Z, the earliest accepted instant.
pub const MIN_MS: i64 = -62_135_596_800_000;
/// UTC milliseconds of 9999-12-31T23:59:59.999Z, the latest accepted instant.
pub const MAX_MS: i64 = 253_402_300_799_999;

/// Whether a timestamp read from a database is one the dictionary accepts:
/// a server column may hold years the canonical text cannot spell.
pub fn in_range(ms: i64) -> bool {
    (MIN_MS..=MAX_MS).contains(&ms)
}

/// Why a datetime text was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DateTimeError {
    /// Not a valid date-time (wrong shape, impossible date, sub-millisecond digits).
    Format(String),
    /// A valid date-time outside years 1 to 9999 once normalised to UTC.
    Range(String),
}

/// Parses a trimmed, non-empty datetime to milliseconds since the epoch, UTC.
///
/// Accepts RFC 3339 date-times with `T` (or a space, which RFC 3339 allows)
/// between date and time, an optional fraction of up to millisecond
/// precision, and `Z`, an offset such as `+02:00`, or no offset (meaning UTC).
pub fn parse(text: &str) -> Result<i64, DateTimeError> {
    if let Some(ms) = parse_canonical(text.as_bytes()) {
        return ms;
    }
    parse_general(text)
}

/// [`parse`] of bytes that may not be UTF-8 (a database's text): the
/// canonical shape is read as it is, anything else must be UTF-8 first.
pub fn parse_bytes(bytes: &[u8]) -> Result<i64, DateTimeError> {
    if let Some(ms) = parse_canonical(bytes) {
        return ms;
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => parse_general(text),
        Err(_) => Err(DateTimeError::Format("not UTF-8 text".into())),
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ`, the shape of every historic row.
fn parse_canonical(b: &[u8]) -> Option<Result<i64, DateTimeError>> {
    if b.len() != 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
        || b[19] != b'Z'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        b[r].iter().try_fold(0u32, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
        })
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, min, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let year = year as i32;
    if year < MIN_YEAR
        || !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(year, month)
        || hour > 23
        || min > 59
        || sec > 59
    {
        // Let the general parser produce the precise message.
        return None;
    }
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + i64::from(hour * 3600 + min * 60 + sec);
    Some(Ok(secs * 1000))
}

fn parse_general(text: &str) -> Result<i64, DateTimeError> {
    let format_err = || {
        DateTimeError::Format(format!(
            "{text:?} is not an ISO 8601 date-time like 2021-07-27T16:02:08Z"
        ))
    };
    // RFC 3339 (section 5.6, note) lets a space stand for the `T`.
    let normalised;
    let text_t = if text.len() > 10 && text.as_bytes()[10] == b' ' {
        normalised = format!("{}T{}", &text[..10], &text[11..]);
        normalised.as_str()
    } else {
        text
    };
    let utc = match DateTime::parse_from_rfc3339(text_t) {
        Ok(dt) => dt.naive_utc(),
        Err(_) => NaiveDateTime::parse_from_str(text_t, "%Y-%m-%dT%H:%M:%S%.f")
            .map_err(|_| format_err())?,
    };
    if utc.nanosecond() % 1_000_000 != 0 {
        return Err(DateTimeError::Format(format!(
            "{text:?} has sub-millisecond digits; values are stored to the millisecond"
        )));
    }
    if utc.nanosecond() >= 1_000_000_000 {
        return Err(format_err()); // a leap second
    }
    let year = chrono::Datelike::year(&utc);
    if !(MIN_YEAR..=MAX_YEAR).contains(&year) {
        return Err(DateTimeError::Range(format!(
            "{text:?} is outside years {MIN_YEAR}..{MAX_YEAR} in UTC"
        )));
    }
    Ok(utc.and_utc().timestamp_millis())
}

fn is_leap(y: i32) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i32, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap(y) => 29,
        _ => 28,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i32, m: u32, d: u32) -> i64 {
    let y = i64::from(y) - i64::from(m <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day count since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// The year and the month (1 to 12) of a UTC millisecond timestamp, as
/// its canonical text shows them.
pub fn year_month(ms: i64) -> (i64, u32) {
    let (y, m, _) = civil_from_days(ms.div_euclid(86_400_000));
    (y.clamp(0, 9999), m)
}

/// Canonical text of a UTC millisecond timestamp, written into `buf`
/// (24 bytes are always enough). Returns the used part.
pub fn format_into(ms: i64, buf: &mut [u8; 24]) -> &str {
    // Only ASCII digits and separators are written.
    std::str::from_utf8(format_ascii(ms, buf)).unwrap_or_default()
}

/// [`format_into`] as bytes, for callers that bind text as bytes (a
/// database driver) and need no second look at them.
pub fn format_ascii(ms: i64, buf: &mut [u8; 24]) -> &[u8] {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000) as u32;
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400) as u32;
    let y = y.clamp(0, 9999) as u32;
    let put = |buf: &mut [u8; 24], at: usize, v: u32, width: usize| {
        let mut v = v;
        for i in (0..width).rev() {
            buf[at + i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(buf, 0, y, 4);
    buf[4] = b'-';
    put(buf, 5, m, 2);
    buf[7] = b'-';
    put(buf, 8, d, 2);
    buf[10] = b'T';
    put(buf, 11, sod / 3600, 2);
    buf[13] = b':';
    put(buf, 14, sod / 60 % 60, 2);
    buf[16] = b':';
    put(buf, 17, sod % 60, 2);
    let len = if millis == 0 {
        buf[19] = b'Z';
        20
    } else {
        buf[19] = b'.';
        put(buf, 20, millis, 3);
        buf[23] = b'Z';
        24
    };
    &buf[..len]
}

/// Canonical text of a UTC millisecond timestamp.
pub fn format(ms: i64) -> String {
    let mut buf = [0u8; 24];
    format_into(ms, &mut buf).to_owned()
}

/// The current time in canonical text.
pub fn now_text() -> String {
    format(chrono::Utc::now().timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_round_trip() {
        for text in [
            "2021-07-27T16:02:08Z",
            "1970-01-01T00:00:00Z",
            "2000-02-29T23:59:59Z",
            "0001-01-01T00:00:00Z",
            "9999-12-31T23:59:59.999Z",
            "1969-12-31T23:59:59.500Z",
        ] {
            let ms = parse(text).unwrap();
            assert_eq!(format(ms), text);
        }
    }

    #[test]
    fn fast_path_agrees_with_chrono() {
        for text in [
            "2021-07-27T16:02:08Z",
            "1999-03-01T00:00:00Z",
            "2400-02-29T12:00:00Z",
        ] {
            let chrono_ms = DateTime::parse_from_rfc3339(text)
                .unwrap()
                .timestamp_millis();
            assert_eq!(parse(text).unwrap(), chrono_ms, "{text}");
            assert_eq!(parse_general(text).unwrap(), chrono_ms, "{text}");
        }
    }

    #[test]
    fn offsets_are_normalised_to_utc() {
        for (text, utc) in [
            ("2021-07-27T16:02:08+02:00", "2021-07-27T14:02:08Z"),
            ("2021-07-27T16:02:08", "2021-07-27T16:02:08Z"),
            ("2021-07-27 16:02:08", "2021-07-27T16:02:08Z"),
            ("2021-07-27T16:02:08.25Z", "2021-07-27T16:02:08.250Z"),
        ] {
            assert_eq!(format(parse(text).unwrap()), utc, "{text}");
        }
    }

    #[test]
    fn impossible_and_malformed_dates_are_format_errors() {
        for text in [
            "2021-02-30T10:00:00Z",
            "2021-13-01T00:00:00Z",
            "2021-02-29T00:00:00Z",
            "2021-07-27T24:00:00Z",
            "2021-07-27T16:60:00Z",
            "yesterday",
            "2021-07-27",
            "2021-07-27T16:02:08.1234Z",
            "2021-07-27T16:02:08+25:00",
        ] {
            assert!(
                matches!(parse(text), Err(DateTimeError::Format(_))),
                "{text}"
            );
        }
    }

    #[test]
    fn range_bounds_are_the_first_and_last_accepted_instants() {
        assert_eq!(parse("0001-01-01T00:00:00Z"), Ok(MIN_MS));
        assert_eq!(parse("9999-12-31T23:59:59.999Z"), Ok(MAX_MS));
        assert!(in_range(MIN_MS) && in_range(MAX_MS));
        assert!(!in_range(MIN_MS - 1) && !in_range(MAX_MS + 1));
    }

    #[test]
    fn years_outside_sql_range_are_range_errors() {
        assert!(matches!(
            parse("0000-12-31T23:00:00Z"),
            Err(DateTimeError::Range(_))
        ));
        assert!(matches!(
            parse("9999-12-31T23:00:00-02:00"),
            Err(DateTimeError::Range(_))
        ));
    }
}
