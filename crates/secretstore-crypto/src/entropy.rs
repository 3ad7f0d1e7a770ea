//! Where keys, nonces and ids get their random bytes: the operating system's (`getrandom`),
//! drawn in blocks of `POOL_LEN` bytes per thread and handed out in order, each byte once. A
//! write asks for randomness four times (the secret's id, its data key and two nonces): as
//! one system call each, they cost sets and creates 2-5% of their req/s (`scripts/profile`).
//! Buffering changes where the bytes wait, not where they come from: no generator in user
//! space stretches them, so they are exactly as unpredictable as the kernel's.
//!
//! What the pool holds is key material: it is wiped where it is handed out, and the rest when
//! its thread ends. A process that forked without exec would hand the same bytes out twice
//! (in the parent and in the child), which for a nonce is a catastrophe; secretstore never does
//! (a child process, if any, is `std::process::Command`'s, which execs at once), and nothing
//! here may change that.

use std::cell::RefCell;

use zeroize::{Zeroize as _, Zeroizing};

use crate::CryptoError;

/// Bytes drawn from the OS at a time: about thirty writes' worth.
const POOL_LEN: usize = 4096;

/// A request this long or longer goes to the OS directly rather than draining the pool.
const DIRECT_LEN: usize = POOL_LEN / 8;

struct Pool {
    bytes: Zeroizing<Vec<u8>>,
    /// Bytes from here on have not been handed out (all of them are, when it is `POOL_LEN`:
    /// a new pool draws on its first use).
    next: usize,
}

thread_local! {
    static POOL: RefCell<Pool> = RefCell::new(Pool {
        bytes: Zeroizing::new(vec![0; POOL_LEN]),
        next: POOL_LEN,
    });
}

/// Fills `out` with random bytes from the operating system's source; `Random` if it fails.
pub fn fill(out: &mut [u8]) -> Result<(), CryptoError> {
    let direct = |out: &mut [u8]| getrandom::getrandom(out).map_err(|_| CryptoError::Random);
    if out.len() >= DIRECT_LEN {
        return direct(out);
    }
    // A thread whose pool is already gone (a destructor that runs at thread exit) goes direct.
    POOL.try_with(|pool| {
        let mut pool = pool.borrow_mut();
        if POOL_LEN - pool.next < out.len() {
            direct(pool.bytes.as_mut_slice())?;
            pool.next = 0;
        }
        let start = pool.next;
        let taken = &mut pool.bytes[start..start + out.len()];
        out.copy_from_slice(taken);
        taken.zeroize();
        pool.next += out.len();
        Ok(())
    })
    .unwrap_or_else(|_| direct(out))
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn no_bytes_are_handed_out_twice_across_refills() {
        // 16-byte draws over several pools: a repeat would be a reused block (2^-128 otherwise).
        let mut seen = HashSet::new();
        for _ in 0..(3 * POOL_LEN / 16 + 5) {
            let mut block = [0u8; 16];
            fill(&mut block).unwrap();
            assert!(seen.insert(block), "a block of random bytes came out twice");
        }
    }

    #[test]
    fn what_was_handed_out_is_wiped_from_the_pool() {
        let mut taken = [0u8; 32];
        fill(&mut taken).unwrap();
        POOL.with(|pool| {
            let pool = pool.borrow();
            let start = pool.next - taken.len();
            assert!(pool.bytes[..pool.next].iter().all(|&b| b == 0));
            assert!(
                pool.bytes[start..].iter().any(|&b| b != 0),
                "the rest is still there"
            );
        });
    }

    #[test]
    fn long_and_odd_requests_are_filled_whole() {
        for len in [
            0,
            1,
            7,
            DIRECT_LEN - 1,
            DIRECT_LEN,
            POOL_LEN,
            3 * POOL_LEN + 1,
        ] {
            let mut out = vec![0u8; len];
            fill(&mut out).unwrap();
            // 64 zero bytes in a row from a random source would be a bug, not luck.
            assert!(out
                .chunks(64)
                .all(|c| c.len() < 64 || c.iter().any(|&b| b != 0)));
        }
    }
}
