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

/// What one entry costs beyond its variable parts: the `SealedSecret` itself, the map's slot
/// (key, control byte, load factor) and the allocator's headers of its strings. An estimate
/// that errs high: the bound is on memory, so it must not be beaten by many small entries.
const ENTRY_OVERHEAD: usize = std::mem::size_of::<SealedSecret>() + 96;

/// What an entry costs, in bytes: its ciphertext, the strings of its address and the overhead.
/// The address is stored once, inside the secret (the map's key is the address's hash).
pub fn entry_bytes(secret: &SealedSecret) -> usize {
    let address = &secret.address;
    ENTRY_OVERHEAD
        + secret.sealed.capacity()
        + address.namespace.app.as_str().len()
        + address.namespace.account.as_str().len()
        + address.scope.user().map_or(0, |u| u.as_str().len())
        + address.name.as_str().len()
        + secret.id.as_str().len()
}

/// What a cached entry costs, in bytes, against its cache's budget.
pub(crate) trait Weighed {
    fn weight(&self) -> usize;
}

impl Weighed for SealedSecret {
    fn weight(&self) -> usize {
        entry_bytes(self)
    }
}

/// One shard of a cache: entries by hash, what they cost, and a generation number bumped by
/// every write to a key of the shard.
#[derive(Debug)]
pub(crate) struct Shard<E> {
    pub entries: HashMap<u64, E>,
    pub bytes: usize,
    pub generation: u64,
}

impl<E> Default for Shard<E> {
    fn default() -> Self {
        Self {
            entries: HashMap::new(),
            bytes: 0,
            generation: 0,
        }
    }
}

impl<E: Weighed> Shard<E> {
    pub fn remove(&mut self, hash: u64) -> Option<E> {
        let gone = self.entries.remove(&hash);
        if let Some(gone) = &gone {
            self.bytes -= gone.weight();
        }
        gone
    }

    /// Keeps `entry` under `hash` if it fits in `budget`, making room by dropping other
    /// entries (in hash order, so effectively at random).
    fn keep(&mut self, hash: u64, entry: E, budget: usize) {
        let cost = entry.weight();
        if cost > budget {
            return;
        }
        self.remove(hash);
        while self.bytes + cost > budget {
            let Some(victim) = self.entries.keys().next().copied() else {
                break;
            };
            self.remove(victim);
        }
        self.bytes += cost;
        self.entries.insert(hash, entry);
    }
}

/// The entries of a cache in shards, so concurrent reads rarely meet on one lock, holding at
/// most a budget of bytes; what the entries are and how they are keyed is the cache's own.
#[derive(Debug)]
pub(crate) struct Shards<E> {
    shards: Vec<Mutex<Shard<E>>>,
    /// Bytes each shard may hold.
    per_shard: usize,
    hasher: std::collections::hash_map::RandomState,
}

/// Where a read stood when it began; it may fill the cache only if nothing wrote since.
#[derive(Debug, Clone, Copy)]
pub struct Ticket {
    pub(crate) shard: usize,
    pub(crate) hash: u64,
    pub(crate) generation: u64,
}

impl<E: Weighed> Shards<E> {
    /// Holds at most `budget` bytes of entries; 0 keeps nothing.
    pub fn new(budget: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            per_shard: budget / SHARDS,
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }

    /// The shard and the hash of `key`.
    pub fn locate(&self, key: impl std::hash::Hash) -> (usize, u64) {
        let hash = self.hasher.hash_one(key);
        ((hash as usize) % SHARDS, hash)
    }

    pub fn lock(&self, shard: usize) -> parking_lot::MutexGuard<'_, Shard<E>> {
        self.shards[shard].lock()
    }

    /// Locks the ticket's shard and hands it to `change`, which gives the entry to keep (if
    /// any); kept if nothing wrote to the shard since the ticket and it fits.
    pub fn fill(&self, ticket: Ticket, change: impl FnOnce(&mut Shard<E>) -> Option<E>) {
        let mut guard = self.lock(ticket.shard);
        if guard.generation != ticket.generation {
            return;
        }
        if let Some(entry) = change(&mut guard) {
            guard.keep(ticket.hash, entry, self.per_shard);
        }
    }

    /// A write to the key at (`shard`, `hash`) is committed (or failed): forget it, and refuse
    /// fills that began before.
    pub fn invalidate(&self, (shard, hash): (usize, u64)) {
        let mut guard = self.lock(shard);
        guard.generation = guard.generation.wrapping_add(1);
        guard.remove(hash);
    }

    /// Forgets everything, and refuses fills that began before.
    pub fn clear(&self) {
        for shard in &self.shards {
            let mut guard = shard.lock();
            guard.generation = guard.generation.wrapping_add(1);
            guard.entries.clear();
            guard.bytes = 0;
        }
    }

    /// Hands every entry to `prune`, which may shrink it and says whether it is of no use any
    /// more (then it goes), and refuses fills that began before.
    pub fn prune(&self, mut prune: impl FnMut(&mut E) -> bool) {
        for shard in &self.shards {
            let mut guard = shard.lock();
            guard.generation = guard.generation.wrapping_add(1);
            let (mut freed, mut gone) = (0, Vec::new());
            for (hash, entry) in guard.entries.iter_mut() {
                let before = entry.weight();
                if prune(entry) {
                    gone.push(*hash);
                }
                freed += before - entry.weight();
            }
            guard.bytes -= freed;
            for hash in gone {
                guard.remove(hash);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().entries.len()).sum()
    }

    /// What the entries cost now, in bytes.
    pub fn bytes(&self) -> usize {
        self.shards.iter().map(|s| s.lock().bytes).sum()
    }
}

/// Sealed secrets by address, holding at most a budget of bytes. The secret holds its address
/// itself, compared on every hit, so two addresses with one hash only take turns in the slot.
#[derive(Debug)]
pub struct SecretCache {
    shards: Shards<SealedSecret>,
}

impl SecretCache {
    /// Holds at most `budget` bytes of entries (`entry_bytes`); 0 turns the cache off.
    pub fn new(budget: usize) -> Self {
        Self {
            shards: Shards::new(budget),
        }
    }

    /// The live secret with this key if cached; otherwise a ticket for filling it after a read.
    pub fn get(&self, key: &SecretAddress, now: i64) -> Result<Option<SealedSecret>, Ticket> {
        let (shard, hash) = self.shards.locate(key);
        let mut guard = self.shards.lock(shard);
        let ticket = |generation| Ticket {
            shard,
            hash,
            generation,
        };
        match guard.entries.get(&hash) {
            Some(secret) if secret.address == *key && is_live(secret.expires_at, now) => {
                Ok(Some(secret.clone()))
            }
            // Expired: invisible, and its row goes at the next sweep. Read through, so a
            // secret set again under this key after expiry is found.
            Some(secret) if secret.address == *key => {
                guard.remove(hash);
                Err(ticket(guard.generation))
            }
            // Another address with the same hash, or nothing.
            _ => Err(ticket(guard.generation)),
        }
    }

    /// Keeps what a read found, unless a write to the shard came in between; makes room by
    /// dropping other entries. An entry larger than a shard's whole budget is not kept.
    pub fn fill(&self, ticket: Ticket, secret: &SealedSecret) {
        self.shards.fill(ticket, |_| Some(secret.clone()));
    }

    /// A write to `key` is committed (or failed): forget it, and refuse fills that began before.
    pub fn invalidate(&self, key: &SecretAddress) {
        self.shards.invalidate(self.shards.locate(key));
    }

    /// Secrets were deleted wholesale (a tenant's removal): forget everything.
    pub fn clear(&self) {
        self.shards.clear();
    }

    /// Expired secrets were deleted from storage: drop them here too. Fills that began before
    /// are refused: what they read may be one of them.
    pub fn purge(&self, now: i64) {
        self.shards.prune(|secret| !is_live(secret.expires_at, now));
    }

    pub fn len(&self) -> usize {
        self.shards.len()
    }

    /// What the entries cost now, in bytes (`entry_bytes`).
    pub fn bytes(&self) -> usize {
        self.shards.bytes()
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
        let cache = SecretCache::new(1 << 20);
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
        let cache = SecretCache::new(1 << 20);
        let s = secret("k", Some(20));
        let ticket = cache.get(&s.address, 10).unwrap_err();
        cache.fill(ticket, &s);
        assert!(cache.get(&s.address, 19).unwrap().is_some());
        assert!(cache.get(&s.address, 20).is_err());
        cache.purge(20);
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn the_cache_holds_at_most_its_budget_of_bytes() {
        let budget = 64 * 1024;
        let cache = SecretCache::new(budget);
        for i in 0..1000 {
            let mut s = secret(&format!("k{i}"), None);
            // Payloads of every size, the largest a find can meet (5,000 4-byte characters).
            s.sealed = vec![7; (i * 37) % 20_100];
            let ticket = cache.get(&s.address, 0).unwrap_err();
            cache.fill(ticket, &s);
            assert!(cache.bytes() <= budget, "{} bytes", cache.bytes());
        }
        assert!(cache.len() > 0);
        let off = SecretCache::new(0);
        let s = secret("k", None);
        off.fill(off.get(&s.address, 0).unwrap_err(), &s);
        assert_eq!((off.len(), off.bytes()), (0, 0));
    }

    #[test]
    fn a_refill_replaces_and_removals_give_the_bytes_back() {
        let cache = SecretCache::new(1 << 20);
        let s = secret("k", None);
        // Two reads that missed at once both fill: one entry, counted once.
        let (first, second) = (
            cache.get(&s.address, 0).unwrap_err(),
            cache.get(&s.address, 0).unwrap_err(),
        );
        cache.fill(first, &s);
        cache.fill(second, &s);
        assert_eq!((cache.len(), cache.bytes()), (1, entry_bytes(&s)));
        cache.invalidate(&s.address);
        assert_eq!((cache.len(), cache.bytes()), (0, 0));
    }
}
