//! [`SubprocessProtocol`]: what a subprocess transport calls as its
//! child's pipes deliver and as the child exits.

use std::io;

use super::transport::SubprocessTransport;
use crate::protocol::BaseProtocol;

/// A subprocess protocol (`asyncio.SubprocessProtocol`).
///
/// The order is asyncio's: `connection_made` first (before
/// `subprocess_exec` returns), then `pipe_data_received` and
/// `pipe_connection_lost` as the pipes deliver, and `process_exited` when
/// the child has exited and been reaped, in the order those happened;
/// `connection_lost(None)` comes last, exactly once, only after the child
/// has exited **and** every pipe is closed. `pause_writing` and
/// `resume_writing` follow the child's stdin pipe's buffer.
///
/// Every method has a default that does nothing. A panic in one is
/// reported to the loop's exception handler, and the next events are
/// still delivered (asyncio runs each of these as a separate callback).
///
/// # Example
///
/// ```
/// use ringloop::{BaseProtocol, LoopFuture, SubprocessProtocol, SubprocessTransport};
///
/// struct Collect {
///     out: Vec<u8>,
///     transport: Option<SubprocessTransport>,
///     code: Option<i32>,
///     done: LoopFuture<()>,
/// }
///
/// impl BaseProtocol for Collect {
///     type Transport = SubprocessTransport;
///     fn connection_made(&mut self, t: SubprocessTransport) {
///         self.transport = Some(t);
///     }
///     fn connection_lost(&mut self, _: Option<std::io::Error>) {
///         // The child exited and every pipe is closed.
///         let _ = self.done.set_result(());
///     }
/// }
///
/// impl SubprocessProtocol for Collect {
///     fn pipe_data_received(&mut self, fd: i32, data: &[u8]) {
///         if fd == 1 {
///             self.out.extend_from_slice(data);
///         }
///     }
///     fn process_exited(&mut self) {
///         self.code = self.transport.as_ref().and_then(|t| t.get_returncode());
///     }
/// }
///
/// let lp = ringloop::EventLoop::new()?;
/// let l = lp.clone();
/// let (out, code) = lp.run_until_complete(async move {
///     let done = l.create_future();
///     let d = done.clone();
///     let factory = move || Collect { out: Vec::new(), transport: None, code: None, done: d };
///     let (_transport, proto) = l
///         .subprocess_exec(factory, "echo", ["hello"], Default::default())
///         .await?;
///     done.await?;
///     let p = proto.borrow();
///     Ok::<_, Box<dyn std::error::Error>>((p.out.clone(), p.code))
/// })??;
/// assert_eq!(out, b"hello\n");
/// assert_eq!(code, Some(0));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait SubprocessProtocol: BaseProtocol<Transport = SubprocessTransport> {
    /// The child wrote `data` to its stdout (`fd == 1`) or stderr
    /// (`fd == 2`). `data` is valid only during the call.
    fn pipe_data_received(&mut self, fd: i32, data: &[u8]) {
        let _ = (fd, data);
    }

    /// The pipe of descriptor `fd` closed: `None` at EOF (or after
    /// `close`), `Some(err)` if it failed (a broken stdin pipe).
    fn pipe_connection_lost(&mut self, fd: i32, error: Option<io::Error>) {
        let _ = (fd, error);
    }

    /// The child exited; its return code is in
    /// [`SubprocessTransport::get_returncode`].
    fn process_exited(&mut self) {}
}
