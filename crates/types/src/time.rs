//! Block time in milliseconds since the Unix epoch, and calendar dates.
//!
//! Contracts read time only from the block header; this module has no clock.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::hash::truncate;
use crate::TypeError;

pub const MS_PER_DAY: u64 = 86_400_000;

/// Milliseconds since 1970-01-01T00:00:00Z.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(transparent)]
pub struct Timestamp(pub u64);

impl Timestamp {
    pub fn ms(self) -> u64 {
        self.0
    }

    /// Midnight UTC at the start of a calendar date.
    pub fn from_ymd(year: i32, month: u32, day: u32) -> Result<Timestamp, TypeError> {
        let bad = |r: &str| TypeError::Invalid {
            what: "date",
            reason: format!("{year:04}-{month:02}-{day:02}: {r}"),
        };
        if !(1970..=9999).contains(&year) {
            return Err(bad("year must be 1970 to 9999"));
        }
        if !(1..=12).contains(&month) {
            return Err(bad("month must be 1 to 12"));
        }
        if day < 1 || day > days_in_month(year, month) {
            return Err(bad("no such day in that month"));
        }
        let days = days_from_civil(year, month, day);
        Ok(Timestamp(days as u64 * MS_PER_DAY))
    }

    /// Parses `YYYY-MM-DD` (midnight UTC), `YYYY-MM-DDTHH:MM:SSZ`, or a plain
    /// integer of milliseconds.
    pub fn parse(s: &str) -> Result<Timestamp, TypeError> {
        let s = s.trim();
        let bad = || TypeError::Invalid {
            what: "time",
            reason: format!(
                "{:?}: expected YYYY-MM-DD, YYYY-MM-DDTHH:MM:SSZ or milliseconds",
                truncate(s)
            ),
        };
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            return s.parse().map(Timestamp).map_err(|_| bad());
        }
        let (date, time) = match s.split_once('T') {
            Some((d, t)) => (d, Some(t)),
            None => (s, None),
        };
        let num = |p: &str, len: usize| -> Result<u32, TypeError> {
            if p.len() != len || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            p.parse().map_err(|_| bad())
        };
        let mut it = date.split('-');
        let (y, m, d) = match (it.next(), it.next(), it.next(), it.next()) {
            (Some(y), Some(m), Some(d), None) => (num(y, 4)?, num(m, 2)?, num(d, 2)?),
            _ => return Err(bad()),
        };
        let mut ts = Timestamp::from_ymd(y as i32, m, d)?;
        if let Some(t) = time {
            let t = t.strip_suffix('Z').ok_or_else(bad)?;
            let mut it = t.split(':');
            let (hh, mm, ss) = match (it.next(), it.next(), it.next(), it.next()) {
                (Some(h), Some(m), Some(s), None) => (num(h, 2)?, num(m, 2)?, num(s, 2)?),
                _ => return Err(bad()),
            };
            if hh > 23 || mm > 59 || ss > 59 {
                return Err(bad());
            }
            ts = Timestamp(ts.0 + ((hh as u64 * 60 + mm as u64) * 60 + ss as u64) * 1000);
        }
        Ok(ts)
    }

    /// The calendar date (UTC) of this instant.
    pub fn ymd(self) -> (i32, u32, u32) {
        civil_from_days((self.0 / MS_PER_DAY) as i64)
    }

    /// `YYYY-MM-DD`.
    pub fn date_string(self) -> String {
        let (y, m, d) = self.ymd();
        format!("{y:04}-{m:02}-{d:02}")
    }

    /// `YYYY-MM-DDTHH:MM:SS.mmmZ`.
    pub fn iso8601(self) -> String {
        let rem = self.0 % MS_PER_DAY;
        let (h, mi, s, ms) = (
            rem / 3_600_000,
            rem / 60_000 % 60,
            rem / 1000 % 60,
            rem % 1000,
        );
        format!("{}T{h:02}:{mi:02}:{s:02}.{ms:03}Z", self.date_string())
    }

    pub fn saturating_add_ms(self, ms: u64) -> Timestamp {
        Timestamp(self.0.saturating_add(ms))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.iso8601())
    }
}
impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({})", self.0)
    }
}
impl FromStr for Timestamp {
    type Err = TypeError;
    fn from_str(s: &str) -> Result<Self, TypeError> {
        Timestamp::parse(s)
    }
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

// Howard Hinnant's days-from-civil algorithm (public-domain description).
fn days_from_civil(y: i32, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y } as i64;
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i32, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    ((if m <= 2 { y + 1 } else { y }) as i32, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_dates() {
        assert_eq!(Timestamp::parse("1970-01-01").unwrap(), Timestamp(0));
        assert_eq!(
            Timestamp::parse("2026-03-01").unwrap(),
            Timestamp(1_772_323_200_000)
        );
        assert_eq!(
            Timestamp::parse("2026-03-01T12:30:05Z").unwrap().0,
            1_772_323_200_000 + (12 * 3600 + 30 * 60 + 5) * 1000
        );
        assert_eq!(Timestamp(1_772_323_200_000).date_string(), "2026-03-01");
        assert_eq!(Timestamp::parse("1234").unwrap(), Timestamp(1234));
    }

    #[test]
    fn bad_dates_are_refused() {
        for bad in [
            "2026-02-30",
            "2025-02-29",
            "2026-13-01",
            "26-03-01",
            "2026-3-1",
            "2026-03-01T25:00:00Z",
            "2026-03-01T10:00:00",
            "yesterday",
            "",
        ] {
            assert!(Timestamp::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(Timestamp::parse("2024-02-29").is_ok());
    }

    proptest! {
        #[test]
        fn civil_round_trip(days in 0i64..2_900_000) {
            let (y, m, d) = civil_from_days(days);
            prop_assert_eq!(days_from_civil(y, m, d), days);
        }
    }
}
