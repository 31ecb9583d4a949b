//! `write`, `write_eof` and `shutdown(SHUT_WR)`: queueing bytes (with no
//! copy when they are what `data_received` is being handed) and asking
//! for their send.

use std::io;
use std::rc::Rc;

use bytes::Bytes;

use super::{Delivering, StreamInner, CONNLOST_WARN_AFTER, SHARE_FROM};
use crate::error::Error;
use crate::transport::chunk::offset_within;
use crate::transport::write_buf::WriteBuffer;

impl StreamInner {
    /// `write(data)`: a copy of `data`, or, when `data` is (part of)
    /// what `data_received` is being handed right now, the received
    /// buffer itself (an echo or a relay then sends without copying; the
    /// buffer goes back once sent).
    pub(crate) fn write_slice(self: &Rc<Self>, data: &[u8]) -> crate::Result<()> {
        if data.len() >= SHARE_FROM {
            let delivering = self.delivering.borrow().clone();
            if let Some(rx) = delivering {
                if let Some(start) = offset_within(&rx, data) {
                    let end = start + data.len();
                    return self.write_with(data.len(), |b| match &rx {
                        Delivering::Buf(buf) => {
                            if !b.push_received(buf, start, end) {
                                b.push_slice(data);
                            }
                        }
                        Delivering::Bytes(bytes) => b.push_bytes(bytes.slice(start..end)),
                    });
                }
            }
        }
        self.write_with(data.len(), |b| b.push_slice(data))
    }

    /// Asks that large deliveries be handed as `Bytes` the protocol can
    /// keep (the streams reader sets it in `connection_made`).
    pub(crate) fn set_share_received(&self) {
        self.share_received.set(true);
    }

    /// `data` as `Bytes` without copying, when it is (part of) what
    /// `data_received` is being handed and that was turned into `Bytes`
    /// (see [`set_share_received`](Self::set_share_received)).
    pub(crate) fn shared_received(&self, data: &[u8]) -> Option<Bytes> {
        match self.delivering.borrow().as_ref()? {
            Delivering::Bytes(bytes) => {
                let start = offset_within(bytes, data)?;
                Some(bytes.slice(start..start + data.len()))
            }
            Delivering::Buf(_) => None,
        }
    }

    /// `write`: queue, wake the pump, maybe pause the protocol.
    pub(crate) fn write_with(
        self: &Rc<Self>,
        len: usize,
        push: impl FnOnce(&mut WriteBuffer),
    ) -> crate::Result<()> {
        {
            let mut st = self.state.borrow_mut();
            if st.eof_requested {
                return Err(Error::InvalidState("cannot call write() after write_eof()"));
            }
            if st.sendfile_active {
                return Err(Error::InvalidState(
                    "cannot call write() while sendfile is in progress",
                ));
            }
            if len == 0 {
                return Ok(());
            }
            if st.conn_lost > 0 {
                if st.conn_lost >= CONNLOST_WARN_AFTER {
                    tracing::warn!(target: "ringloop", "socket.send() raised exception.");
                }
                st.conn_lost += 1;
                return Ok(());
            }
            push(&mut st.buf);
        }
        self.request_send();
        self.maybe_pause_protocol();
        Ok(())
    }

    /// Bytes were queued: a pump run sends them before it returns; from
    /// anywhere else the transport goes on the loop's flush queue, so
    /// that they leave at the end of this iteration rather than the next.
    pub(super) fn request_send(self: &Rc<Self>) {
        if self.in_pump.get() || self.flush_queued.get() || self.send.borrow().is_some() {
            return;
        }
        let has_waker = self.pump_waker.borrow().is_some();
        match self.lp.upgrade() {
            // Before its first run the pump is scheduled anyway.
            Some(lp) if has_waker => {
                self.flush_queued.set(true);
                lp.flush.push(self.clone());
            }
            _ => self.wake_pump(),
        }
    }

    /// `write_eof()`.
    pub(crate) fn write_eof(self: &Rc<Self>) {
        let now = {
            let mut st = self.state.borrow_mut();
            if st.closing || st.eof_requested {
                return;
            }
            st.eof_requested = true;
            if st.buf.size() == 0 && !st.sendfile_active {
                st.eof_sent = true;
                true
            } else {
                false
            }
        };
        if now {
            self.shutdown_write();
        }
    }

    /// `shutdown(SHUT_WR)` now.
    pub(crate) fn shutdown_write(self: &Rc<Self>) {
        if let Some(fd) = self.fd() {
            // SAFETY: `fd` is our open socket; shutdown takes no memory.
            let rc = unsafe { libc::shutdown(fd, libc::SHUT_WR) };
            if rc < 0 {
                let e = io::Error::last_os_error();
                if e.raw_os_error() != Some(libc::ENOTCONN) {
                    self.fatal_error(e, "Fatal error on write_eof", None);
                }
            }
        }
    }
}
