//! RINGLOOP_DEBUG and RINGLOOP_BACKEND. The environment is process-global,
//! so this binary holds exactly one test.

use ringloop::{Backend, EventLoop};

#[test]
fn environment_switches() {
    let saved_backend = std::env::var_os("RINGLOOP_BACKEND");

    // SAFETY (test): this binary runs a single test on a single thread,
    // so nothing reads the environment concurrently.
    unsafe { std::env::set_var("RINGLOOP_DEBUG", "1") };
    let lp = EventLoop::new().unwrap();
    assert!(lp.get_debug(), "RINGLOOP_DEBUG=1 turns debug mode on");
    lp.close().unwrap();
    // SAFETY (test): as above.
    unsafe { std::env::set_var("RINGLOOP_DEBUG", "") };
    let lp = EventLoop::new().unwrap();
    assert!(!lp.get_debug(), "an empty value means off");
    lp.close().unwrap();
    // The builder overrides the environment.
    // SAFETY (test): as above.
    unsafe { std::env::set_var("RINGLOOP_DEBUG", "1") };
    let lp = EventLoop::builder().debug(false).build().unwrap();
    assert!(!lp.get_debug());
    lp.close().unwrap();
    // SAFETY (test): as above.
    unsafe { std::env::remove_var("RINGLOOP_DEBUG") };

    // A malformed backend name is a clear error, not a silent default.
    // SAFETY (test): as above.
    unsafe { std::env::set_var("RINGLOOP_BACKEND", "kqueue") };
    let err = EventLoop::new().unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    assert!(err.to_string().contains("kqueue"), "{err}");
    // SAFETY (test): as above.
    unsafe { std::env::set_var("RINGLOOP_BACKEND", "uring") };
    let lp = EventLoop::new().unwrap();
    assert_eq!(lp.backend(), Backend::Uring);
    assert_eq!(lp.backend().to_string(), "io_uring");
    assert!(lp.backend_reason().contains("forced by RINGLOOP_BACKEND"));
    lp.close().unwrap();
    // SAFETY (test): as above.
    unsafe { std::env::remove_var("RINGLOOP_BACKEND") };
    let lp = EventLoop::new().unwrap();
    assert_eq!(lp.backend_reason(), "io_uring, chosen automatically");
    lp.close().unwrap();

    // SAFETY (test): as above.
    unsafe { std::env::set_var("RINGLOOP_BACKEND", "epoll") };
    let lp = EventLoop::new().unwrap();
    assert_eq!(lp.backend(), Backend::Epoll);
    assert!(
        lp.backend_reason().contains("forced by RINGLOOP_BACKEND"),
        "{}",
        lp.backend_reason()
    );
    assert!(lp.kernel_features().is_none());
    lp.close().unwrap();
    // The builder wins over the environment.
    let lp = EventLoop::builder()
        .backend(Backend::Uring)
        .build()
        .unwrap();
    assert_eq!(lp.backend(), Backend::Uring);
    assert!(lp.backend_reason().contains("forced by the builder"));
    lp.close().unwrap();

    // SAFETY (test): as above.
    unsafe {
        match saved_backend {
            Some(v) => std::env::set_var("RINGLOOP_BACKEND", v),
            None => std::env::remove_var("RINGLOOP_BACKEND"),
        }
    }
}
