//! asyncio's "Display the current date with call_later" example, on
//! ringloop.
//!
//! A callback prints the current date and time, then reschedules itself
//! with `call_later` one second later, until five seconds have passed;
//! then it stops the loop. The Python original:
//!
//! ```python
//! def display_date(end_time, loop):
//!     print(datetime.datetime.now())
//!     if (loop.time() + 1.0) < end_time:
//!         loop.call_later(1, display_date, end_time, loop)
//!     else:
//!         loop.stop()
//!
//! loop = asyncio.new_event_loop()
//! end_time = loop.time() + 5.0
//! loop.call_soon(display_date, end_time, loop)
//! try:
//!     loop.run_forever()
//! finally:
//!     loop.close()
//! ```
//!
//! Run it with (it prints five lines and exits after about 4 seconds):
//!
//! ```text
//! cargo run --example display_date
//! ```
//!
//! The date is printed in UTC, formatted with the standard library only.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ringloop::EventLoop;

/// Prints the date; reschedules itself while the next run is before
/// `end_time` (on the loop's clock, `lp.time()`), else stops the loop.
fn display_date(end_time: f64, lp: EventLoop) {
    println!("{}", now_utc());
    if lp.time() + 1.0 < end_time {
        let next = lp.clone();
        if let Err(e) = lp.call_later(Duration::from_secs(1), move || display_date(end_time, next))
        {
            eprintln!("cannot reschedule: {e}");
            lp.stop();
        }
    } else {
        lp.stop();
    }
}

/// The current time as `YYYY-MM-DD HH:MM:SS.ffffff UTC`.
fn now_utc() -> String {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since_epoch.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{:06} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since_epoch.subsec_micros()
    )
}

/// Converts days since 1970-01-01 to a (year, month, day) date in the
/// proleptic Gregorian calendar (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468; // days since 0000-03-01
    let era = z / 146_097; // 400-year eras
    let doe = z % 146_097; // day of era, [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of year from March 1
    let mp = (5 * doy + 2) / 153; // month from March, [0, 11]
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let lp = EventLoop::new()?;

    // Schedule the first call to display_date().
    let end_time = lp.time() + 5.0;
    let first = lp.clone();
    lp.call_soon(move || display_date(end_time, first))?;

    // Blocking call, interrupted by lp.stop(). Close the loop whether or
    // not it ran cleanly (Python's `finally`), then report any error.
    let ran = lp.run_forever();
    lp.close()?;
    ran?;
    Ok(())
}
