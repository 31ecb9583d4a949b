//! What `loop.sendfile` (`src/transport/sendfile.rs`) asks of a stream
//! transport: exclusive use of the socket, a duplicate of it, and a queue
//! for the buffered fallback's chunks.

use std::io;
use std::os::fd::OwnedFd;

use super::StreamInner;

impl StreamInner {
    /// Starts a `sendfile`: user writes become errors and reading pauses
    /// (asyncio pauses it too). Returns whether reading was on, for
    /// [`StreamInner::end_sendfile`].
    pub(crate) fn begin_sendfile(&self) -> io::Result<bool> {
        let mut st = self.state.borrow_mut();
        if st.closing || self.finished.get() {
            return Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "transport is closing",
            ));
        }
        if st.sendfile_active {
            return Err(io::Error::other("a sendfile is already in progress"));
        }
        if st.eof_requested {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "cannot sendfile after write_eof()",
            ));
        }
        st.sendfile_active = true;
        let was_reading = !st.read_paused;
        st.read_paused = true;
        Ok(was_reading)
    }

    /// Ends a `sendfile` (however it ended): writes are allowed again,
    /// reading resumes if it was on, and a `close()` or `write_eof()` made
    /// meanwhile completes once the buffer drains.
    pub(crate) fn end_sendfile(&self, was_reading: bool) {
        {
            let mut st = self.state.borrow_mut();
            st.sendfile_active = false;
            if was_reading && !st.closing {
                st.read_paused = false;
            }
        }
        // The pump finds the buffer empty and completes a pending close
        // or EOF (with no protocol borrow held).
        self.wake_pump();
    }

    /// Queues a chunk of a sendfile's buffered fallback (no flow-control
    /// report to the protocol; the caller paces itself).
    pub(crate) fn push_sendfile_chunk(&self, chunk: bytes::Bytes) {
        self.state.borrow_mut().buf.push_bytes(chunk);
        if self.send.borrow().is_none() {
            self.wake_pump();
        }
    }

    /// A duplicate of the socket for a sendfile, so that the descriptor
    /// it works on stays valid even if the transport closes meanwhile.
    pub(crate) fn dup_fd(&self) -> io::Result<OwnedFd> {
        match self.fd.borrow().as_ref() {
            Some(fd) => fd.try_clone(),
            None => Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "transport is closed",
            )),
        }
    }
}
