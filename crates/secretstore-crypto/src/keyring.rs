//! The root key versions a server holds. The first (active) one wraps everything new; the
//! others are kept only to unwrap what they wrapped before a rotation, until it is re-wrapped.
//! Every wrapped value is stored with the id of the root key that wrapped it, and that id, not
//! trial and error, picks the key that unwraps it.

use std::sync::Arc;

use zeroize::Zeroizing;

use crate::envelope;
use crate::provider::{LocalRootKey, RootKeyProvider};
use crate::root_key::{KeyId, RootKey};
use crate::secret_key::SecretKey;
use crate::CryptoError;

/// The active root key and the older ones, with distinct ids.
#[derive(Debug, Clone)]
pub struct RootKeyring {
    /// The active key first, then the others in the order given.
    providers: Vec<Arc<dyn RootKeyProvider>>,
}

impl RootKeyring {
    /// Refuses two providers with one id: the same key configured twice would make a stored id
    /// name either, and an operator who meant two different keys should hear of it.
    pub fn new(
        active: Arc<dyn RootKeyProvider>,
        others: Vec<Arc<dyn RootKeyProvider>>,
    ) -> Result<Self, CryptoError> {
        let mut providers: Vec<Arc<dyn RootKeyProvider>> = Vec::with_capacity(1 + others.len());
        for provider in std::iter::once(active).chain(others) {
            let id = provider.id();
            if let Some(first) = providers.iter().find(|p| p.id() == id) {
                return Err(CryptoError::DuplicateRootKey {
                    id,
                    first: first.describe(),
                    second: provider.describe(),
                });
            }
            providers.push(provider);
        }
        Ok(Self { providers })
    }

    /// A ring of local root keys (`LocalRootKey`), the first one active: what a server given
    /// key files or keys in the environment runs with, and what tests build.
    pub fn local(active: &RootKey, older: &[&RootKey]) -> Result<Self, CryptoError> {
        let local =
            |key: &RootKey| Arc::new(LocalRootKey::new(key.clone())) as Arc<dyn RootKeyProvider>;
        Self::new(local(active), older.iter().map(|key| local(key)).collect())
    }

    /// The key that wraps new values.
    pub fn active(&self) -> &Arc<dyn RootKeyProvider> {
        &self.providers[0]
    }

    pub fn get(&self, id: KeyId) -> Option<&Arc<dyn RootKeyProvider>> {
        self.providers.iter().find(|p| p.id() == id)
    }

    /// Every key's id, the active one first.
    pub fn ids(&self) -> Vec<KeyId> {
        self.providers.iter().map(|p| p.id()).collect()
    }

    /// Wraps `key` under the active root key; store the id returned beside the wrapped bytes.
    pub fn wrap(&self, aad: &[u8], key: &SecretKey) -> Result<(KeyId, Vec<u8>), CryptoError> {
        let active = self.active();
        Ok((active.id(), active.wrap(aad, key)?))
    }

    /// Unwraps with the root key `id` names, which must be in the keyring.
    pub fn unwrap(&self, id: KeyId, aad: &[u8], wrapped: &[u8]) -> Result<SecretKey, CryptoError> {
        self.provider(id)?.unwrap(aad, wrapped)
    }

    /// Opens a format 1 value with the root key its header names.
    pub fn open_v1(&self, aad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        self.provider(envelope::root_key_id(sealed)?)?
            .open_v1(aad, sealed)
    }

    fn provider(&self, id: KeyId) -> Result<&Arc<dyn RootKeyProvider>, CryptoError> {
        self.get(id).ok_or(CryptoError::UnknownRootKey(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::assert_opens_only_with;
    use crate::{Envelope, LocalRootKey, RootKey};

    fn provider(root: &RootKey) -> Arc<dyn RootKeyProvider> {
        Arc::new(LocalRootKey::new(root.clone()))
    }

    fn fresh() -> Arc<dyn RootKeyProvider> {
        provider(&RootKey::generate().unwrap())
    }

    #[test]
    fn a_root_key_given_twice_is_refused_naming_it() {
        let one = fresh();
        let err = RootKeyring::new(one.clone(), vec![fresh(), one.clone()]).unwrap_err();
        assert!(
            matches!(&err, CryptoError::DuplicateRootKey { id, .. } if *id == one.id()),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            format!(
                "root key {} is configured twice (a root key given directly and a root key \
                 given directly); give each root key version once",
                one.id()
            )
        );
        let other = fresh();
        assert!(RootKeyring::new(fresh(), vec![other.clone(), other]).is_err());
    }

    #[test]
    fn the_active_key_wraps_and_any_key_unwraps_what_it_wrapped() {
        let old = fresh();
        let new = fresh();
        let before = RootKeyring::new(old.clone(), vec![]).unwrap();
        let key = SecretKey::generate().unwrap();
        let (old_id, wrapped) = before.wrap(b"ns_1 v1", &key).unwrap();
        assert_eq!(old_id, old.id());

        // Rotation: a new active key; the old one is kept to unwrap.
        let after = RootKeyring::new(new.clone(), vec![old.clone()]).unwrap();
        assert_eq!(after.ids(), vec![new.id(), old.id()]);
        assert_eq!(after.active().id(), new.id());
        assert!(after.get(old.id()).is_some());
        let opened = after.unwrap(old_id, b"ns_1 v1", &wrapped).unwrap();
        assert_eq!(opened.bytes(), key.bytes());
        let (new_id, rewrapped) = after.wrap(b"ns_1 v1", &opened).unwrap();
        assert_eq!(new_id, new.id());
        assert!(matches!(
            after.unwrap(new_id, b"ns_1 v1", &wrapped),
            Err(CryptoError::Tampered)
        ));
        assert!(matches!(
            after.unwrap(old_id, b"ns_1 v2", &wrapped),
            Err(CryptoError::Tampered)
        ));

        // Once the old key is retired, what it wrapped is reported by its id.
        let retired = RootKeyring::new(new, vec![]).unwrap();
        assert!(retired.get(old_id).is_none());
        assert!(matches!(
            retired.unwrap(old_id, b"ns_1 v1", &wrapped),
            Err(CryptoError::UnknownRootKey(id)) if id == old_id
        ));
        assert_eq!(
            retired
                .unwrap(new_id, b"ns_1 v1", &rewrapped)
                .unwrap()
                .bytes(),
            key.bytes()
        );
    }

    #[test]
    fn format_1_values_open_with_the_root_key_their_header_names() {
        let (a, b) = (RootKey::generate().unwrap(), RootKey::generate().unwrap());
        let sealed_a = Envelope::new(&a).seal(b"row-a", b"payload a").unwrap();
        let sealed_b = Envelope::new(&b).seal(b"row-b", b"payload b").unwrap();
        let keyring = RootKeyring::new(fresh(), vec![provider(&a), provider(&b)]).unwrap();
        let open_a = |aad: &[u8]| keyring.open_v1(aad, &sealed_a);
        assert_opens_only_with(open_a, b"row-a", b"row-b", b"payload a");
        let open_b = |aad: &[u8]| keyring.open_v1(aad, &sealed_b);
        assert_opens_only_with(open_b, b"row-b", b"row-a", b"payload b");
        let without_b = RootKeyring::new(provider(&a), vec![]).unwrap();
        assert!(matches!(
            without_b.open_v1(b"row-b", &sealed_b),
            Err(CryptoError::UnknownRootKey(id)) if id == b.id()
        ));
        assert!(matches!(
            without_b.open_v1(b"row-a", &[1, 2, 3]),
            Err(CryptoError::Malformed)
        ));
    }
}
