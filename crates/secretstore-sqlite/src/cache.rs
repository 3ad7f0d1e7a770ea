//! A read cache of sealed secrets, so that a find of a hot secret is answered without handing the
//! request to a reader thread and back (that hand-off, two context switches, was a quarter of a
//! find's CPU in profiles). It holds only what storage holds: metadata and ciphertext, never a
//! plaintext payload.
//!
//! Correctness rests on two rules. The writer thread removes a key after COMMIT and before it
//! answers, so once a write is acknowledged no read can see what it replaced. And a read fills
//! the cache only if no write touched the key's shard since the read began (a per-shard
//! generation number), so a read that raced a write cannot leave the old value behind. The data
//! directory lock means this process is the only writer, so nothing changes the database behind
//! the cache's back except someone editing the file by hand while the server runs.

use std::collections::HashMap;
use std::hash::BuildHasher;

use parking_lot::Mutex;
use secretstore_core::{is_live, SealedSecret, SecretAddress};

const SHARDS: usize = 16;

#[derive(Debug, Default)]
struct Shard {
    entries: HashMap<SecretAddress, SealedSecret>,
    /// Bumped by every write to a key of this shard.
    generation: u64,
}

/// Sealed secrets by key, in shards so concurrent finds rarely meet on one lock.
#[derive(Debug)]
pub struct SecretCache {
    shards: Vec<Mutex<Shard>>,
    per_shard: usize,
    hasher: std::collections::hash_map::RandomState,
}

/// Where a read stood when it began; it may fill the cache only if nothing wrote since.
#[derive(Debug, Clone, Copy)]
pub struct Ticket {
    shard: usize,
    generation: u64,
}

impl SecretCache {
    /// Holds at most `capacity` secrets (0 turns the cache off).
    pub fn new(capacity: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            per_shard: capacity.div_ceil(SHARDS),
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }

    fn shard_of(&self, key: &SecretAddress) -> usize {
        (self.hasher.hash_one(key) as usize) % SHARDS
    }

    /// The live secret with this key if cached; otherwise a ticket for filling it after a read.
    pub fn get(&self, key: &SecretAddress, now: i64) -> Result<Option<SealedSecret>, Ticket> {
        let shard = self.shard_of(key);
        let mut guard = self.shards[shard].lock();
        match guard.entries.get(key) {
            Some(secret) if is_live(secret.expires_at, now) => Ok(Some(secret.clone())),
            // Expired: invisible, and its row goes at the next sweep. Read through, so a
            // secret set again under this key after expiry is found.
            Some(_) => {
                guard.entries.remove(key);
                Err(Ticket {
                    shard,
                    generation: guard.generation,
                })
            }
            None => Err(Ticket {
                shard,
                generation: guard.generation,
            }),
        }
    }

    /// Keeps what a read found, unless a write to the shard came in between.
    pub fn fill(&self, ticket: Ticket, secret: &SealedSecret) {
        if self.per_shard == 0 {
            return;
        }
        let mut guard = self.shards[ticket.shard].lock();
        if guard.generation != ticket.generation {
            return;
        }
        if guard.entries.len() >= self.per_shard && !guard.entries.contains_key(&secret.address) {
            // Full: make room by dropping an arbitrary entry (hash order, so effectively random).
            if let Some(victim) = guard.entries.keys().next().cloned() {
                guard.entries.remove(&victim);
            }
        }
        guard.entries.insert(secret.address.clone(), secret.clone());
    }

    /// A write to `key` is committed (or failed): forget it, and refuse fills that began before.
    pub fn invalidate(&self, key: &SecretAddress) {
        let mut guard = self.shards[self.shard_of(key)].lock();
        guard.generation = guard.generation.wrapping_add(1);
        guard.entries.remove(key);
    }

    /// Secrets were deleted wholesale (a tenant's removal): forget everything.
    pub fn clear(&self) {
        for shard in &self.shards {
            let mut guard = shard.lock();
            guard.generation = guard.generation.wrapping_add(1);
            guard.entries.clear();
        }
    }

    /// Expired secrets were deleted from storage: drop them here too.
    pub fn purge(&self, now: i64) {
        for shard in &self.shards {
            let mut guard = shard.lock();
            guard.generation = guard.generation.wrapping_add(1);
            guard
                .entries
                .retain(|_, secret| is_live(secret.expires_at, now));
        }
    }

    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().entries.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secretstore_core::{AccountId, AppId, Mode, Namespace, Scope, SecretId, SecretName};

    fn secret(name: &str, expires_at: Option<i64>) -> SealedSecret {
        SealedSecret {
            id: SecretId::generate(),
            address: SecretAddress {
                namespace: Namespace {
                    app: AppId::parse("app").unwrap(),
                    account: AccountId::parse("acct_1").unwrap(),
                    mode: Mode::Test,
                },
                scope: Scope::Account,
                name: SecretName::parse(name).unwrap(),
            },
            created: 1,
            expires_at,
            sealed: vec![1, 2, 3],
        }
    }

    #[test]
    fn a_fill_that_raced_a_write_is_dropped() {
        let cache = SecretCache::new(100);
        let old = secret("k", None);
        let ticket = cache.get(&old.address, 10).unwrap_err();
        cache.invalidate(&old.address); // a write committed while the read ran
        cache.fill(ticket, &old);
        assert!(
            cache.get(&old.address, 10).is_err(),
            "the stale value must not be cached"
        );
        let ticket = cache.get(&old.address, 10).unwrap_err();
        cache.fill(ticket, &old);
        assert_eq!(cache.get(&old.address, 10).unwrap(), Some(old));
    }

    #[test]
    fn expired_entries_are_never_answered() {
        let cache = SecretCache::new(100);
        let s = secret("k", Some(20));
        let ticket = cache.get(&s.address, 10).unwrap_err();
        cache.fill(ticket, &s);
        assert!(cache.get(&s.address, 19).unwrap().is_some());
        assert!(cache.get(&s.address, 20).is_err());
        cache.purge(20);
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn capacity_is_bounded() {
        let cache = SecretCache::new(32);
        for i in 0..1000 {
            let s = secret(&format!("k{i}"), None);
            let ticket = cache.get(&s.address, 0).unwrap_err();
            cache.fill(ticket, &s);
        }
        assert!(cache.len() <= 32, "{}", cache.len());
        let off = SecretCache::new(0);
        let s = secret("k", None);
        off.fill(off.get(&s.address, 0).unwrap_err(), &s);
        assert_eq!(off.len(), 0);
    }
}
