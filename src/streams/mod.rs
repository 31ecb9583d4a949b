//! Streams: `async` reads and writes over TCP and Unix connections
//! (Python 3.7's `asyncio.streams`).
//!
//! [`open_connection`] connects and returns a ([`StreamReader`],
//! [`StreamWriter`]) pair; [`start_server`] accepts connections and runs
//! a callback's future as a task for each one, with its own pair. The
//! Unix variants are [`open_unix_connection`] and [`start_unix_server`].
//! They are built on the loop's transports and protocols:
//! [`StreamReaderProtocol`] feeds the reader and records the flow
//! control that [`StreamWriter::drain`] waits on.
//!
//! | asyncio | ringloop |
//! |---|---|
//! | `await asyncio.open_connection(host, port, limit=..., **kw)` | `open_connection(&lp, Some(host), Some(port), limit, ConnectOptions)` |
//! | `await asyncio.start_server(cb, host, port, limit=..., **kw)` | `start_server(&lp, cb, &[host], Some(port), limit, ServerOptions)` |
//! | `reader.read(n)`, `readline()`, `readexactly(n)`, `readuntil(sep)` | the same names, `async`, returning `Result<Bytes, StreamError>` |
//! | `writer.write(data)`; `await writer.drain()` | `writer.write(&data)?; writer.drain().await?` |
//! | `IncompleteReadError`, `LimitOverrunError` | [`StreamError::IncompleteRead`], [`StreamError::LimitOverrun`] |
//!
//! `docs/streams.md` has the full mapping and the differences.
//!
//! Errors are [`StreamError`] values; `open_*`/`start_*` return
//! [`std::io::Result`] like the loop's `create_*` methods. A
//! `StreamError` converts into `io::Error` and into [`crate::Error`], so
//! `?` works in functions returning either.
//!
//! # Example
//!
//! ```
//! use ringloop::streams::{self, DEFAULT_LIMIT};
//!
//! let dir = std::env::temp_dir().join(format!("ringloop-streams-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir)?;
//! let path = dir.join("upper.sock");
//! let lp = ringloop::EventLoop::new()?;
//! let (l, p) = (lp.clone(), path.clone());
//! let answer = lp.run_until_complete(async move {
//!     // Answers each line in upper case.
//!     let server = streams::start_unix_server(
//!         &l,
//!         |reader, writer| async move {
//!             while let Ok(line) = reader.readline().await {
//!                 if line.is_empty() || writer.write(&line.to_ascii_uppercase()).is_err() {
//!                     break;
//!                 }
//!             }
//!         },
//!         Some(&p),
//!         DEFAULT_LIMIT,
//!         Default::default(),
//!     )
//!     .await?;
//!     let (reader, writer) = streams::open_unix_connection(&l, Some(&p), DEFAULT_LIMIT, None).await?;
//!     writer.writelines([&b"hello\n"[..], b"world\n"])?;
//!     writer.write_eof();
//!     let answer = reader.read(-1).await?;
//!     server.close();
//!     Ok::<_, Box<dyn std::error::Error>>(answer)
//! })??;
//! assert_eq!(&answer[..], b"HELLO\nWORLD\n");
//! std::fs::remove_dir_all(&dir)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod buffer;
mod error;
mod open;
mod protocol;
mod read;
mod reader;
mod writer;

pub use error::StreamError;
pub use open::{open_connection, open_unix_connection, start_server, start_unix_server};
pub use protocol::StreamReaderProtocol;
pub use reader::StreamReader;
pub use writer::StreamWriter;

// For the subprocess streams (`crate::process`).
pub(crate) use error::copy_io_error;
pub(crate) use protocol::FlowState;
pub(crate) use reader::ReadFlow;
pub(crate) use writer::yield_now;

/// The default reader limit, 64 KiB (asyncio's `_DEFAULT_LIMIT = 2 ** 16`).
pub const DEFAULT_LIMIT: usize = 1 << 16;
