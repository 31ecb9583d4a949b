//! Delivering events to a subprocess protocol in order (asyncio's
//! `_pending_calls` and `_call`).
//!
//! asyncio schedules every protocol call with `call_soon`, queueing them
//! until `connection_made` has run. Here an event is delivered at once
//! when nothing is queued before it and the protocol is free (so pipe
//! data is passed as a borrowed slice, without a copy); otherwise it is
//! queued (data copied) and delivered by one scheduled callback, in
//! order. The protocol is never called while it is borrowed, and no
//! borrow of this state is held across a protocol call.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe, Location};
use std::rc::{Rc, Weak};

use super::protocol::SubprocessProtocol;
use super::transport::SubprocessTransport;
use crate::error::Error;
use crate::event_loop::{EventLoop, LoopInner};
use crate::exception::ErrorContext;

/// The shared protocol, type-erased.
pub(crate) type ProtocolRef = Rc<RefCell<dyn SubprocessProtocol>>;

/// One queued protocol call.
pub(crate) enum Call {
    Made(SubprocessTransport),
    Data(i32, Vec<u8>),
    PipeLost(i32, Option<io::Error>),
    Exited,
    PauseWriting,
    ResumeWriting,
    /// `connection_lost(None)`; the protocol is released after it.
    Lost,
}

impl Call {
    fn name(&self) -> &'static str {
        match self {
            Call::Made(_) => "connection_made",
            Call::Data(..) => "pipe_data_received",
            Call::PipeLost(..) => "pipe_connection_lost",
            Call::Exited => "process_exited",
            Call::PauseWriting => "pause_writing",
            Call::ResumeWriting => "resume_writing",
            Call::Lost => "connection_lost",
        }
    }
}

/// The protocol and the calls waiting for it.
pub(crate) struct Calls {
    lp: Weak<LoopInner>,
    /// Taken after `connection_lost` (or at teardown): later calls are
    /// dropped.
    protocol: RefCell<Option<ProtocolRef>>,
    protocol_name: &'static str,
    /// `connection_made` is scheduled: queued calls may be delivered.
    made: Cell<bool>,
    /// `connection_made` was called: `connection_lost` is owed.
    made_delivered: Cell<bool>,
    queue: RefCell<VecDeque<Call>>,
    drain_scheduled: Cell<bool>,
}

impl Calls {
    pub(crate) fn new(
        lp: &EventLoop,
        protocol: ProtocolRef,
        protocol_name: &'static str,
    ) -> Rc<Calls> {
        Rc::new(Calls {
            lp: lp.downgrade(),
            protocol: RefCell::new(Some(protocol)),
            protocol_name,
            made: Cell::new(false),
            made_delivered: Cell::new(false),
            queue: RefCell::new(VecDeque::new()),
            drain_scheduled: Cell::new(false),
        })
    }

    /// True if a call made now would be delivered at once.
    fn can_call_now(&self) -> bool {
        self.made.get()
            && self.queue.borrow().is_empty()
            && self
                .protocol
                .borrow()
                .as_ref()
                .is_some_and(|p| p.try_borrow_mut().is_ok())
    }

    /// Delivers pipe data now if possible (borrowed), else queues a copy.
    pub(crate) fn data(self: &Rc<Self>, fd: i32, data: &[u8]) {
        if self.can_call_now() {
            self.invoke("pipe_data_received", |p| p.pipe_data_received(fd, data));
        } else {
            self.push(Call::Data(fd, data.to_vec()));
        }
    }

    /// Delivers `call` now if possible, else queues it.
    pub(crate) fn call(self: &Rc<Self>, call: Call) {
        if self.can_call_now() {
            self.deliver(call);
        } else {
            self.push(call);
        }
    }

    /// Queues `connection_made(transport)` ahead of everything queued so
    /// far, and schedules the delivery of all of it (asyncio's
    /// `_connect_pipes` end).
    pub(crate) fn start(self: &Rc<Self>, transport: SubprocessTransport) {
        self.queue.borrow_mut().push_front(Call::Made(transport));
        self.made.set(true);
        self.schedule_drain();
    }

    fn push(self: &Rc<Self>, call: Call) {
        if self.protocol.borrow().is_none() {
            return;
        }
        self.queue.borrow_mut().push_back(call);
        if self.made.get() {
            self.schedule_drain();
        }
    }

    fn schedule_drain(self: &Rc<Self>) {
        if self.drain_scheduled.replace(true) {
            return;
        }
        let guard = DrainGuard(Some(self.clone()));
        let scheduled = self.lp.upgrade().is_some_and(|lp| {
            lp.call_soon_boxed(Box::new(move || guard.run()), Location::caller())
                .is_ok()
        });
        if !scheduled {
            self.shutdown();
        }
    }

    /// Delivers queued calls in order until the queue is empty or the
    /// protocol is borrowed elsewhere (then tries again next iteration).
    fn drain(self: &Rc<Self>) {
        self.drain_scheduled.set(false);
        loop {
            let busy = match self.protocol.borrow().as_ref() {
                Some(p) => p.try_borrow_mut().is_err(),
                None => {
                    self.queue.borrow_mut().clear();
                    return;
                }
            };
            if busy {
                // The user holds the protocol across an await.
                self.schedule_drain();
                return;
            }
            let next = self.queue.borrow_mut().pop_front();
            match next {
                Some(call) => self.deliver(call),
                None => return,
            }
        }
    }

    fn deliver(self: &Rc<Self>, call: Call) {
        let name = call.name();
        match call {
            Call::Made(t) => {
                self.made_delivered.set(true);
                self.invoke(name, |p| p.connection_made(t));
            }
            Call::Data(fd, data) => self.invoke(name, |p| p.pipe_data_received(fd, &data)),
            Call::PipeLost(fd, e) => self.invoke(name, |p| p.pipe_connection_lost(fd, e)),
            Call::Exited => self.invoke(name, |p| p.process_exited()),
            Call::PauseWriting => self.invoke(name, |p| p.pause_writing()),
            Call::ResumeWriting => self.invoke(name, |p| p.resume_writing()),
            Call::Lost => {
                self.invoke(name, |p| p.connection_lost(None));
                // Breaks the protocol -> transport -> protocol cycle.
                self.shutdown();
            }
        }
    }

    /// Calls `f` on the protocol, with no borrow of ours held; a panic
    /// goes to the exception handler (asyncio: "Exception in callback").
    fn invoke(&self, what: &'static str, f: impl FnOnce(&mut dyn SubprocessProtocol)) {
        let Some(protocol) = self.protocol.borrow().clone() else {
            return;
        };
        let Ok(mut p) = protocol.try_borrow_mut() else {
            return;
        };
        if let Err(payload) = catch_unwind(AssertUnwindSafe(|| f(&mut *p))) {
            drop(p);
            let Some(lp) = self.lp.upgrade().map(EventLoop::from_inner) else {
                return;
            };
            let mut ctx =
                ErrorContext::new(format!("Exception in callback SubprocessProtocol.{what}()"))
                    .with_error(Error::from_panic(&*payload));
            ctx.protocol = Some(self.protocol_name.to_string());
            lp.call_exception_handler(&ctx);
        }
    }

    /// Drops the protocol and every queued call; nothing more is
    /// delivered. Idempotent.
    pub(crate) fn shutdown(&self) {
        let protocol = self.protocol.borrow_mut().take();
        let queued = std::mem::take(&mut *self.queue.borrow_mut());
        drop(queued);
        drop(protocol);
    }

    /// True once `connection_made` was called.
    pub(crate) fn made_delivered(&self) -> bool {
        self.made_delivered.get()
    }

    pub(crate) fn protocol_name(&self) -> &'static str {
        self.protocol_name
    }
}

/// The scheduled drain: if the loop closes before it runs, the protocol
/// is released instead (no call is made).
struct DrainGuard(Option<Rc<Calls>>);

impl DrainGuard {
    fn run(mut self) {
        if let Some(calls) = self.0.take() {
            calls.drain();
        }
    }
}

impl Drop for DrainGuard {
    fn drop(&mut self) {
        if let Some(calls) = self.0.take() {
            calls.shutdown();
        }
    }
}
