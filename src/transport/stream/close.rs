//! asyncio's end of a connection: `close` (flush, then
//! `connection_lost(None)`), `abort` and fatal errors (`_force_close`,
//! `_fatal_error`), and the teardown that releases the socket.

use std::io;
use std::os::fd::AsRawFd;
use std::rc::{Rc, Weak};

use super::StreamInner;
use crate::error::Error;
use crate::event_loop::LoopInner;
use crate::exception::ErrorContext;
use crate::transport::errors::{clone_io_error, is_ignored_error};
use crate::transport::lost;
use crate::transport::Transport;

impl StreamInner {
    /// `close()`: stop reading; flush, then `connection_lost(None)`.
    pub(crate) fn close(self: &Rc<Self>) {
        let empty = {
            let mut st = self.state.borrow_mut();
            if st.closing {
                return;
            }
            st.closing = true;
            // A running sendfile finishes first; its end completes the
            // close.
            let empty = st.buf.size() == 0 && !st.sendfile_active;
            if empty {
                st.conn_lost += 1;
            }
            empty
        };
        self.reader.borrow_mut().stop();
        if empty {
            self.schedule_connection_lost(None);
        } else {
            self.wake_pump();
        }
    }

    /// `abort()` and fatal errors (asyncio's `_force_close`).
    pub(crate) fn force_close(self: &Rc<Self>, error: Option<io::Error>) {
        let send = {
            let mut st = self.state.borrow_mut();
            if st.conn_lost > 0 {
                return;
            }
            st.buf.clear();
            st.closing = true;
            st.conn_lost += 1;
            self.send.borrow_mut().take()
        };
        drop(send);
        self.reader.borrow_mut().stop();
        self.schedule_connection_lost(error);
    }

    pub(super) fn schedule_connection_lost(self: &Rc<Self>, error: Option<io::Error>) {
        lost::schedule(self, error);
    }

    /// asyncio's `_call_connection_lost`: the protocol hears it once, then
    /// the socket closes and the server counts the connection out.
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

    /// Drops the in-flight operations (cancelling them in the kernel).
    pub(super) fn stop_io(&self) {
        let send = self.send.borrow_mut().take();
        drop(send);
        self.reader.borrow_mut().stop();
    }

    /// Releases everything: operations, protocol, socket, server slot.
    /// Idempotent; no protocol method is called.
    pub(crate) fn teardown(&self) {
        if self.finished.replace(true) {
            return;
        }
        self.stop_io();
        let protocol = self.protocol.take();
        drop(protocol);
        let mut fd = self.fd.borrow_mut().take();
        if let Some(sock) = fd.take() {
            // Before the close: once closed, the number may be reused,
            // and the epoll backend's readiness of this socket must not
            // be inherited by the next one.
            if let Ok(mut d) = self.driver.try_borrow_mut() {
                d.release_fd(self.raw_fd);
                fd = Some(sock);
            } else {
                // Unreachable in practice (nothing tears a transport down
                // inside a driver call). Keeping the number open beats
                // handing its registration to another file: shut the
                // connection down and leak the descriptor.
                // SAFETY: `sock` is our open socket; shutdown takes no
                // memory.
                unsafe { libc::shutdown(sock.as_raw_fd(), libc::SHUT_RDWR) };
                std::mem::forget(sock);
            }
        }
        if let Some(fd) = &fd {
            if self.state.borrow().sendfile_active {
                // The sendfile works on a duplicate of the socket: shut
                // the connection down so that it stops at once.
                // SAFETY: `fd` is our open socket; shutdown takes no
                // memory.
                unsafe { libc::shutdown(fd.as_raw_fd(), libc::SHUT_RDWR) };
            }
        }
        drop(fd);
        let detach = self.detach.borrow_mut().take();
        if let Some(detach) = detach {
            detach();
        }
        for w in self.empty_waiters.borrow_mut().drain(..) {
            w.wake();
        }
        if let Some(w) = self.pump_waker.borrow_mut().take() {
            w.wake();
        }
    }

    /// asyncio's `_fatal_error`: report unless it is a reset or broken
    /// pipe, then force-close with the error.
    pub(crate) fn fatal_error(
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
                ctx.transport = Some(Transport {
                    inner: self.clone(),
                });
                ctx.protocol = Some(self.protocol_name.to_string());
                lp.call_exception_handler(&ctx);
            }
        } else {
            tracing::debug!(target: "ringloop", error = %err, "{message}");
        }
        self.force_close(Some(err));
    }
}

impl lost::LostTarget for StreamInner {
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
