//! Keyed digests of credentials, for what is stored about a credential without being its
//! look-up, and of anything else stored that holds a secret (the fingerprint of a request that
//! carries a payload): an HMAC-SHA256 under a key derived from the root key. Whoever reads the
//! database (a backup, a copied file) cannot test a guessed API key or payload against such a
//! digest without the root key, which a plain SHA-256 would let them do. Look-ups of credentials (the tenant
//! directory's hashes) stay plain SHA-256: a request must find its credential before anything
//! else, and those hashes are what the directory is indexed by.

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::root_key::RootKey;
use crate::secret_key::SecretKey;

/// The key of keyed digests; its bytes are wiped on drop and never shown.
#[derive(Clone)]
pub struct DigestKey(Zeroizing<[u8; 32]>);

impl fmt::Debug for DigestKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DigestKey([REDACTED])")
    }
}

impl DigestKey {
    /// The HKDF label this key was derived from the root key with, before keys were stored
    /// wrapped: a provider's `legacy_subkey(DigestKey::LEGACY_INFO)` gives an existing
    /// directory's key once, so its stored digests and audit chain still verify. No other key
    /// is derived with it.
    pub const LEGACY_INFO: &'static [u8] = b"secretstore credential digest key v1";

    pub fn new(root: &RootKey) -> Self {
        Self(root.derive(Self::LEGACY_INFO))
    }

    /// The digest key kept as a stored (wrapped) key rather than derived from the root key,
    /// which a root key held in an HSM cannot be derived from.
    pub fn from_secret_key(key: &SecretKey) -> Self {
        Self::from_bytes(*key.bytes())
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// HMAC-SHA256 of `parts` for the purpose `domain`. Every part is length-prefixed, so no
    /// two different lists of parts (or domains) give the same message.
    pub fn digest(&self, domain: &str, parts: &[&[u8]]) -> [u8; 32] {
        finish(self.mac(), domain, parts)
    }

    /// The same digests from a MAC keyed once, for a caller that makes many (the audit chain,
    /// one per request): keying hashes two blocks each time. The keyed state is as secret as
    /// the key and lives as long as its holder.
    pub fn keyed(&self) -> KeyedDigest {
        KeyedDigest(self.mac())
    }

    fn mac(&self) -> Hmac<Sha256> {
        <Hmac<Sha256> as Mac>::new_from_slice(self.0.as_ref())
            .expect("HMAC takes keys of any length")
    }
}

fn finish(mut mac: Hmac<Sha256>, domain: &str, parts: &[&[u8]]) -> [u8; 32] {
    for part in std::iter::once(domain.as_bytes()).chain(parts.iter().copied()) {
        mac.update(&(part.len() as u64).to_be_bytes());
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// `DigestKey::keyed`: gives exactly `DigestKey::digest`'s digests.
#[derive(Clone)]
pub struct KeyedDigest(Hmac<Sha256>);

impl fmt::Debug for KeyedDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyedDigest([REDACTED])")
    }
}

impl KeyedDigest {
    pub fn digest(&self, domain: &str, parts: &[&[u8]]) -> [u8; 32] {
        finish(self.0.clone(), domain, parts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest as _;

    #[test]
    fn digests_depend_on_the_root_key_the_domain_and_every_part() {
        let root = RootKey::generate().unwrap();
        let key = DigestKey::new(&root);
        let one = key.digest("d", &[b"sk_test_a", b"acct_1"]);
        assert_eq!(
            one,
            DigestKey::new(&root).digest("d", &[b"sk_test_a", b"acct_1"])
        );
        assert_ne!(one, key.digest("e", &[b"sk_test_a", b"acct_1"]));
        assert_ne!(one, key.digest("d", &[b"sk_test_a", b"acct_2"]));
        // Length prefixes: moving a byte from one part to the next changes the digest.
        assert_ne!(one, key.digest("d", &[b"sk_test_", b"aacct_1"]));
        let other_root = DigestKey::new(&RootKey::generate().unwrap());
        assert_ne!(one, other_root.digest("d", &[b"sk_test_a", b"acct_1"]));
        // Not the plain SHA-256 a reader of the database could recompute.
        let plain: [u8; 32] = sha2::Sha256::digest(b"sk_test_a").into();
        assert_ne!(key.digest("d", &[b"sk_test_a"]), plain);
    }

    #[test]
    fn a_key_keyed_once_gives_the_same_digests() {
        let key = DigestKey::new(&RootKey::generate().unwrap());
        let keyed = key.keyed();
        for parts in [
            &[][..],
            &[&b"a"[..]][..],
            &[&b"sk_test_a"[..], &b"acct_1"[..]][..],
        ] {
            assert_eq!(keyed.digest("d", parts), key.digest("d", parts));
            assert_eq!(keyed.digest("d", parts), keyed.digest("d", parts));
        }
        assert_eq!(format!("{keyed:?}"), "KeyedDigest([REDACTED])");
    }

    #[test]
    fn a_stored_key_gives_the_digests_of_the_key_it_was_made_from() {
        let root = RootKey::generate().unwrap();
        let derived = DigestKey::new(&root);
        let stored =
            DigestKey::from_secret_key(&SecretKey::from(root.derive(DigestKey::LEGACY_INFO)));
        assert_eq!(stored.digest("d", &[b"x"]), derived.digest("d", &[b"x"]));
        let raw = DigestKey::from_bytes([9u8; 32]);
        let same = DigestKey::from_secret_key(&SecretKey::from_bytes([9u8; 32]));
        assert_eq!(raw.digest("d", &[b"x"]), same.digest("d", &[b"x"]));
        assert_ne!(raw.digest("d", &[b"x"]), derived.digest("d", &[b"x"]));
    }

    #[test]
    fn debug_never_shows_the_key() {
        let key = DigestKey::new(&RootKey::from_bytes([7u8; 32]));
        assert_eq!(format!("{key:?}"), "DigestKey([REDACTED])");
    }
}
