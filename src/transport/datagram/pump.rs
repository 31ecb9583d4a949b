//! The datagram pump: one internal task per endpoint that keeps one
//! receive in flight, delivers each datagram (or receive error) to the
//! protocol, and runs the send side, within a budget per run.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use super::{DatagramInner, Held, MAX_DATAGRAM, PUMP_BUDGET};
use crate::driver::op::recvmsg::RecvMsg;
use crate::driver::op::Op;

impl DatagramInner {
    /// One run of the pump: deliver, react, send, until nothing moves or
    /// the budget is spent.
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
        self.in_pump.set(true);
        let mut budget = PUMP_BUDGET;
        loop {
            let read = self.drive_read(cx, &mut budget);
            if self.finished.get() {
                break;
            }
            let wrote = self.drive_write(cx, &mut budget);
            if self.finished.get() || !(read || wrote) {
                break;
            }
            if budget == 0 {
                // Let the rest of the loop run; come back next iteration.
                cx.waker().wake_by_ref();
                break;
            }
        }
        self.in_pump.set(false);
        if self.finished.get() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// Polls the receive in flight (starting one if needed) into `held`;
    /// true if a result is held.
    pub(super) fn collect(self: &Rc<Self>, cx: &mut Context<'_>, start: bool) -> bool {
        if self.held.borrow().is_some() {
            return true;
        }
        if self.recv.borrow().is_none() {
            if !start {
                return false;
            }
            let buf = self
                .spare
                .borrow_mut()
                .take()
                .unwrap_or_else(|| vec![0; MAX_DATAGRAM]);
            match Op::try_submit(&self.driver, RecvMsg::new(self.raw_fd, buf)) {
                Ok(op) => *self.recv.borrow_mut() = Some(op),
                Err((e, op)) => {
                    *self.spare.borrow_mut() = Some(op.into_buf());
                    self.fatal_error(e, "Fatal read error on datagram transport", None);
                    return false;
                }
            }
        }
        let polled = {
            let mut recv = self.recv.borrow_mut();
            let Some(op) = recv.as_mut() else {
                return false;
            };
            match Pin::new(op).poll(cx) {
                Poll::Pending => return false,
                Poll::Ready(r) => {
                    *recv = None;
                    r
                }
            }
        };
        let held = match polled {
            (Ok((n, addr)), buf) => Held::Datagram(buf, n, addr),
            (Err(e), buf) => {
                *self.spare.borrow_mut() = Some(buf);
                Held::Error(e)
            }
        };
        *self.held.borrow_mut() = Some(held);
        true
    }

    /// Delivers one received datagram (or receive error); true if
    /// anything happened.
    fn drive_read(self: &Rc<Self>, cx: &mut Context<'_>, budget: &mut usize) -> bool {
        if self.state.borrow().closing {
            return false;
        }
        if self.protocol_busy() {
            // The user holds the protocol across an await: keep the
            // receive going, hold its result, and retry.
            self.collect(cx, false);
            cx.waker().wake_by_ref();
            return false;
        }
        if !self.collect(cx, true) {
            return false;
        }
        let held = self.held.borrow_mut().take();
        match held {
            None => false,
            Some(Held::Datagram(buf, n, addr)) => {
                *budget = budget.saturating_sub(1);
                self.call_protocol("datagram_received", |p| {
                    p.datagram_received(&buf[..n], addr)
                });
                if !self.finished.get() {
                    *self.spare.borrow_mut() = Some(buf);
                }
                true
            }
            Some(Held::Error(e))
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                // Spurious: receive again.
                true
            }
            Some(Held::Error(e)) => {
                *budget = budget.saturating_sub(1);
                self.call_protocol("error_received", |p| p.error_received(e));
                true
            }
        }
    }
}

/// The pump task's future.
pub(super) struct Pump(pub(super) Rc<DatagramInner>);

impl Future for Pump {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.0.pump(cx)
    }
}

impl Drop for Pump {
    fn drop(&mut self) {
        // The loop closed (or the task was cancelled) before the endpoint
        // ended: release the socket and break the transport/protocol
        // cycle. No protocol method runs.
        self.0.teardown();
    }
}
