//! The main-thread rule of the default policy, run on the process's real
//! main thread (this test binary has no harness, so `main` is the test).

use ringloop::{get_event_loop, set_event_loop, Error};

fn main() {
    let a = get_event_loop().expect("the main thread gets a loop on demand");
    let b = get_event_loop().unwrap();
    assert!(a == b, "the same loop each time");
    // Once set_event_loop was called, even the main thread gets no
    // implicit loop (asyncio's rule).
    set_event_loop(None);
    assert!(matches!(get_event_loop(), Err(Error::NoCurrentLoop)));
    a.close().unwrap();
    println!("policy_main_thread: 1 passed, 0 failed");
}
