//! The idempotency index: the id key of every event the lake holds, mapped to its seq, so a retried
//! append is answered with the first receipt instead of a second copy.
//!
//! It lives on the writer thread, which every durable append waits on, so it must never stall: one
//! `HashMap` would rehash all of its entries at once each time it doubles (tens of milliseconds at a
//! few million events). The index is split into [`SHARDS`] maps by the key's low bits, so a growth
//! step rehashes one shard, 1/64 of the entries.

use std::collections::HashMap;

/// How many maps the index is split into.
const SHARDS: usize = 64;

/// Event id keys (see `lake::id_key`, uniformly distributed) to seqs.
pub(crate) struct IdIndex {
    shards: Vec<HashMap<u128, u64>>,
}

impl Default for IdIndex {
    fn default() -> Self {
        IdIndex {
            shards: (0..SHARDS).map(|_| HashMap::new()).collect(),
        }
    }
}

impl IdIndex {
    fn shard(key: u128) -> usize {
        // The key is a prefix of a SHA-256 digest: its low bits are as good as any.
        (key as usize) % SHARDS
    }

    /// The seq of the event with id key `key`, if the lake holds one.
    pub(crate) fn get(&self, key: &u128) -> Option<&u64> {
        self.shards[Self::shard(*key)].get(key)
    }

    /// Records that the event with id key `key` has seq `seq`.
    pub(crate) fn insert(&mut self, key: u128, seq: u64) {
        self.shards[Self::shard(key)].insert(key, seq);
    }

    /// How many ids the index holds.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(HashMap::len).sum()
    }
}

impl Extend<(u128, u64)> for IdIndex {
    fn extend<I: IntoIterator<Item = (u128, u64)>>(&mut self, iter: I) {
        for (key, seq) in iter {
            self.insert(key, seq);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_what_was_inserted_across_shards() {
        let mut ids = IdIndex::default();
        ids.extend((0..10_000u64).map(|i| ((u128::from(i) << 64) | u128::from(i * 7919), i)));
        assert_eq!(ids.len(), 10_000);
        for i in 0..10_000u64 {
            assert_eq!(ids.get(&((u128::from(i) << 64) | u128::from(i * 7919))), Some(&i));
        }
        assert_eq!(ids.get(&u128::MAX), None);
        assert!(ids.shards.iter().filter(|s| !s.is_empty()).count() > SHARDS / 2);
    }
}
