//! asyncio's "Hello World with call_soon" example, on ringloop.
//!
//! A callback scheduled with `call_soon` prints "Hello World" and stops
//! the loop; `run_forever` returns once it has run; then the loop is
//! closed. The Python original:
//!
//! ```python
//! def hello_world(loop):
//!     print('Hello World')
//!     loop.stop()
//!
//! loop = asyncio.new_event_loop()
//! loop.call_soon(hello_world, loop)
//! try:
//!     loop.run_forever()
//! finally:
//!     loop.close()
//! ```
//!
//! Run it with:
//!
//! ```text
//! cargo run --example hello_world
//! ```

use ringloop::EventLoop;

/// A callback to print "Hello World" and stop the event loop.
fn hello_world(lp: &EventLoop) {
    println!("Hello World");
    lp.stop();
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let lp = EventLoop::new()?;

    // Schedule a call to hello_world().
    let handle = lp.clone();
    lp.call_soon(move || hello_world(&handle))?;

    // Blocking call, interrupted by lp.stop(). Close the loop whether or
    // not it ran cleanly (Python's `finally`), then report any error.
    let ran = lp.run_forever();
    lp.close()?;
    ran?;
    Ok(())
}
