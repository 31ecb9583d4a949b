//! An operation polled with a waker that is not its task's own (a
//! combinator's, a wrapper's) wakes that waker.
//!
//! The loop stores its own task's key instead of a waker clone when the
//! task itself polls an operation (`src/driver/wake.rs`); everyone else
//! must still be woken through their waker. These tests fail if a foreign
//! waker were mistaken for the task's: the task would be rescheduled but
//! the wrapper's waker never called.

use std::future::Future;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use ringloop_uring_tests::TestLoop;

/// Counts its wakes and passes each on to the waker of whoever polled
/// the wrapper last.
#[derive(Default)]
struct Relay {
    hits: AtomicUsize,
    outer: Mutex<Option<Waker>>,
}

impl Wake for Relay {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.hits.fetch_add(1, Ordering::SeqCst);
        let outer = self.outer.lock().map(|mut w| w.take()).unwrap_or(None);
        if let Some(w) = outer {
            w.wake();
        }
    }
}

/// Polls `inner` with the relay's waker, never with its own context's.
struct ViaRelay<F> {
    inner: Pin<Box<F>>,
    relay: Arc<Relay>,
}

impl<F: Future> Future for ViaRelay<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        if let Ok(mut outer) = self.relay.outer.lock() {
            *outer = Some(cx.waker().clone());
        }
        let waker = Waker::from(self.relay.clone());
        let mut inner_cx = Context::from_waker(&waker);
        self.inner.as_mut().poll(&mut inner_cx)
    }
}

fn pair() -> (UnixStream, UnixStream) {
    let (a, b) = UnixStream::pair().expect("socketpair");
    a.set_nonblocking(true).expect("nonblocking");
    b.set_nonblocking(true).expect("nonblocking");
    (a, b)
}

#[test]
fn a_receive_polled_through_another_waker_wakes_that_waker() {
    let lp = TestLoop::new();
    let l = lp.lp();
    let (a, b) = pair();
    let relay = Arc::new(Relay::default());
    let hits = relay.clone();
    let got = lp.block_on(async move {
        let timers = l.clone();
        let task = l
            .clone()
            .create_task(async move {
                let recv = ViaRelay {
                    inner: Box::pin(l.sock_recv(&b, 1024)),
                    relay,
                };
                recv.await
            })
            .expect("task");
        // The peer writes only after the receive has parked.
        let mut a = Some(a);
        let writer = timers.call_later(Duration::from_millis(20), move || {
            if let Some(mut a) = a.take() {
                a.write_all(b"through the relay").expect("write");
            }
        });
        let out = task.await;
        drop(writer);
        out
    });
    let bytes = got.expect("task").expect("recv");
    assert_eq!(&bytes[..], b"through the relay");
    assert!(
        hits.hits.load(Ordering::SeqCst) >= 1,
        "the relay's waker was never woken"
    );
}

#[test]
fn a_receive_polled_by_its_task_directly_still_completes() {
    // The other path: the task's own waker, stored by key.
    let lp = TestLoop::new();
    let l = lp.lp();
    let (a, b) = pair();
    let got = lp.block_on(async move {
        let timers = l.clone();
        let task = l
            .clone()
            .create_task(async move { l.sock_recv(&b, 1024).await })
            .expect("task");
        let mut a = Some(a);
        let _writer = timers.call_later(Duration::from_millis(20), move || {
            if let Some(mut a) = a.take() {
                a.write_all(b"direct").expect("write");
            }
        });
        task.await
    });
    assert_eq!(&got.expect("task").expect("recv")[..], b"direct");
}
