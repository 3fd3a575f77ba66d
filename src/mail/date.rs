//! Dates of the Date field (RFC 5322 3.3): reading one as Dovecot does (for the
//! SENTBEFORE/SENTON/SENTSINCE search keys), writing a parsed one for people, and
//! writing a moment as a field value.

use std::ops::Range;

use chrono::NaiveDate;

use super::lexer::Lexer;

/// The Date field as Dovecot reads it: `[day ","] d month yy[yy] h:mm[:ss] [zone]`
/// with RFC 822 tokens (comments and whitespace between any of them; `.` also
/// separates the time; anything after the zone is ignored). Returns (UTC seconds,
/// zone offset in minutes).
pub fn parse_date(value: &[u8]) -> Option<(i64, i64)> {
    enum Tok<'t> {
        Atom(&'t [u8]),
        Special(u8),
    }
    let mut lx = Lexer::bytes(value);
    let mut toks = Vec::new();
    loop {
        lx.skip_cfws();
        let Some(b) = lx.peek() else { break };
        if let Some(a) = lx.atom() {
            toks.push(Tok::Atom(a));
        } else if lx.quoted_bytes().is_some() {
            toks.push(Tok::Special(b'"'));
        } else {
            lx.pos += 1;
            toks.push(Tok::Special(b));
        }
    }
    let number = |t: Option<&Tok<'_>>, min: usize, max: usize| match t {
        Some(Tok::Atom(a))
            if (min..=max).contains(&a.len()) && a.iter().all(u8::is_ascii_digit) =>
        {
            Some(a.iter().fold(0u32, |n, &d| n * 10 + u32::from(d - b'0')))
        }
        _ => None,
    };
    let mut i = 0;
    if let (Some(Tok::Atom(weekday)), Some(Tok::Special(b','))) = (toks.first(), toks.get(1)) {
        if weekday.len() != 3 {
            return None;
        }
        i = 2;
    }
    let day = number(toks.get(i), 1, 2)?;
    let Some(Tok::Atom(month)) = toks.get(i + 1) else {
        return None;
    };
    let month = month.get(..3)?.to_ascii_lowercase();
    let month = [
        b"jan", b"feb", b"mar", b"apr", b"may", b"jun", b"jul", b"aug", b"sep", b"oct", b"nov",
        b"dec",
    ]
    .iter()
    .position(|m| m.as_slice() == month.as_slice())?;
    let year = match (number(toks.get(i + 2), 2, 4)?, toks.get(i + 2)) {
        (y @ 0..=69, Some(Tok::Atom(a))) if a.len() == 2 => 2000 + y,
        (y, Some(Tok::Atom(a))) if a.len() == 2 => 1900 + y,
        (y @ 1900.., Some(Tok::Atom(a))) if a.len() == 4 => y,
        _ => return None,
    };
    let hour = number(toks.get(i + 3), 1, 2)?;
    let Some(Tok::Special(b':' | b'.')) = toks.get(i + 4) else {
        return None;
    };
    let minute = number(toks.get(i + 5), 2, 2)?;
    i += 6;
    let mut second = 0;
    if let Some(Tok::Special(b':' | b'.')) = toks.get(i) {
        second = number(toks.get(i + 1), 2, 2)?;
        i += 2;
    }
    let offset = match toks.get(i) {
        None => 0,
        Some(Tok::Atom(zone)) => zone_offset(zone),
        Some(Tok::Special(_)) => return None,
    };
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let date = NaiveDate::from_ymd_opt(i32::try_from(year).ok()?, month as u32 + 1, day)?;
    let days = date.signed_duration_since(NaiveDate::from_ymd_opt(1970, 1, 1)?);
    let local = days.num_days() * 86_400
        + i64::from(hour) * 3600
        + i64::from(minute) * 60
        + i64::from(second);
    let utc = local - offset * 60;
    // (time_t)-1 is Dovecot's error value.
    (utc != -1).then_some((utc, offset))
}

fn zone_offset(z: &[u8]) -> i64 {
    match z {
        [sign @ (b'+' | b'-'), digits @ ..]
            if digits.len() == 4 && digits.iter().all(u8::is_ascii_digit) =>
        {
            let n = |r: Range<usize>| {
                digits[r]
                    .iter()
                    .fold(0i64, |acc, &d| acc * 10 + i64::from(d - b'0'))
            };
            let minutes = n(0..2) * 60 + n(2..4);
            if *sign == b'-' { -minutes } else { minutes }
        }
        _ => {
            let hours = match z.to_ascii_uppercase().as_slice() {
                b"EDT" => -4,
                b"EST" | b"CDT" => -5,
                b"CST" | b"MDT" => -6,
                b"MST" | b"PDT" => -7,
                b"PST" => -8,
                _ => 0,
            };
            hours * 60
        }
    }
}

/// Unix seconds as an RFC 5322 date-time in UTC (`Tue, 14 Nov 2023 22:13:20 +0000`),
/// for Date and the dates of delivery status notifications; out of range is the epoch.
pub fn rfc5322(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .unwrap_or_default()
        .to_rfc2822()
}

/// A date mail-parser read, as `YYYY-MM-DD HH:MM +zzzz` in its own zone (the webmail's
/// reply attribution and forward block).
pub fn display(d: &mail_parser::DateTime) -> String {
    let sign = if d.tz_before_gmt { '-' } else { '+' };
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02} {sign}{:02}{:02}",
        d.year, d.month, d.day, d.hour, d.minute, d.tz_hour, d.tz_minute
    )
}
