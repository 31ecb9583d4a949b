//! Randomised cancellation under load, on each backend: many concurrent
//! receives, sends, accepts and sleeps, a random third of them cancelled
//! at random moments. Afterwards nothing may be left in flight, no
//! descriptor may leak, nothing may be reported to the exception handler,
//! and every transfer that was not cancelled must be intact.
//!
//! Bounded: a fixed seed, a fixed number of operations, a watchdog.

use std::cell::RefCell;
use std::net::TcpListener;
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::time::Duration;

use ringloop::{EventLoop, Task};
use ringloop_uring_tests::{fd_lock, fd_snapshot, pattern, TestLoop};

/// xorshift64*: deterministic, dependency-free.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// What one operation is expected to have done, if not cancelled.
enum Expect {
    /// A receive of exactly these bytes (sent by its partner).
    Bytes(Vec<u8>),
    /// Anything (a send, an accept, a sleep).
    Done,
}

async fn recv_exact(lp: EventLoop, sock: Rc<UnixStream>, len: usize) -> Vec<u8> {
    let mut got = Vec::with_capacity(len);
    while got.len() < len {
        let chunk = lp.sock_recv(&*sock, len - got.len()).await.unwrap();
        assert!(!chunk.is_empty(), "peer closed early");
        got.extend_from_slice(&chunk);
    }
    got
}

fn scenario(seed: u64) {
    let lp = TestLoop::new();
    let mut rng = Rng(seed);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let listener = Rc::new(listener);
    let addr = listener.local_addr().unwrap();

    type Outcome = Rc<RefCell<Option<Vec<u8>>>>;
    let mut ops: Vec<(Task<()>, Expect, Outcome, bool)> = Vec::new();
    let mut clients = Vec::new();
    for i in 0..300u64 {
        let l = lp.lp();
        let out: Outcome = Rc::default();
        let o = out.clone();
        let cancel = rng.below(3) == 0;
        let (task, expect) = match rng.below(4) {
            // A transfer over a fresh pair: one task receives exactly what
            // the other sends.
            0 | 1 => {
                let (a, b) = UnixStream::pair().unwrap();
                a.set_nonblocking(true).unwrap();
                b.set_nonblocking(true).unwrap();
                let (a, b) = (Rc::new(a), Rc::new(b));
                let len = 1 + rng.below(512 * 1024) as usize;
                let data = pattern(len, seed ^ i);
                let l2 = l.clone();
                let sender = l
                    .create_task(async move {
                        // A cancelled receiver may close its end: the send
                        // may then fail with EPIPE, which is fine.
                        let _ = l2.sock_sendall(&*a, data).await;
                    })
                    .unwrap();
                let expected = pattern(len, seed ^ i);
                let recv = lp
                    .create_task(async move {
                        let got = recv_exact(l.clone(), b, len).await;
                        *o.borrow_mut() = Some(got);
                    })
                    .unwrap();
                ops.push((sender, Expect::Done, Rc::default(), false));
                (recv, Expect::Bytes(expected))
            }
            // An accept, served by a client connecting from a thread.
            2 => {
                let lst = listener.clone();
                clients.push(std::thread::spawn(move || {
                    std::net::TcpStream::connect(addr)
                }));
                let t = lp
                    .create_task(async move {
                        let (s, _) = l.sock_accept(&*lst).await.unwrap();
                        drop(s);
                        *o.borrow_mut() = Some(Vec::new());
                    })
                    .unwrap();
                (t, Expect::Done)
            }
            // A sleep.
            _ => {
                let ms = rng.below(5);
                let t = lp
                    .create_task(async move {
                        l.sleep(Duration::from_millis(ms)).unwrap().await;
                        *o.borrow_mut() = Some(Vec::new());
                    })
                    .unwrap();
                (t, Expect::Done)
            }
        };
        if cancel {
            // Cancel at a random moment: now, or a few ms from now.
            let h = task.handle();
            let delay = rng.below(4);
            if delay == 0 {
                h.cancel();
            } else {
                lp.call_later(Duration::from_millis(delay), move || {
                    h.cancel();
                })
                .unwrap();
            }
        }
        ops.push((task, expect, out, cancel));
    }

    // Run until every operation finished, was cancelled, or (an accept
    // whose client raced a cancelled accept) is still waiting.
    let l = lp.lp();
    let watchdog = lp.lp();
    lp.call_later(Duration::from_secs(30), move || watchdog.stop())
        .unwrap();
    let pending: Rc<RefCell<Vec<ringloop::TaskHandle>>> =
        Rc::new(RefCell::new(ops.iter().map(|(t, ..)| t.handle()).collect()));
    fn poll_done(l: EventLoop, pending: Rc<RefCell<Vec<ringloop::TaskHandle>>>) {
        pending.borrow_mut().retain(|t| !t.done());
        if pending.borrow().is_empty() {
            l.stop();
        } else {
            let l2 = l.clone();
            l.call_later(Duration::from_millis(2), move || poll_done(l2, pending))
                .unwrap();
        }
    }
    let p = pending.clone();
    lp.call_soon(move || poll_done(l, p)).unwrap();
    lp.run_forever().unwrap();
    // Accepts can outnumber clients only if a client failed; surplus
    // accepts (cancelled ones leave their client to a later accept) are
    // cancelled now.
    for t in pending.borrow().iter() {
        t.cancel();
    }
    for _ in 0..100 {
        if lp.in_flight_ops() == 0 && lp.pending_tasks() == 0 {
            break;
        }
        lp.call_soon(|| ()).unwrap();
        lp.run_once().unwrap();
    }
    assert_eq!(
        lp.in_flight_ops(),
        0,
        "seed {seed}: operations left in flight"
    );
    assert_eq!(lp.pending_tasks(), 0, "seed {seed}: tasks left");

    let mut checked = 0;
    for (task, expect, out, cancelled) in &ops {
        assert!(task.done());
        if *cancelled || task.cancelled() {
            continue;
        }
        if let Expect::Bytes(want) = expect {
            let got = out.borrow();
            let got = got.as_ref().expect("an uncancelled receive completed");
            assert!(got == want, "seed {seed}: bytes differ");
            checked += 1;
        }
    }
    assert!(
        checked > 20,
        "seed {seed}: only {checked} transfers checked"
    );
    drop(ops);
    for c in clients {
        let _ = c.join();
    }
}

#[test]
fn random_cancellation_leaves_nothing_behind() {
    let _serial = fd_lock();
    let before = fd_snapshot();
    for seed in [0x9E37_79B9_7F4A_7C15u64, 42, 7_777_777] {
        scenario(seed);
    }
    before.assert_nothing_new("descriptors leaked");
}
