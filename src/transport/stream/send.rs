//! Sends: taking a finished send's result, starting the next with what
//! is queued, the epoll backend's direct send, and the flush that runs
//! the write half of the pump at the end of an iteration.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::{Context, Poll};

use super::StreamInner;
use crate::driver::op::sendmsg::SendMsg;
use crate::driver::op::sys;
use crate::driver::op::{Op, OpKind};
use crate::driver::{Completion, Wake};
use crate::flush::Flush;

impl StreamInner {
    /// Completes and starts sends; true if anything happened.
    #[inline(always)]
    pub(super) fn drive_write(self: &Rc<Self>, cx: &mut Context<'_>) -> bool {
        // Checked here, inlined: the pump's first write round of a
        // delivery nearly always finds nothing to do, and should not pay
        // the big function's entry and exit for it.
        !self.write_idle() && self.drive_write_busy(cx)
    }

    /// [`drive_write`](Self::drive_write) with something to do.
    fn drive_write_busy(self: &Rc<Self>, cx: &mut Context<'_>) -> bool {
        let mut progressed = false;
        // On epoll a send is first tried as a plain system call (the
        // result is handled in the next round, so the round trip needs
        // no further pump run); only one that would block becomes an
        // operation, parked until the socket is writable. On io_uring a
        // send is submitted with this transport registered for the flush
        // after its completion, and not polled.
        let mut sent_now = None;
        for round in 0..2 {
            let polled = match sent_now.take() {
                Some(done) => Some(done),
                None => {
                    let mut send = self.send.borrow_mut();
                    self.send_unpolled.set(false);
                    match send.as_mut() {
                        Some(op) => match Pin::new(op).poll(cx) {
                            Poll::Ready(r) => {
                                *send = None;
                                Some(r)
                            }
                            Poll::Pending => return progressed,
                        },
                        None => None,
                    }
                }
            };
            if let Some((result, batch)) = polled {
                progressed = true;
                let sent = *result.as_ref().unwrap_or(&0);
                self.state.borrow_mut().buf.complete_batch(batch, sent);
                match result {
                    Ok(_) => self.wake_space_waiters(),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => {
                        self.fatal_error(e, "Fatal write error on socket transport", None);
                        return true;
                    }
                }
                self.maybe_resume_protocol();
                if self.finished.get() {
                    return true;
                }
            }
            // epoll, and only copies queued (the usual reply): straight
            // from the buffer, one system call, no batch and no
            // operation. A socket that is full falls through to the
            // operation, which waits for it to be writable.
            let mut would_block = false;
            if !self.wake_at_submit && round == 0 {
                match self.send_tail_now() {
                    TailSend::Sent => {
                        if self.finished.get() {
                            return true;
                        }
                        progressed = true;
                        continue;
                    }
                    TailSend::Failed => return true,
                    TailSend::WouldBlock => would_block = true,
                    TailSend::NotAlone => {}
                }
            }
            let batch = self.state.borrow_mut().buf.take_batch();
            let Some(batch) = batch else {
                if self.state.borrow().buf.size() == 0 {
                    self.buffer_drained();
                }
                return progressed;
            };
            progressed = true;
            let mut op = SendMsg::new(self.raw_fd, batch);
            // Only where a round follows to take the result.
            if !self.wake_at_submit && round == 0 && !would_block {
                if let Some(res) = try_send_now(&mut op) {
                    sent_now = Some(op.complete(res));
                    continue;
                }
            }
            let submitted = if self.wake_at_submit {
                // Its completion queues this transport for the flush at
                // the end of that iteration, which takes the result (and
                // wakes the pump only if there is more to do).
                let me: Weak<dyn Flush> = Rc::downgrade(self) as Weak<StreamInner>;
                Op::try_submit_waking(&self.driver, op, || Wake::Flush(me))
            } else {
                Op::try_submit(&self.driver, op).map(|op| (op, false))
            };
            match submitted {
                Ok((op, registered)) => {
                    *self.send.borrow_mut() = Some(op);
                    if registered {
                        // io_uring: polling it now would find it in
                        // flight.
                        return true;
                    }
                    self.send_unpolled.set(true);
                }
                Err((e, op)) => {
                    self.state
                        .borrow_mut()
                        .buf
                        .complete_batch(op.into_batch(), 0);
                    self.fatal_error(e, "Fatal write error on socket transport", None);
                    return true;
                }
            }
        }
        progressed
    }

    /// epoll: sends what is queued straight from the write buffer's tail,
    /// if that is all of it and nothing is in flight (see
    /// `WriteBuffer::tail_only`), and does what a completed send does.
    /// Kept out of `drive_write`, which io_uring runs too: inlined, it
    /// made that function's every call dearer there.
    #[inline(never)]
    fn send_tail_now(self: &Rc<Self>) -> TailSend {
        let sent = {
            let st = self.state.borrow();
            match st.buf.tail_only() {
                Some(t) => sys::send_now(self.raw_fd, t),
                None => return TailSend::NotAlone,
            }
        };
        match sent {
            Ok(n) => {
                self.state.borrow_mut().buf.consume_tail(n as usize);
                self.wake_space_waiters();
                self.maybe_resume_protocol();
                TailSend::Sent
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => TailSend::WouldBlock,
            Err(e) => {
                self.fatal_error(e, "Fatal write error on socket transport", None);
                TailSend::Failed
            }
        }
    }

    /// Nothing for `drive_write` to do: no send, nothing queued, and
    /// nothing waiting for the buffer to drain (a close or `write_eof` to
    /// finish, a `drain`/`sendfile` waiter to wake), so
    /// [`buffer_drained`](Self::buffer_drained) would do nothing. The
    /// pump's first write round of a delivery nearly always finds this
    /// (the flush took the last send's completion).
    fn write_idle(&self) -> bool {
        if self.send.borrow().is_some() || !self.empty_waiters.borrow().is_empty() {
            return false;
        }
        let st = self.state.borrow();
        st.buf.is_empty() && !st.closing && (st.eof_sent || !st.eof_requested)
    }

    /// `drive_write` stopped with work it could do at once: a send it
    /// started but has not polled (epoll: not yet attempted), or bytes
    /// queued and no send in flight. Otherwise a send is in flight (its
    /// completion brings the pump, or on io_uring the flush, back) or
    /// nothing is queued.
    pub(super) fn write_unsettled(&self) -> bool {
        self.send_unpolled.get()
            || (self.send.borrow().is_none() && !self.state.borrow().buf.is_empty())
    }

    /// Nothing left to send: finish a close, send a pending EOF, wake
    /// drain waiters.
    pub(super) fn buffer_drained(self: &Rc<Self>) {
        for w in self.empty_waiters.borrow_mut().drain(..) {
            w.wake();
        }
        let (finish_close, send_eof) = {
            let mut st = self.state.borrow_mut();
            if st.sendfile_active {
                (false, false)
            } else if st.closing && st.conn_lost == 0 {
                st.conn_lost += 1;
                (true, false)
            } else if st.eof_requested && !st.eof_sent && !st.closing {
                st.eof_sent = true;
                (false, true)
            } else {
                (false, false)
            }
        };
        if finish_close {
            crate::transport::lost::now(self, None);
        } else if send_eof {
            self.shutdown_write();
        }
    }
}

/// epoll: `op`'s system call, made now. `None` if it would block (the
/// caller makes it an operation, which waits for the socket to be
/// writable); else its result as a completion. The engine's readiness
/// needs no update: only a send that would block clears it, and that one
/// is retried as an operation.
fn try_send_now(op: &mut SendMsg) -> Option<Completion> {
    match ringloop_fallback::retry_interrupted(|| op.attempt()) {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => None,
        r => Some(Completion::from_io(r)),
    }
}

impl Flush for StreamInner {
    fn enqueue(self: Rc<Self>, queue: &crate::flush::FlushQueue) {
        if !self.flush_queued.replace(true) {
            queue.push(self);
        }
    }

    /// The write half of a pump run, with the pump's waker: after writes
    /// from outside the pump, and on io_uring after a send completed
    /// (which queued this flush; see `Wake::Flush`).
    fn flush(self: Rc<Self>) {
        self.flush_queued.set(false);
        if self.finished.get() || self.in_pump.get() {
            return;
        }
        self.with_pump_waker(|cx| {
            self.in_pump.set(true);
            self.drive_write(cx);
            self.in_pump.set(false);
            // Not done in the rounds one call makes (epoll: sends that
            // finished at once, a last one not yet attempted): the pump
            // carries on.
            if !self.finished.get() && self.write_unsettled() {
                cx.waker().wake_by_ref();
            }
        });
    }
}

/// What [`StreamInner::send_tail_now`] did.
enum TailSend {
    /// Sent (all or part): the rest, if any, is still queued.
    Sent,
    /// The socket is full: the send must wait for it.
    WouldBlock,
    /// A write error, reported; the transport is closing.
    Failed,
    /// Not only copies in the tail, or a send in flight: the batch path.
    NotAlone,
}
