//! A transport made for a caller who may never take it.
//!
//! `create_connection` and its kin make the transport, then wait for
//! `connection_made` to have run before they hand it over. If the
//! caller's future is dropped at that wait (its task cancelled, a
//! timeout, the losing branch of a select), nobody will ever hold the
//! transport, yet its pump keeps it, and its socket or pipe, alive.
//! asyncio closes it (`except: transport.close(); raise`); so does the
//! drop of an [`Unclaimed`] that was not [`claim`](Unclaimed::claim)ed.

/// Closes its transport on drop unless claimed.
pub(crate) struct Unclaimed<T> {
    transport: Option<T>,
    close: fn(&T),
}

impl<T> Unclaimed<T> {
    /// Guards `transport`; `close` is what dropping the guard calls.
    pub(crate) fn new(transport: T, close: fn(&T)) -> Self {
        Unclaimed {
            transport: Some(transport),
            close,
        }
    }

    /// The transport, handed over: the guard no longer closes it.
    pub(crate) fn claim(mut self) -> T {
        match self.transport.take() {
            Some(t) => t,
            // `transport` is `Some` until claimed or dropped, and this
            // consumes the guard.
            None => unreachable!("an Unclaimed is claimed once"),
        }
    }
}

impl<T> Drop for Unclaimed<T> {
    fn drop(&mut self) {
        if let Some(t) = self.transport.take() {
            (self.close)(&t);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Unclaimed;
    use std::cell::Cell;

    thread_local!(static CLOSED: Cell<u32> = const { Cell::new(0) });

    fn count(_: &u8) {
        CLOSED.with(|c| c.set(c.get() + 1));
    }

    #[test]
    fn dropped_closes_claimed_does_not() {
        drop(Unclaimed::new(1u8, count));
        assert_eq!(CLOSED.with(Cell::get), 1);
        assert_eq!(Unclaimed::new(2u8, count).claim(), 2);
        assert_eq!(CLOSED.with(Cell::get), 1);
    }
}
