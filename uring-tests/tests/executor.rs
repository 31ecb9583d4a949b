//! run_in_executor, the lazily started default pool, custom executors,
//! getaddrinfo / getnameinfo.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ringloop::net::AddrInfoHints;
use ringloop::{Error, EventLoop, Executor, Job, ThreadPool};
use ringloop_uring_tests::TestLoop;

#[test]
fn results_come_back_to_the_loop_thread() {
    let lp = TestLoop::new();
    let loop_thread = std::thread::current().id();
    let l = lp.lp();
    let (v, worker) = lp.block_on(async move {
        let job = l
            .run_in_executor(None, || (21 * 2, std::thread::current().id()))
            .unwrap();
        let out = job.await.unwrap();
        assert_eq!(std::thread::current().id(), loop_thread);
        out
    });
    assert_eq!(v, 42);
    assert_ne!(worker, loop_thread, "the job ran off the loop thread");
}

#[test]
fn a_panicking_job_is_an_error_not_a_crash() {
    let lp = TestLoop::new();
    let l = lp.lp();
    let r = lp.block_on(async move {
        l.run_in_executor(None, || -> u8 { panic!("job exploded") })
            .unwrap()
            .await
    });
    assert!(
        matches!(r, Err(Error::Panicked(ref m)) if m.contains("job exploded")),
        "{r:?}"
    );
}

#[test]
fn the_default_pool_starts_no_thread_until_first_use() {
    let pool = Arc::new(ThreadPool::new(4));
    assert_eq!(pool.workers(), 0);
    let lp = TestLoop::new();
    lp.set_default_executor(pool.clone());
    assert_eq!(pool.workers(), 0);
    let l = lp.lp();
    let n = lp.block_on(async move {
        let jobs: Vec<_> = (0..8)
            .map(|i| l.run_in_executor(None, move || i * 10).unwrap())
            .collect();
        let mut sum = 0;
        for j in jobs {
            sum += j.await.unwrap();
        }
        sum
    });
    assert_eq!(n, 280);
    assert!(pool.workers() >= 1 && pool.workers() <= 4);
}

struct Counting(AtomicUsize, ThreadPool);
impl Executor for Counting {
    fn execute(&self, job: Job) -> io::Result<()> {
        self.0.fetch_add(1, Ordering::SeqCst);
        self.1.execute(job)
    }
}

#[test]
fn an_explicit_executor_is_used() {
    let lp = TestLoop::new();
    let exec = Arc::new(Counting(AtomicUsize::new(0), ThreadPool::new(1)));
    let e: Arc<dyn Executor> = exec.clone();
    let l = lp.lp();
    let v = lp.block_on(async move { l.run_in_executor(Some(e), || 5).unwrap().await.unwrap() });
    assert_eq!(v, 5);
    assert_eq!(exec.0.load(Ordering::SeqCst), 1);
}

#[test]
fn close_shuts_the_default_executor_down_without_waiting() {
    let lp = EventLoop::new().unwrap();
    let job = lp
        .run_in_executor(None, || std::thread::sleep(Duration::from_millis(1500)))
        .unwrap();
    drop(job);
    let started = Instant::now();
    lp.close().unwrap();
    // Liveness bound: close must not join the sleeping worker.
    assert!(
        started.elapsed() < Duration::from_millis(1000),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_shut_down_executor_refuses_jobs() {
    let pool = ThreadPool::new(1);
    pool.shutdown(true);
    assert!(pool.execute(Box::new(|| ())).is_err());
}

#[test]
fn getaddrinfo_resolves_literals_and_localhost() {
    let lp = TestLoop::new();
    let l = lp.lp();
    let (lit, local) = lp.block_on(async move {
        let hints = AddrInfoHints {
            socktype: libc::SOCK_STREAM,
            ..Default::default()
        };
        let lit = l
            .getaddrinfo(Some("127.0.0.1"), Some(8080), hints)
            .await
            .unwrap();
        let local = l
            .getaddrinfo(
                Some("localhost"),
                Some(80),
                AddrInfoHints {
                    family: libc::AF_INET,
                    ..hints
                },
            )
            .await
            .unwrap();
        (lit, local)
    });
    assert_eq!(lit.len(), 1);
    assert_eq!(lit[0].addr, "127.0.0.1:8080".parse::<SocketAddr>().unwrap());
    assert_eq!(lit[0].family, libc::AF_INET);
    assert_eq!(lit[0].socktype, libc::SOCK_STREAM);
    assert!(local
        .iter()
        .all(|a| a.addr.ip().is_loopback() && a.addr.port() == 80));
    assert!(!local.is_empty());
}

#[test]
fn getaddrinfo_errors_are_io_errors() {
    let lp = TestLoop::new();
    let l = lp.lp();
    let err = lp
        .block_on(async move {
            let hints = AddrInfoHints {
                flags: libc::AI_NUMERICHOST,
                ..Default::default()
            };
            l.getaddrinfo(Some("not an address"), None, hints).await
        })
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
    let l = lp.lp();
    let nul = lp
        .block_on(async move {
            l.getaddrinfo(Some("bad\0host"), None, AddrInfoHints::default())
                .await
        })
        .unwrap_err();
    assert_eq!(nul.kind(), io::ErrorKind::InvalidInput);
}

#[test]
fn getnameinfo_numeric() {
    let lp = TestLoop::new();
    let l = lp.lp();
    let (host, serv) = lp
        .block_on(async move {
            l.getnameinfo(
                "127.0.0.1:8080".parse().unwrap(),
                libc::NI_NUMERICHOST | libc::NI_NUMERICSERV,
            )
            .await
        })
        .unwrap();
    assert_eq!(host, "127.0.0.1");
    assert_eq!(serv, "8080");
}
