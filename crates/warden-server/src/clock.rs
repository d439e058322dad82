//! Trusted time facts for policy: the hour and weekday from the server's clock in the organization's
//! time zone (a fixed UTC offset given at start). Never taken from the agent.

use time::{OffsetDateTime, UtcOffset};
use warden_policy::Weekday;

/// Parses `UTC`, `Z`, or `+HH:MM` / `-HH:MM`.
pub fn parse_offset(value: &str) -> Result<UtcOffset, String> {
    if matches!(value, "UTC" | "utc" | "Z") {
        return Ok(UtcOffset::UTC);
    }
    let format = time::macros::format_description!("[offset_hour sign:mandatory]:[offset_minute]");
    UtcOffset::parse(value, &format)
        .map_err(|_| format!("time zone `{value}` is not `UTC` or a UTC offset like `+02:00` or `-05:30`"))
}

/// The hour (0-23) and weekday now at `offset`.
pub(crate) fn now_in(offset: UtcOffset) -> (u8, Weekday) {
    let now = OffsetDateTime::now_utc().to_offset(offset);
    let weekday = Weekday::from_number(now.weekday().number_days_from_monday()).unwrap_or(Weekday::Monday);
    (now.hour(), weekday)
}
