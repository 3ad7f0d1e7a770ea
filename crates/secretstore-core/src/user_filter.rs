//! Which users may have a key of their own: a Bloom filter over every user key this server has
//! read, stored, or found in storage when it started (`KeyManager::learn_users`). A user it
//! has never seen certainly has no key, so the first write of a user's first secret makes one
//! without asking storage first. That read was a round trip to a reader thread on every such
//! create: 10-11 us of the readers' CPU, and with the hand-offs about a fifth of the server's
//! CPU per create (`scripts/profile create`).
//!
//! Its one possible mistake is harmless: it may say "perhaps" of a user without a key (and the
//! key is read, as without it), never "no" of a user whose key this server could know of. A
//! key stored by another server sharing the database since this one started is the exception
//! no filter can know; the write then fails on the key that exists (`AlreadyExists`), and
//! seals again under it after `KeyManager::lost` has noted the user here. Until the users are
//! learnt, and if learning them fails, it says "perhaps" of everyone.
//!
//! Sized for about a million users (2^23 bits, 7 probes: one chance in fifty of a needless
//! read at a million, one in 40,000 at three hundred thousand); past that the needless reads
//! grow, never a wrong answer. A user's key destroyed by a removal stays "perhaps":
//! the next write reads, finds none, and makes one.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::ids::{AccountId, UserId};

/// Bits of the filter, a power of two (1 MiB).
const BITS: u64 = 1 << 23;

/// Bits set and tested per user.
const PROBES: u64 = 7;

/// See the module's documentation.
#[derive(Debug)]
pub struct UserFilter {
    /// Atomic words rather than a lock: it is asked on every write to a user's scope.
    bits: Box<[AtomicU64]>,
    /// Keyed per process, so that nobody can choose user ids that fill the filter for others.
    hasher: RandomState,
    /// Whether every user with a key in storage has been added (`learnt`).
    complete: AtomicBool,
}

impl Default for UserFilter {
    fn default() -> Self {
        Self {
            bits: (0..BITS / 64).map(|_| AtomicU64::new(0)).collect(),
            hasher: RandomState::new(),
            complete: AtomicBool::new(false),
        }
    }
}

impl UserFilter {
    /// Notes that `user` of `account` has a key.
    pub fn insert(&self, account: &AccountId, user: &UserId) {
        for bit in self.probes(account, user) {
            self.bits[(bit / 64) as usize].fetch_or(1 << (bit % 64), Ordering::Release);
        }
    }

    /// Whether `user` of `account` may have a key: `false` only once every stored user has been
    /// learnt, and only for a user never noted.
    pub fn may_have(&self, account: &AccountId, user: &UserId) -> bool {
        if !self.complete.load(Ordering::Acquire) {
            return true;
        }
        self.probes(account, user).into_iter().all(|bit| {
            self.bits[(bit / 64) as usize].load(Ordering::Acquire) & (1 << (bit % 64)) != 0
        })
    }

    /// Every user with a key in storage has been inserted (the ones stored since the reading
    /// began were inserted as they were stored): from now on the filter answers "no".
    pub fn learnt(&self) {
        self.complete.store(true, Ordering::Release);
    }

    /// The bits of one user: double hashing of one 64-bit hash (Kirsch and Mitzenmacher),
    /// which is as good as independent hashes for a Bloom filter.
    fn probes(&self, account: &AccountId, user: &UserId) -> [u64; PROBES as usize] {
        let hash = self.hasher.hash_one((account.as_str(), user.as_str()));
        let (first, step) = (hash & 0xffff_ffff, (hash >> 32) | 1);
        std::array::from_fn(|i| first.wrapping_add(step.wrapping_mul(i as u64)) & (BITS - 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> (AccountId, UserId) {
        (
            AccountId::parse(&format!("acct_{:016}", n / 100)).expect("account"),
            UserId::parse(&format!("usr_{n}")).expect("user"),
        )
    }

    #[test]
    fn it_says_perhaps_of_everyone_until_the_users_are_learnt() {
        let filter = UserFilter::default();
        let (account, user) = ids(1);
        assert!(filter.may_have(&account, &user));
        filter.learnt();
        assert!(!filter.may_have(&account, &user));
    }

    #[test]
    fn no_user_noted_is_ever_denied_and_few_others_pass() {
        let filter = UserFilter::default();
        for n in 0..100_000 {
            let (account, user) = ids(n);
            filter.insert(&account, &user);
        }
        filter.learnt();
        for n in 0..100_000 {
            let (account, user) = ids(n);
            assert!(filter.may_have(&account, &user), "user {n} was noted");
        }
        let passed = (100_000..200_000)
            .filter(|&n| {
                let (account, user) = ids(n);
                filter.may_have(&account, &user)
            })
            .count();
        // At 100,000 users the expected rate is about 2 in 10^8; 10 in 100,000 would be a
        // broken hash or probe sequence.
        assert!(passed < 10, "{passed} of 100,000 unknown users passed");
    }
}
