//! The chunks of one send, the first kept inline.
//!
//! Most sends carry one chunk. In a `Vec` that chunk would live in a
//! heap buffer of its own, one more cold cache line per send at a
//! thousand connections (the hottest store of `take_batch` in a profile);
//! here it lives in the send batch itself, and only further chunks spill
//! into the vector.

use std::ops::Index;

use super::chunk::Chunk;

/// An ordered list of chunks whose first element is stored inline.
///
/// Invariant: `rest` is empty unless `first` is `Some`.
#[derive(Default)]
pub(crate) struct ChunkList {
    first: Option<Chunk>,
    rest: Vec<Chunk>,
}

impl ChunkList {
    /// Number of chunks.
    pub(crate) fn len(&self) -> usize {
        usize::from(self.first.is_some()) + self.rest.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.first.is_none()
    }

    /// Appends `c`.
    pub(crate) fn push(&mut self, c: Chunk) {
        if self.first.is_none() {
            self.first = Some(c);
        } else {
            self.rest.push(c);
        }
    }

    /// The only chunk, if there is exactly one.
    pub(crate) fn single(&self) -> Option<&Chunk> {
        match (&self.first, self.rest.is_empty()) {
            (Some(c), true) => Some(c),
            _ => None,
        }
    }

    /// Removes and returns the only chunk, if there is exactly one.
    pub(crate) fn take_single(&mut self) -> Option<Chunk> {
        if self.rest.is_empty() {
            self.first.take()
        } else {
            None
        }
    }

    /// The chunks in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Chunk> {
        self.into_iter()
    }

    /// Removes every chunk, last first (the order in which unsent ones
    /// go back to the front of a queue). The vector's allocation is kept.
    pub(crate) fn drain_rev(&mut self) -> impl Iterator<Item = Chunk> + '_ {
        self.rest.drain(..).rev().chain(self.first.take())
    }
}

impl Index<usize> for ChunkList {
    type Output = Chunk;

    fn index(&self, i: usize) -> &Chunk {
        match (i, &self.first) {
            (0, Some(c)) => c,
            _ => &self.rest[i - 1],
        }
    }
}

impl<'a> IntoIterator for &'a ChunkList {
    type Item = &'a Chunk;
    type IntoIter = std::iter::Chain<std::option::Iter<'a, Chunk>, std::slice::Iter<'a, Chunk>>;

    fn into_iter(self) -> Self::IntoIter {
        self.first.iter().chain(self.rest.iter())
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn chunk(s: &'static [u8]) -> Chunk {
        Chunk::from(Bytes::from_static(s))
    }

    #[test]
    fn keeps_order_through_push_index_iter_and_drain() {
        let mut l = ChunkList::default();
        assert!(l.is_empty() && l.single().is_none());
        l.push(chunk(b"a"));
        assert_eq!(l.single().map(|c| &c[..]), Some(&b"a"[..]));
        l.push(chunk(b"b"));
        l.push(chunk(b"c"));
        assert_eq!(l.len(), 3);
        assert!(l.single().is_none());
        assert_eq!(&l[0][..], b"a");
        assert_eq!(&l[2][..], b"c");
        let forward: Vec<&[u8]> = l.iter().map(|c| &c[..]).collect();
        assert_eq!(forward, [b"a", b"b", b"c"]);
        let backward: Vec<Vec<u8>> = l.drain_rev().map(|c| c.to_vec()).collect();
        assert_eq!(backward, [b"c".to_vec(), b"b".to_vec(), b"a".to_vec()]);
        assert!(l.is_empty());
        l.push(chunk(b"again"));
        assert_eq!(l.len(), 1);
    }

    #[test]
    fn the_first_chunk_is_stored_inline() {
        // What a one-chunk send touches: the list itself, no heap buffer.
        let mut l = ChunkList::default();
        l.push(chunk(b"x"));
        assert_eq!(l.rest.capacity(), 0);
        assert!(std::mem::size_of::<ChunkList>() <= 64);
    }
}
