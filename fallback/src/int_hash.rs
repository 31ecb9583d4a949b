//! A hasher for the engine's integer keys (descriptor numbers and
//! operation keys).
//!
//! The standard library's SipHash resists keys chosen to collide, which
//! these are not (the kernel and the driver pick them), and cost about
//! 3% of an epoll echo server's time in hashing alone. One multiply by
//! an odd constant spreads sequential integers over all buckets (the low
//! bits of the product are a bijection of the key's low bits) and mixes
//! the high bits the table's control bytes use.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// 2^64 divided by the golden ratio, odd.
const K: u64 = 0x9e37_79b9_7f4a_7c15;

/// See the module docs.
#[derive(Default, Clone, Copy)]
pub(crate) struct IntHasher(u64);

impl Hasher for IntHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(K);
    }

    fn write_i32(&mut self, n: i32) {
        self.write_u64(u64::from(n as u32));
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
}

/// A map keyed by integers, hashed with [`IntHasher`].
pub(crate) type IntMap<K, V> = HashMap<K, V, BuildHasherDefault<IntHasher>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequential_keys_fill_distinct_buckets() {
        let mut seen = std::collections::HashSet::new();
        for fd in 0..1024i32 {
            let mut h = IntHasher::default();
            h.write_i32(fd);
            assert!(seen.insert(h.finish() & 1023), "collision at {fd}");
        }
    }

    #[test]
    fn a_map_works_as_a_map() {
        let mut m: IntMap<i32, u32> = IntMap::default();
        for fd in -5..5000 {
            m.insert(fd, fd as u32);
        }
        assert_eq!(m.len(), 5005);
        assert_eq!(m.get(&4999), Some(&4999));
        assert_eq!(m.remove(&-5), Some(u32::MAX - 4));
    }
}
