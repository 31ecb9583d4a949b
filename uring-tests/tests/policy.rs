//! The event loop policy: per-thread current loops, asyncio's rules, and
//! a custom policy. The policy is process-global, so everything runs in
//! one test function: parallel tests would observe each other's policy.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use ringloop::{
    get_event_loop, get_event_loop_policy, new_event_loop, set_event_loop, set_event_loop_policy,
    Error, EventLoop, EventLoopPolicy,
};

struct CountingPolicy(AtomicUsize);

impl EventLoopPolicy for CountingPolicy {
    fn get_event_loop(&self) -> ringloop::Result<EventLoop> {
        Err(Error::NoCurrentLoop)
    }
    fn set_event_loop(&self, _lp: Option<EventLoop>) {}
    fn new_event_loop(&self) -> std::io::Result<EventLoop> {
        self.0.fetch_add(1, Ordering::SeqCst);
        EventLoop::new()
    }
}

#[test]
fn policy_rules() {
    // A thread merely named "main" is not the main thread (the real one
    // is tested in policy_main_thread.rs, which runs on it).
    let t = std::thread::Builder::new()
        .name("main".into())
        .spawn(|| assert!(matches!(get_event_loop(), Err(Error::NoCurrentLoop))))
        .unwrap();
    t.join().unwrap();

    // Not the main thread: no loop until one is set.
    let t = std::thread::spawn(|| {
        assert!(matches!(get_event_loop(), Err(Error::NoCurrentLoop)));
        let lp = new_event_loop().unwrap();
        set_event_loop(Some(lp.clone()));
        assert!(get_event_loop().unwrap() == lp);
        // Inside a running loop, the running loop wins.
        let other = EventLoop::new().unwrap();
        let me = other.clone();
        let inside = other
            .run_until_complete(async move { get_event_loop().unwrap() == me })
            .unwrap();
        assert!(inside);
        set_event_loop(None);
        assert!(matches!(get_event_loop(), Err(Error::NoCurrentLoop)));
        lp.close().unwrap();
        other.close().unwrap();
    });
    t.join().unwrap();

    // A custom policy is consulted, and None restores the default.
    let custom = Arc::new(CountingPolicy(AtomicUsize::new(0)));
    set_event_loop_policy(Some(custom.clone()));
    let lp = new_event_loop().unwrap();
    assert_eq!(custom.0.load(Ordering::SeqCst), 1);
    let v = ringloop::run(async { 3 }).unwrap();
    assert_eq!(v, 3);
    assert_eq!(custom.0.load(Ordering::SeqCst), 2, "run() asks the policy");
    lp.close().unwrap();
    set_event_loop_policy(None);
    let _default = get_event_loop_policy();
}
