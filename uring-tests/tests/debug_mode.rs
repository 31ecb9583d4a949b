//! Debug mode: the switch, and slow callbacks reported once with where
//! they were scheduled.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ringloop::EventLoop;
use ringloop_uring_tests::TestLoop;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// Records every event's fields as text.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<String>>>);

struct Fields(String);
impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!("{}={:?} ", field.name(), value));
    }
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut f = Fields(format!("[{}] ", event.metadata().target()));
        event.record(&mut f);
        self.0.lock().unwrap().push(f.0);
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

fn slow_reports(cap: &Capture) -> Vec<String> {
    cap.0
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e.contains("slow_callback"))
        .cloned()
        .collect()
}

#[test]
fn slow_callbacks_are_reported_once_with_their_scheduling_site() {
    let cap = Capture::default();
    tracing::subscriber::with_default(cap.clone(), || {
        let lp = TestLoop::from_loop(EventLoop::builder().debug(true).build().unwrap());
        assert!(lp.get_debug());
        lp.set_slow_callback_duration(Duration::from_millis(20));
        assert_eq!(lp.slow_callback_duration(), Duration::from_millis(20));
        lp.call_soon(|| std::thread::sleep(Duration::from_millis(40)))
            .unwrap();
        lp.call_soon(|| ()).unwrap(); // fast: not reported
        lp.stop();
        lp.run_forever().unwrap();
    });
    let reports = slow_reports(&cap);
    assert_eq!(reports.len(), 1, "{reports:#?}");
    assert!(reports[0].contains("debug_mode.rs"), "{}", reports[0]);
}

#[test]
fn without_debug_nothing_is_timed() {
    let cap = Capture::default();
    tracing::subscriber::with_default(cap.clone(), || {
        let lp = TestLoop::from_loop(EventLoop::builder().debug(false).build().unwrap());
        lp.set_slow_callback_duration(Duration::from_millis(1));
        lp.call_soon(|| std::thread::sleep(Duration::from_millis(10)))
            .unwrap();
        lp.stop();
        lp.run_forever().unwrap();
        lp.set_debug(true);
        assert!(lp.get_debug());
    });
    assert!(slow_reports(&cap).is_empty());
}

#[test]
fn the_default_exception_handler_logs() {
    let cap = Capture::default();
    tracing::subscriber::with_default(cap.clone(), || {
        let lp = EventLoop::new().unwrap();
        lp.call_soon(|| panic!("logged by default")).unwrap();
        lp.stop();
        lp.run_forever().unwrap();
        lp.close().unwrap();
    });
    let events = cap.0.lock().unwrap();
    assert!(
        events.iter().any(|e| e.contains("logged by default")),
        "{events:#?}"
    );
}
