//! Debug mode: slow-callback reports and the environment switch.
//!
//! asyncio's debug mode also catches non-thread-safe calls from other
//! threads at run time; in ringloop that mistake does not compile
//! (`EventLoop` is `!Send`), so there is nothing left to check:
//!
//! ```compile_fail
//! let lp = ringloop::EventLoop::new().unwrap();
//! std::thread::spawn(move || lp.call_soon(|| ()));
//! ```

use std::panic::Location;
use std::time::Duration;

/// asyncio's default `slow_callback_duration`.
pub(crate) const DEFAULT_SLOW_CALLBACK: Duration = Duration::from_millis(100);

/// True when `RINGLOOP_DEBUG` is set to a non-empty value.
pub fn env_debug() -> bool {
    std::env::var_os("RINGLOOP_DEBUG").is_some_and(|v| !v.is_empty())
}

/// Reports one slow callback, naming where it was scheduled.
pub(crate) fn report_slow_callback(
    what: &str,
    location: &'static Location<'static>,
    took: Duration,
) {
    tracing::warn!(
        target: "ringloop::slow_callback",
        scheduled_at = %location,
        took_ms = took.as_secs_f64() * 1e3,
        "Executing {what} took {:.3} seconds",
        took.as_secs_f64()
    );
}
