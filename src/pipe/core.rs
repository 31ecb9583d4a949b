//! What both pipe transports share: the loop, the descriptor, the
//! protocol and how it is called, the pump task's waker, and the end
//! (`connection_lost` exactly once, then the descriptor closes).
//!
//! Protocol methods are called with no borrow of transport state held,
//! so a protocol may call back into its transport from any of them.

use std::cell::{Cell, RefCell};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::{Rc, Weak};
use std::task::{Context, Waker};

use super::fd::PipeFd;
use crate::driver::op::DriverRef;
use crate::error::Error;
use crate::event_loop::{EventLoop, LoopInner};
use crate::exception::ErrorContext;
use crate::transport::errors::clone_io_error;
use crate::transport::protocol_slot::{Called, ProtocolSlot};

/// Called right after the protocol's `connection_lost`, with a copy of
/// its error: how code inside the crate (subprocess transports) learns
/// that a pipe is gone.
pub(crate) type LostHook = Box<dyn FnOnce(Option<io::Error>)>;

/// The shared core of a pipe transport, generic over the protocol trait
/// object (`dyn ReadPipeProtocol`, `dyn WritePipeProtocol`).
pub(crate) struct Core<P: ?Sized> {
    pub(crate) lp: Weak<LoopInner>,
    pub(crate) driver: DriverRef,
    /// The descriptor; taken (closed) at the end.
    fd: RefCell<Option<PipeFd>>,
    pub(crate) raw_fd: RawFd,
    protocol: ProtocolSlot<P>,
    protocol_name: &'static str,
    on_lost: RefCell<Option<LostHook>>,
    /// The pump task's waker (set at its first run).
    waker: RefCell<Option<Waker>>,
    /// The pump is running: no need to wake it.
    pub(crate) in_pump: Cell<bool>,
    /// `connection_lost` ran (or the loop closed): the pump ends.
    finished: Cell<bool>,
}

impl<P: ?Sized> Core<P> {
    pub(crate) fn new(
        lp: &EventLoop,
        fd: PipeFd,
        protocol: Rc<RefCell<P>>,
        protocol_name: &'static str,
        on_lost: Option<LostHook>,
    ) -> Core<P> {
        Core {
            lp: lp.downgrade(),
            driver: lp.driver_ref(),
            raw_fd: fd.as_raw_fd(),
            fd: RefCell::new(Some(fd)),
            protocol: ProtocolSlot::new(protocol),
            protocol_name,
            on_lost: RefCell::new(on_lost),
            waker: RefCell::new(None),
            in_pump: Cell::new(false),
            finished: Cell::new(false),
        }
    }

    pub(crate) fn loop_(&self) -> Option<EventLoop> {
        self.lp.upgrade().map(EventLoop::from_inner)
    }

    pub(crate) fn protocol_name(&self) -> &'static str {
        self.protocol_name
    }

    /// The descriptor, while open.
    pub(crate) fn fd(&self) -> Option<RawFd> {
        self.fd.borrow().as_ref().map(AsRawFd::as_raw_fd)
    }

    pub(crate) fn is_finished(&self) -> bool {
        self.finished.get()
    }

    /// Calls a protocol method, catching a panic. No transport borrow may
    /// be held by the caller.
    pub(crate) fn call<R>(&self, f: impl FnOnce(&mut P) -> R) -> Called<R> {
        self.protocol.call(f)
    }

    /// The protocol is borrowed elsewhere: true means "try again later".
    pub(crate) fn protocol_busy(&self) -> bool {
        self.protocol.busy()
    }

    /// Reports an error to the loop's exception handler (asyncio's
    /// `call_exception_handler` with `message`, `exception`, `protocol`;
    /// the context's `transport` field holds stream transports only, so
    /// the message names the pipe's descriptor).
    pub(crate) fn report(&self, message: &str, error: Error) {
        if let Some(lp) = self.loop_() {
            let mut ctx =
                ErrorContext::new(format!("{message} (pipe fd {})", self.raw_fd)).with_error(error);
            ctx.protocol = Some(self.protocol_name.to_string());
            lp.call_exception_handler(&ctx);
        }
    }

    /// Remembers the pump's waker.
    pub(crate) fn set_waker(&self, cx: &Context<'_>) {
        let mut w = self.waker.borrow_mut();
        match &*w {
            Some(old) if old.will_wake(cx.waker()) => {}
            _ => *w = Some(cx.waker().clone()),
        }
    }

    /// Wakes the pump unless it is running.
    pub(crate) fn wake(&self) {
        if self.in_pump.get() {
            return;
        }
        if let Some(w) = self.waker.borrow().as_ref() {
            w.wake_by_ref();
        }
    }

    /// asyncio's `_call_connection_lost`: the protocol hears it once
    /// (through `lost`), then the descriptor closes, then the hook runs.
    /// The caller has stopped its I/O.
    pub(crate) fn finish(
        &self,
        error: Option<io::Error>,
        lost: impl FnOnce(&mut P, Option<io::Error>),
    ) -> Called<()> {
        if self.finished.get() {
            return Called::Skipped;
        }
        let hook = self.on_lost.borrow_mut().take();
        let copy = hook
            .as_ref()
            .and_then(|_| error.as_ref().map(clone_io_error));
        let called = self.call(|p| lost(p, error));
        self.teardown();
        if let Some(hook) = hook {
            hook(copy);
        }
        called
    }

    /// Releases the protocol and closes the descriptor; idempotent, calls
    /// no protocol method. The caller has stopped its I/O.
    pub(crate) fn teardown(&self) {
        if self.finished.replace(true) {
            return;
        }
        let protocol = self.protocol.take();
        drop(protocol);
        let fd = self.fd.borrow_mut().take();
        drop(fd);
        if let Some(w) = self.waker.borrow_mut().take() {
            w.wake();
        }
    }
}
