//! asyncio's end of a datagram endpoint: `close` (send what is queued,
//! then `connection_lost(None)`), `abort` and fatal errors, and the
//! teardown that releases the socket.

use std::io;
use std::rc::{Rc, Weak};

use super::DatagramInner;
use crate::error::Error;
use crate::event_loop::LoopInner;
use crate::exception::ErrorContext;
use crate::transport::errors::{clone_io_error, is_ignored_error};
use crate::transport::lost;

impl DatagramInner {
    /// `close()`: stop receiving; flush, then `connection_lost(None)`.
    pub(super) fn close(self: &Rc<Self>) {
        let empty = {
            let mut st = self.state.borrow_mut();
            if st.closing {
                return;
            }
            st.closing = true;
            let empty = st.size == 0;
            if empty {
                st.conn_lost += 1;
            }
            empty
        };
        self.stop_receiving();
        if empty {
            self.schedule_connection_lost(None);
        } else {
            self.wake_pump();
        }
    }

    /// `abort()` and fatal errors (asyncio's `_force_close`): drop the
    /// queue and the sends in flight, then `connection_lost`.
    pub(super) fn force_close(self: &Rc<Self>, error: Option<io::Error>) {
        let (queue, sends) = {
            let mut st = self.state.borrow_mut();
            if st.conn_lost > 0 {
                return;
            }
            st.closing = true;
            st.conn_lost += 1;
            st.size = 0;
            let queue = std::mem::take(&mut st.queue);
            (queue, std::mem::take(&mut *self.sends.borrow_mut()))
        };
        let writable = self.writable.borrow_mut().take();
        // Dropped outside the borrows: dropping an op talks to the driver.
        drop((queue, sends, writable));
        self.stop_receiving();
        self.schedule_connection_lost(error);
    }

    /// Cancels the receive in flight and drops anything held.
    fn stop_receiving(&self) {
        let recv = self.recv.borrow_mut().take();
        drop(recv);
        let held = self.held.borrow_mut().take();
        drop(held);
    }

    fn schedule_connection_lost(self: &Rc<Self>, error: Option<io::Error>) {
        lost::schedule(self, error);
    }

    /// asyncio's `_call_connection_lost`: the protocol hears it once, then
    /// the socket closes.
    pub(super) fn call_connection_lost(self: &Rc<Self>, error: Option<io::Error>) {
        if self.finished.get() {
            return;
        }
        self.stop_io();
        self.call_protocol("connection_lost", |p| p.connection_lost(error));
        // Let go before the teardown, so that nothing calls it again.
        let protocol = self.protocol.take();
        drop(protocol);
        self.teardown();
    }

    /// Drops the operations in flight (cancelling them in the kernel).
    fn stop_io(&self) {
        self.stop_receiving();
        let sends = std::mem::take(&mut *self.sends.borrow_mut());
        drop(sends);
        let writable = self.writable.borrow_mut().take();
        drop(writable);
    }

    /// Releases everything: operations, protocol, buffers, socket.
    /// Idempotent; no protocol method is called.
    pub(super) fn teardown(&self) {
        if self.finished.replace(true) {
            return;
        }
        {
            // Sends from now on are dropped (and counted), as after a
            // connection_lost.
            let mut st = self.state.borrow_mut();
            st.closing = true;
            st.conn_lost = st.conn_lost.max(1);
        }
        self.stop_io();
        let protocol = self.protocol.take();
        drop(protocol);
        let queue = std::mem::take(&mut self.state.borrow_mut().queue);
        drop(queue);
        let spare = self.spare.borrow_mut().take();
        drop(spare);
        let fd = self.fd.borrow_mut().take();
        drop(fd);
        if let Some(w) = self.pump_waker.borrow_mut().take() {
            w.wake();
        }
    }

    /// asyncio's `_fatal_error`: report (unless it is a reset or broken
    /// pipe), then force-close with the error.
    pub(super) fn fatal_error(
        self: &Rc<Self>,
        err: io::Error,
        message: &str,
        report_as: Option<Error>,
    ) {
        if !is_ignored_error(&err) || report_as.is_some() {
            if let Some(lp) = self.loop_() {
                let error = report_as.unwrap_or_else(|| Error::Io(clone_io_error(&err).into()));
                let mut ctx = ErrorContext::new(message).with_error(error);
                ctx.socket = Some(self.raw_fd);
                ctx.protocol = Some(self.protocol_name.to_string());
                lp.call_exception_handler(&ctx);
            }
        } else {
            tracing::debug!(target: "ringloop", error = %err, "{message}");
        }
        self.force_close(Some(err));
    }
}

impl lost::LostTarget for DatagramInner {
    fn lost_loop(&self) -> &Weak<LoopInner> {
        &self.lp
    }
    fn call_lost(self: &Rc<Self>, error: Option<io::Error>) {
        self.call_connection_lost(error);
    }
    fn protocol_busy(&self) -> bool {
        self.protocol.busy()
    }
    fn teardown_now(&self) {
        self.teardown();
    }
}
