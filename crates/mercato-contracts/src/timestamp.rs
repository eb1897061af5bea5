//! RFC 3339 rendering of the envelope's `time`, from epoch milliseconds.
//!
//! Services keep time as epoch milliseconds; the envelope shows it as UTC with milliseconds
//! (`2026-11-21T10:00:00.123Z`), the same shape as the HTTP API. Done with `std` alone so this
//! crate stays free of date libraries: only formatting is needed, never parsing or time zones.

const MILLIS_PER_DAY: i64 = 86_400_000;

/// `0000-01-01T00:00:00.000Z`: RFC 3339 has four-digit years, so earlier instants are clamped.
const EARLIEST_MILLIS: i64 = -62_167_219_200_000;

/// `9999-12-31T23:59:59.999Z`, the last instant with a four-digit year.
const LATEST_MILLIS: i64 = 253_402_300_799_999;

/// Formats epoch milliseconds as RFC 3339 in UTC with milliseconds: `2026-11-21T10:00:00.123Z`.
///
/// Instants outside years 0000..=9999 are clamped to the nearest representable one, so the output
/// is always a valid RFC 3339 timestamp.
pub fn format_rfc3339_millis(millis: i64) -> String {
    let millis = millis.clamp(EARLIEST_MILLIS, LATEST_MILLIS);
    let days = millis.div_euclid(MILLIS_PER_DAY);
    let millis_of_day = millis.rem_euclid(MILLIS_PER_DAY);
    let (year, month, day) = civil_from_days(days);
    let hours = millis_of_day / 3_600_000;
    let minutes = millis_of_day / 60_000 % 60;
    let seconds = millis_of_day / 1_000 % 60;
    let fraction = millis_of_day % 1_000;
    format!("{year:04}-{month:02}-{day:02}T{hours:02}:{minutes:02}:{seconds:02}.{fraction:03}Z")
}

/// Converts days since 1970-01-01 to a proleptic Gregorian (year, month, day).
///
/// Howard Hinnant's `civil_from_days`: shifting the year to start on 1 March puts the leap day at
/// the end, so month lengths follow the fixed 153-days-per-5-months pattern and leap years only
/// show up in the 4/100/400-year era arithmetic.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let shifted = days + 719_468; // days from 0000-03-01
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097); // 0..=146_096
    // 0..=399: the corrections undo the leap days of every 4th, 100th and 400th year.
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    // 0..=365, counted from 1 March.
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153; // 0..=11
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 { month_from_march + 3 } else { month_from_march - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_leap(year: i64) -> bool {
        (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
    }

    fn days_in_month(year: i64, month: i64) -> i64 {
        match month {
            2 if is_leap(year) => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        }
    }

    #[test]
    fn timestamps_render_as_rfc3339_utc_with_milliseconds() {
        assert_eq!(format_rfc3339_millis(1_795_255_200_123), "2026-11-21T10:00:00.123Z");
        assert_eq!(format_rfc3339_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_rfc3339_millis(999), "1970-01-01T00:00:00.999Z");
        assert_eq!(format_rfc3339_millis(86_399_999), "1970-01-01T23:59:59.999Z");
    }

    #[test]
    fn leap_days_are_rendered() {
        assert_eq!(format_rfc3339_millis(1_709_164_800_000), "2024-02-29T00:00:00.000Z");
        assert_eq!(format_rfc3339_millis(1_709_251_199_999), "2024-02-29T23:59:59.999Z");
        assert_eq!(format_rfc3339_millis(1_709_251_200_000), "2024-03-01T00:00:00.000Z");
        // 2000 is a leap year (divisible by 400), 2100 is not (divisible by 100).
        assert_eq!(format_rfc3339_millis(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(format_rfc3339_millis(4_107_456_000_000), "2100-02-28T00:00:00.000Z");
        assert_eq!(format_rfc3339_millis(4_107_542_400_000), "2100-03-01T00:00:00.000Z");
    }

    #[test]
    fn instants_before_the_epoch_count_backwards() {
        assert_eq!(format_rfc3339_millis(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(format_rfc3339_millis(-86_400_000), "1969-12-31T00:00:00.000Z");
    }

    #[test]
    fn instants_outside_four_digit_years_are_clamped() {
        assert_eq!(format_rfc3339_millis(i64::MIN), "0000-01-01T00:00:00.000Z");
        assert_eq!(format_rfc3339_millis(EARLIEST_MILLIS), "0000-01-01T00:00:00.000Z");
        assert_eq!(format_rfc3339_millis(i64::MAX), "9999-12-31T23:59:59.999Z");
        assert_eq!(format_rfc3339_millis(LATEST_MILLIS), "9999-12-31T23:59:59.999Z");
    }

    /// Walks the calendar one day at a time from 1970-01-01, in both directions, and compares every
    /// date with the closed-form conversion: this covers every month length and every leap rule
    /// between 1560 and 2380.
    #[test]
    fn civil_from_days_agrees_with_a_day_by_day_calendar_walk() {
        let (mut year, mut month, mut day) = (1970, 1, 1);
        for days in 0..150_000 {
            assert_eq!(civil_from_days(days), (year, month, day), "day {days}");
            day += 1;
            if day > days_in_month(year, month) {
                day = 1;
                month += 1;
                if month > 12 {
                    month = 1;
                    year += 1;
                }
            }
        }

        let (mut year, mut month, mut day) = (1970, 1, 1);
        for days in (-150_000..=0).rev() {
            assert_eq!(civil_from_days(days), (year, month, day), "day {days}");
            day -= 1;
            if day == 0 {
                month -= 1;
                if month == 0 {
                    month = 12;
                    year -= 1;
                }
                day = days_in_month(year, month);
            }
        }
    }
}
