//! What the key hierarchy asks of a root key, without ever asking for its bytes: wrap and unwrap
//! a namespace key, open a legacy (format 1) value, and, for a key that has bytes, hand out a
//! legacy subkey once. A root key kept in an HSM can do all of that inside the token; a local
//! one (a file or the environment, [`LocalRootKey`]) does it in memory. Each provider has a
//! public id, so a wrapped value can name the root key version that wrapped it.

use std::fmt;

use aes_gcm::{Aes256Gcm, KeyInit};
use zeroize::Zeroizing;

use crate::envelope::{self, Envelope};
use crate::root_key::{KeyId, RootKey, RootKeySource};
use crate::secret_key::{unwrap_key, wrap_key, SecretKey};
use crate::CryptoError;

/// One version of the root key, wherever it is kept.
pub trait RootKeyProvider: Send + Sync + fmt::Debug {
    /// A stable public fingerprint of this root key version, stored beside what it wrapped.
    fn id(&self) -> KeyId;

    /// Where the key is kept, for start-up logs and errors (never key material).
    fn describe(&self) -> String;

    /// Wraps `key` with AES-256-GCM under a fresh random 96-bit nonce, as
    /// `nonce(12) | ciphertext(32) | tag(16)`. `aad` names what the key is (its namespace and
    /// version, say), so the wrapped key cannot be moved to stand for another.
    fn wrap(&self, aad: &[u8], key: &SecretKey) -> Result<Vec<u8>, CryptoError>;

    /// Opens what [`RootKeyProvider::wrap`] made with the same `aad`: `Malformed` if it is not
    /// a wrapped key's length, `Tampered` if it does not authenticate.
    fn unwrap(&self, aad: &[u8], wrapped: &[u8]) -> Result<SecretKey, CryptoError>;

    /// Opens a value sealed in format 1 ([`Envelope`]) under this root key. Only a root key
    /// that existed before format 2 can have sealed one, so by default the value's root key
    /// is reported as unknown.
    fn open_v1(&self, aad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let _ = aad;
        Err(CryptoError::UnknownRootKey(envelope::root_key_id(sealed)?))
    }

    /// The key format 1 derived from the root key for the purpose `info` (HKDF, as
    /// `RootKey::derive`), so a directory that used one (the digest key) can store it wrapped
    /// and keep it. `None` from a root key whose bytes cannot be read, which never derived any.
    fn legacy_subkey(&self, info: &[u8]) -> Option<Zeroizing<[u8; 32]>> {
        let _ = info;
        None
    }
}

/// The HKDF label of a local root key's wrapping key: the root key itself is never a cipher
/// key, and this one is no other purpose's.
const WRAP_INFO: &[u8] = b"secretstore root wrap v2";

/// A root key held in memory, read from a file or the environment.
pub struct LocalRootKey {
    root: RootKey,
    source: String,
    v1: Envelope,
    wrap: Aes256Gcm,
}

impl fmt::Debug for LocalRootKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalRootKey")
            .field("id", &self.id())
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl LocalRootKey {
    pub fn new(root: RootKey) -> Self {
        Self::from_source(root, "a root key given directly".to_owned())
    }

    /// Loads the key from `source`, remembering where it came from for [`describe`].
    ///
    /// [`describe`]: RootKeyProvider::describe
    pub fn load(source: &(impl RootKeySource + ?Sized)) -> Result<Self, CryptoError> {
        Ok(Self::from_source(source.load()?, source.describe()))
    }

    fn from_source(root: RootKey, source: String) -> Self {
        let wrap = root.derive(WRAP_INFO);
        Self {
            v1: Envelope::new(&root),
            wrap: Aes256Gcm::new(wrap.as_ref().into()),
            root,
            source,
        }
    }
}

impl RootKeyProvider for LocalRootKey {
    fn id(&self) -> KeyId {
        self.v1.key_id()
    }

    fn describe(&self) -> String {
        self.source.clone()
    }

    fn wrap(&self, aad: &[u8], key: &SecretKey) -> Result<Vec<u8>, CryptoError> {
        wrap_key(&self.wrap, aad, key)
    }

    fn unwrap(&self, aad: &[u8], wrapped: &[u8]) -> Result<SecretKey, CryptoError> {
        unwrap_key(&self.wrap, aad, wrapped)
    }

    fn open_v1(&self, aad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        self.v1.open(aad, sealed)
    }

    fn legacy_subkey(&self, info: &[u8]) -> Option<Zeroizing<[u8; 32]>> {
        Some(self.root.derive(info))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret_key::WRAPPED_KEY_LEN;
    use crate::test_support::assert_opens_only_with;
    use crate::{DigestKey, EnvRootKey, FileRootKey};

    fn local() -> LocalRootKey {
        LocalRootKey::new(RootKey::generate().unwrap())
    }

    /// A provider that has only what every provider must have, as an HSM's does.
    #[derive(Debug)]
    struct Minimal(LocalRootKey);

    impl RootKeyProvider for Minimal {
        fn id(&self) -> KeyId {
            self.0.id()
        }
        fn describe(&self) -> String {
            "minimal".to_owned()
        }
        fn wrap(&self, aad: &[u8], key: &SecretKey) -> Result<Vec<u8>, CryptoError> {
            self.0.wrap(aad, key)
        }
        fn unwrap(&self, aad: &[u8], wrapped: &[u8]) -> Result<SecretKey, CryptoError> {
            self.0.unwrap(aad, wrapped)
        }
    }

    #[test]
    fn the_id_is_the_root_keys_so_format_1_headers_still_match() {
        let root = RootKey::generate().unwrap();
        let id = root.id();
        assert_eq!(LocalRootKey::new(root).id(), id);
    }

    #[test]
    fn wraps_and_unwraps_only_with_the_same_key_and_aad() {
        let provider = local();
        let key = SecretKey::generate().unwrap();
        let wrapped = provider.wrap(b"ns_1/v1", &key).unwrap();
        assert_eq!(wrapped.len(), WRAPPED_KEY_LEN);
        assert_ne!(wrapped, provider.wrap(b"ns_1/v1", &key).unwrap());
        let opened = provider.unwrap(b"ns_1/v1", &wrapped).unwrap();
        assert_eq!(opened.bytes(), key.bytes());
        assert!(matches!(
            provider.unwrap(b"ns_1/v2", &wrapped),
            Err(CryptoError::Tampered)
        ));
        assert!(matches!(
            local().unwrap(b"ns_1/v1", &wrapped),
            Err(CryptoError::Tampered)
        ));
        assert!(matches!(
            provider.unwrap(b"ns_1/v1", &wrapped[..wrapped.len() - 1]),
            Err(CryptoError::Malformed)
        ));
    }

    #[test]
    fn the_wrapping_key_is_not_format_1s_key_encryption_key() {
        let root = RootKey::generate().unwrap();
        let provider = LocalRootKey::new(root.clone());
        let v1_kek = SecretKey::from(root.derive(b"secretstore key-encryption key v1"));
        let v1_cipher = Aes256Gcm::new(v1_kek.bytes().into());
        let key = SecretKey::generate().unwrap();
        let wrapped = provider.wrap(b"aad", &key).unwrap();
        assert!(unwrap_key(&v1_cipher, b"aad", &wrapped).is_err());
    }

    #[test]
    fn format_1_values_open_through_the_provider_and_not_through_another() {
        let root = RootKey::generate().unwrap();
        let sealed = Envelope::new(&root).seal(b"row-1", b"payload").unwrap();
        let provider = LocalRootKey::new(root);
        let open = |aad: &[u8]| provider.open_v1(aad, &sealed);
        assert_opens_only_with(open, b"row-1", b"row-2", b"payload");
        assert!(matches!(
            local().open_v1(b"row-1", &sealed),
            Err(CryptoError::UnknownRootKey(id)) if id == provider.id()
        ));
    }

    #[test]
    fn a_provider_without_format_1_reports_the_values_root_key() {
        let root = RootKey::generate().unwrap();
        let sealed = Envelope::new(&root).seal(b"aad", b"payload").unwrap();
        let minimal = Minimal(LocalRootKey::new(root.clone()));
        assert!(matches!(
            minimal.open_v1(b"aad", &sealed),
            Err(CryptoError::UnknownRootKey(id)) if id == root.id()
        ));
        assert!(matches!(
            minimal.open_v1(b"aad", &sealed[..10]),
            Err(CryptoError::Malformed)
        ));
        assert!(minimal.legacy_subkey(DigestKey::LEGACY_INFO).is_none());
    }

    #[test]
    fn the_legacy_digest_key_carries_over() {
        let root = RootKey::generate().unwrap();
        let before = DigestKey::new(&root);
        let provider = LocalRootKey::new(root);
        let subkey = provider.legacy_subkey(DigestKey::LEGACY_INFO).unwrap();
        let stored = provider
            .wrap(b"digest key", &SecretKey::from(subkey))
            .unwrap();
        let after = DigestKey::from_secret_key(&provider.unwrap(b"digest key", &stored).unwrap());
        assert_eq!(
            after.digest("d", &[b"sk_test_a"]),
            before.digest("d", &[b"sk_test_a"])
        );
    }

    #[test]
    fn sources_give_providers_that_say_where_the_key_came_from() {
        let root = RootKey::generate().unwrap();
        let env = EnvRootKey::new("SECRETSTORE_ROOT_KEY", root.encode().to_string());
        let provider = LocalRootKey::load(&env).unwrap();
        assert_eq!(provider.id(), root.id());
        assert_eq!(
            provider.describe(),
            "environment variable SECRETSTORE_ROOT_KEY"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("root.key");
        let (created, _) = FileRootKey::load_or_generate(&path).unwrap();
        let from_file = LocalRootKey::load(&FileRootKey::new(&path)).unwrap();
        assert_eq!(from_file.id(), created.id());
        assert_eq!(from_file.describe(), format!("file {}", path.display()));
    }

    #[test]
    fn debug_never_shows_key_bytes() {
        let root = RootKey::from_bytes([7u8; 32]);
        let encoded = root.encode().to_string();
        let text = format!("{:?}", LocalRootKey::new(root));
        assert!(text.starts_with("LocalRootKey { id: KeyId("), "{text}");
        assert!(!text.contains(&encoded), "{text}");
        assert!(!text.contains("[7, 7"), "{text}");
    }
}
