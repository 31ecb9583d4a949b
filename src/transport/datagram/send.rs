//! Sending datagrams: `sendto`'s queue, flow control around the
//! buffer's limits, and the window of sends in flight (with the wait for
//! room when a send finds the socket full).

use std::cell::RefMut;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use bytes::Bytes;
use socket2::SockAddr;

use super::{DatagramInner, InFlight, CONNLOST_WARN_AFTER, SEND_WINDOW};
use crate::driver::op::poll::PollOnce;
use crate::driver::op::sendto::SendTo;
use crate::driver::op::Op;
use crate::event_loop::EventLoop;
use crate::transport::write_flow::{self, FlowControlled, WriteFlow};

impl FlowControlled for DatagramInner {
    fn write_flow(&self) -> RefMut<'_, WriteFlow> {
        RefMut::map(self.state.borrow_mut(), |st| &mut st.flow)
    }
    fn in_protocol_call(&self) -> bool {
        self.protocol_busy()
    }
    fn flow_loop(&self) -> Option<EventLoop> {
        self.loop_()
    }
    fn call_pause_writing(self: &Rc<Self>) {
        self.call_protocol("pause_writing", |p| p.pause_writing());
    }
}

impl DatagramInner {
    /// `sendto` after validation: queue, wake the pump, maybe pause the
    /// protocol.
    pub(super) fn enqueue(self: &Rc<Self>, data: Bytes, dest: Option<SockAddr>) {
        {
            let mut st = self.state.borrow_mut();
            if st.conn_lost > 0 {
                if st.conn_lost >= CONNLOST_WARN_AFTER {
                    tracing::warn!(target: "ringloop", "socket.send() raised exception.");
                }
                st.conn_lost += 1;
                return;
            }
            st.size += data.len();
            st.queue.push_back((data, dest));
        }
        self.wake_pump();
        self.maybe_pause_protocol();
    }

    pub(super) fn maybe_pause_protocol(self: &Rc<Self>) {
        let rose = {
            let st = &mut *self.state.borrow_mut();
            st.flow.rise(st.size, &st.limits)
        };
        if rose {
            write_flow::pause(self);
        }
    }

    fn maybe_resume_protocol(self: &Rc<Self>) {
        let fell = {
            let st = &mut *self.state.borrow_mut();
            st.flow.fall(st.size, &st.limits)
        };
        if fell {
            self.call_protocol("resume_writing", |p| p.resume_writing());
        }
    }

    /// Completes sends in order and starts new ones; true if anything
    /// happened.
    pub(super) fn drive_write(self: &Rc<Self>, cx: &mut Context<'_>, budget: &mut usize) -> bool {
        let mut progressed = false;
        loop {
            let mut moved = false;
            // Sends cancelled before they went (an earlier send in their
            // link failed), in order: they go back to the queue's head.
            let mut requeue: Vec<(Bytes, Option<SockAddr>)> = Vec::new();
            // Completions, oldest first. Only the oldest is polled: on
            // epoll a later send is not even attempted before the earlier
            // one went, so order is kept; on io_uring the link does it.
            while *budget > 0 {
                let done = {
                    let mut sends = self.sends.borrow_mut();
                    let Some(front) = sends.front_mut() else {
                        break;
                    };
                    match Pin::new(&mut front.op).poll(cx) {
                        Poll::Pending => break,
                        Poll::Ready(r) => {
                            let f = sends.pop_front().expect("front exists");
                            (r, f.len, f.dest)
                        }
                    }
                };
                moved = true;
                *budget -= 1;
                let ((result, data), len, dest) = done;
                match result {
                    Ok(_) => self.state.borrow_mut().size -= len,
                    Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => {
                        // io_uring, no room: send it again, in order, once
                        // the socket is writable.
                        requeue.push((data, dest));
                        if !self.await_writable() {
                            return true;
                        }
                    }
                    Err(e) if matches!(e.raw_os_error(), Some(libc::ECANCELED | libc::EINTR)) => {
                        // Cancelled by an earlier send's failure (broken
                        // link) or interrupted: send it again, in order.
                        requeue.push((data, dest));
                    }
                    Err(e) => {
                        // asyncio: the datagram is dropped, the protocol
                        // hears the error, the endpoint goes on.
                        self.state.borrow_mut().size -= len;
                        self.call_protocol("error_received", |p| p.error_received(e));
                        if self.finished.get() {
                            return true;
                        }
                    }
                }
            }
            if !requeue.is_empty() {
                // After those of the same batch requeued by an earlier
                // run, before every datagram never taken.
                let mut st = self.state.borrow_mut();
                let mut at = self.requeued.get().min(st.queue.len());
                for item in requeue {
                    st.queue.insert(at, item);
                    at += 1;
                }
                self.requeued.set(at);
            }
            if moved {
                self.maybe_resume_protocol();
                if self.finished.get() {
                    return true;
                }
            }
            let started = self.start_sends(cx);
            if self.finished.get() {
                return true;
            }
            progressed |= moved || started;
            if !(moved || started) || *budget == 0 {
                break;
            }
        }
        let drained = self.sends.borrow().is_empty() && self.state.borrow().size == 0;
        if drained {
            self.buffer_drained();
        }
        progressed
    }

    /// Hands up to [`SEND_WINDOW`] queued datagrams to new sends, linked
    /// one to the next, once the previous batch has completed (a new
    /// chain is not ordered after one still in flight); true if any
    /// started.
    fn start_sends(self: &Rc<Self>, cx: &mut Context<'_>) -> bool {
        if !self.sends.borrow().is_empty() || !self.writable_now(cx) {
            return false;
        }
        let batch: Vec<(Bytes, Option<SockAddr>)> = {
            let mut st = self.state.borrow_mut();
            let n = SEND_WINDOW.min(st.queue.len());
            // A new batch: nothing of it has come back yet.
            self.requeued.set(0);
            st.queue.drain(..n).collect()
        };
        if batch.is_empty() {
            return false;
        }
        let last = batch.len() - 1;
        let mut failed = None;
        for (i, (data, dest)) in batch.into_iter().enumerate() {
            let len = data.len();
            let mut op = SendTo::new(self.raw_fd, data, dest.clone());
            if i < last {
                op.link_next();
            }
            match Op::try_submit(&self.driver, op) {
                Ok(op) => self
                    .sends
                    .borrow_mut()
                    .push_back(InFlight { op, len, dest }),
                Err((e, _op)) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        if let Some(e) = failed {
            self.fatal_error(e, "Fatal write error on datagram transport", None);
        }
        true
    }

    /// Starts waiting for `POLLOUT` (after an `EAGAIN`), unless a wait is
    /// already on; false if the endpoint failed instead.
    fn await_writable(self: &Rc<Self>) -> bool {
        if self.writable.borrow().is_some() {
            return true;
        }
        let op = PollOnce {
            fd: self.raw_fd,
            mask: libc::POLLOUT as u32,
        };
        match Op::try_submit(&self.driver, op) {
            Ok(op) => {
                *self.writable.borrow_mut() = Some(op);
                true
            }
            Err((e, _)) => {
                self.fatal_error(e, "Fatal write error on datagram transport", None);
                false
            }
        }
    }

    /// True unless a wait for `POLLOUT` is still on (polling it).
    fn writable_now(&self, cx: &mut Context<'_>) -> bool {
        let mut w = self.writable.borrow_mut();
        let Some(op) = w.as_mut() else {
            return true;
        };
        match Pin::new(op).poll(cx) {
            Poll::Pending => false,
            Poll::Ready(_) => {
                // Ready, or an error the next send will report.
                *w = None;
                true
            }
        }
    }

    /// Nothing left to send: finish a close.
    fn buffer_drained(self: &Rc<Self>) {
        let finish_close = {
            let mut st = self.state.borrow_mut();
            if st.closing && st.conn_lost == 0 {
                st.conn_lost += 1;
                true
            } else {
                false
            }
        };
        if finish_close {
            crate::transport::lost::now(self, None);
        }
    }
}
