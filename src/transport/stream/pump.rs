//! The pump: one internal task per connection that delivers what arrived
//! to the protocol (one delivery per run, as asyncio delivers one receive
//! per iteration) and lets the send side take up what the protocol wrote.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use super::{Delivering, StreamInner, SHARE_FROM};
use crate::deliver::Deliver;
use crate::transport::read::ReadEvent;

impl StreamInner {
    /// One run of the pump: deliver, react, send, until nothing moves.
    pub(super) fn pump(self: &Rc<Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.finished.get() {
            return Poll::Ready(());
        }
        {
            let mut w = self.pump_waker.borrow_mut();
            match &*w {
                Some(old) if old.will_wake(cx.waker()) => {}
                _ => *w = Some(cx.waker().clone()),
            }
        }
        self.pump_step(cx)
    }

    /// One run of the pump, with its waker in `cx`: from the pump task,
    /// or from the delivery callback (`deliver.rs`).
    pub(super) fn pump_step(self: &Rc<Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.in_pump.set(true);
        // One delivery per run, as asyncio's transports deliver one
        // receive per iteration; the rest waits for the next iteration.
        // What the protocol wrote leaves before the next delivery, so a
        // multishot receive that pulled several buffers at once does not
        // turn into one burst of a send (the peer starts on the first
        // part sooner), and a streams reader's task takes each delivery
        // before the next arrives, so that one finds the buffer empty
        // and is kept without a copy (see `streams/buffer.rs`).
        let mut delivered = false;
        loop {
            // Sends first: a finished send lets its received buffers go
            // before new data arrives to be written.
            let wrote = self.drive_write(cx);
            if self.finished.get() {
                break;
            }
            // Another write round only if this one left work it can do
            // now; a send in flight is taken up when it completes (by
            // the pump, or on io_uring by the flush).
            let write_more = wrote && self.write_unsettled();
            if delivered {
                if write_more {
                    continue;
                }
                break;
            }
            delivered = self.drive_read(cx);
            if self.finished.get() || !(delivered || write_more) {
                break;
            }
        }
        if delivered && !self.finished.get() && self.more_to_deliver(cx) {
            // The rest in the next iteration: by the delivery callback
            // where there is one, so that a completion arriving
            // meanwhile does not make it two runs in that iteration.
            match self.lp.upgrade() {
                Some(lp) => self.clone().schedule_delivery(&lp),
                None => cx.waker().wake_by_ref(),
            }
        }
        self.in_pump.set(false);
        if self.finished.get() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// After a delivery: whether another is waiting (received, and the
    /// protocol may hear it). If not, a receive is in flight and the
    /// pump's waker registered for it.
    fn more_to_deliver(&self, cx: &mut Context<'_>) -> bool {
        self.may_deliver() && self.reader.borrow_mut().has_pending(cx)
    }

    /// Reading is on and the protocol may still hear data.
    fn may_deliver(&self) -> bool {
        let st = self.state.borrow();
        !st.read_paused && !st.closing && !st.eof_received
    }

    /// Delivers what arrived; true if anything happened.
    pub(super) fn drive_read(self: &Rc<Self>, cx: &mut Context<'_>) -> bool {
        let deliver = self.may_deliver();
        if !deliver || self.protocol_busy() {
            if deliver {
                // The user holds the protocol across an await: retry.
                cx.waker().wake_by_ref();
            }
            // Keep a receive in flight (its data is held, not lost).
            self.reader.borrow_mut().poll_hold(cx);
            return false;
        }
        let event = self.reader.borrow_mut().poll(cx);
        match event {
            ReadEvent::Pending => false,
            ReadEvent::Data => {
                let data = self.reader.borrow_mut().take_data();
                match data {
                    Some(data) if data.len() >= SHARE_FROM => {
                        let data = if self.share_received.get() {
                            match data.into_bytes() {
                                Ok(bytes) => Delivering::Bytes(bytes),
                                Err(data) => Delivering::Buf(Rc::new(data)),
                            }
                        } else {
                            Delivering::Buf(Rc::new(data))
                        };
                        *self.delivering.borrow_mut() = Some(data.clone());
                        self.call_protocol("data_received", |p| p.data_received(&data));
                        self.delivering.borrow_mut().take();
                        // Dropping it gives the buffer back (to the ring
                        // or the pool); if a write queued it, its send
                        // does.
                        drop(data);
                    }
                    Some(data) => {
                        self.call_protocol("data_received", |p| p.data_received(&data));
                        drop(data);
                    }
                    None => {}
                }
                true
            }
            ReadEvent::Eof => {
                self.state.borrow_mut().eof_received = true;
                let keep_open = self.call_protocol("eof_received", |p| p.eof_received());
                if keep_open != Some(true) {
                    self.close();
                }
                true
            }
            ReadEvent::Error(e) => {
                self.fatal_error(e, "Fatal read error on socket transport", None);
                true
            }
        }
    }
}

/// The pump task's future.
pub(super) struct Pump(pub(super) Rc<StreamInner>);

impl Future for Pump {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.0.pump(cx)
    }
}

impl Drop for Pump {
    fn drop(&mut self) {
        // The loop closed (or the task was cancelled) before the
        // connection ended: release the socket and break the
        // transport/protocol cycle. No protocol method runs.
        self.0.teardown();
    }
}
