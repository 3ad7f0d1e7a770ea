//! A root key kept in an HSM and used through PKCS#11: an AES-256 secret key object on a token,
//! found by the token's label and the key's label. Wrapping and unwrapping run inside the token
//! (`C_Encrypt`/`C_Decrypt` with `CKM_AES_GCM`), so the root key's bytes never reach this
//! process, which is why such a key cannot open format 1 values or give legacy subkeys: those
//! were derived from a root key's bytes, and one created in a token never had any outside it.
//!
//! A PKCS#11 module is loaded and initialized once per process and shared by every key that
//! names it (`C_Initialize` may be called only once). Each key keeps one logged-in session; a
//! session may not be used by two threads at once, so it is behind a mutex, which costs nothing
//! that matters: the root key is used only when a namespace key is not in memory yet.
//!
//! Login state belongs to the process and the token, not to a session: a second key opened on a
//! token this process is already logged in to is not asked for its PIN again.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error, RvError};
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::{AuthPin, Ulong};
use zeroize::Zeroizing;

use crate::provider::RootKeyProvider;
use crate::root_key::KeyId;
use crate::secret_key::{
    secret_key_from_slice, SecretKey, KEY_LEN, NONCE_LEN, TAG_LEN, WRAPPED_KEY_LEN,
};
use crate::{random, CryptoError};

/// The associated data of the id's fingerprint, which no wrap uses.
const ID_AAD: &[u8] = b"secretstore root key id v1 pkcs11";
const TAG_BITS: Ulong = Ulong::new((TAG_LEN * 8) as _);
const KEY_BYTES: Ulong = Ulong::new(KEY_LEN as _);

/// A root key version held in a PKCS#11 token.
pub struct Pkcs11RootKey {
    id: KeyId,
    describe: String,
    key: ObjectHandle,
    session: Mutex<Session>,
}

impl fmt::Debug for Pkcs11RootKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkcs11RootKey")
            .field("id", &self.id)
            .field("key", &self.describe)
            .finish_non_exhaustive()
    }
}

impl Pkcs11RootKey {
    /// Opens the AES key labelled `key_label` on the token labelled `token_label`, logging in as
    /// the token's user with `pin`.
    pub fn open(
        module: &Path,
        token_label: &str,
        pin: Zeroizing<String>,
        key_label: &str,
    ) -> Result<Self, CryptoError> {
        let token = Token::find(module, token_label)?;
        let session = token.login(&pin, "the PIN", false)?;
        Self::from_session(&token, session, key_label)
    }

    /// As [`Pkcs11RootKey::open`], with the PIN read from `pin_file`, which is held to the same
    /// rule as the root key file ([`crate::ensure_private`]): whoever reads it can use the key.
    /// A trailing line break is not part of the PIN.
    pub fn open_with_pin_file(
        module: &Path,
        token_label: &str,
        pin_file: &Path,
        key_label: &str,
    ) -> Result<Self, CryptoError> {
        let pin = read_pin_file(pin_file)?;
        let token = Token::find(module, token_label)?;
        let refused = format!("the PIN in {}", pin_file.display());
        let session = token.login(&pin, &refused, false)?;
        Self::from_session(&token, session, key_label)
    }

    /// Creates the AES-256 key `key_label` in the token: a token object, sensitive and never
    /// extractable, allowed to encrypt and decrypt only. Refuses a label already in use, which
    /// would make the root key ambiguous.
    /// `generate_key` with the PIN read from `pin_file` (held to the root key file's rule), for
    /// `secretstore keys hsm-generate`; answers the new key, opened.
    pub fn generate_key_with_pin_file(
        module: &Path,
        token_label: &str,
        pin_file: &Path,
        key_label: &str,
    ) -> Result<Self, CryptoError> {
        Self::generate_key(module, token_label, read_pin_file(pin_file)?, key_label)?;
        Self::open_with_pin_file(module, token_label, pin_file, key_label)
    }

    pub fn generate_key(
        module: &Path,
        token_label: &str,
        pin: Zeroizing<String>,
        key_label: &str,
    ) -> Result<(), CryptoError> {
        let token = Token::find(module, token_label)?;
        let session = token.login(&pin, "the PIN", true)?;
        let existing = session
            .find_objects(&[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::Label(key_label.as_bytes().to_vec()),
            ])
            .map_err(|err| token.failed(&err))?;
        if !existing.is_empty() {
            return Err(CryptoError::Hsm(format!(
                "token \"{token_label}\" already holds a key labelled \"{key_label}\"; choose \
                 another label"
            )));
        }
        session
            .generate_key(
                &Mechanism::AesKeyGen,
                &[
                    Attribute::Class(ObjectClass::SECRET_KEY),
                    Attribute::KeyType(KeyType::AES),
                    Attribute::ValueLen(KEY_BYTES),
                    Attribute::Label(key_label.as_bytes().to_vec()),
                    Attribute::Token(true),
                    Attribute::Private(true),
                    Attribute::Sensitive(true),
                    Attribute::Extractable(false),
                    Attribute::Encrypt(true),
                    Attribute::Decrypt(true),
                    Attribute::Wrap(false),
                    Attribute::Unwrap(false),
                    Attribute::Sign(false),
                    Attribute::Verify(false),
                    Attribute::Derive(false),
                ],
            )
            .map_err(|err| token.failed(&err))?;
        Ok(())
    }

    fn from_session(token: &Token, session: Session, key_label: &str) -> Result<Self, CryptoError> {
        let key = token.find_key(&session, key_label)?;
        let id = fingerprint(&session, key, &token.what())?;
        Ok(Self {
            id,
            describe: format!(
                "PKCS#11 key \"{key_label}\" on token \"{}\" (module {})",
                token.label,
                token.module.display()
            ),
            key,
            session: Mutex::new(session),
        })
    }

    fn session(&self) -> MutexGuard<'_, Session> {
        // A panic elsewhere while holding the lock leaves nothing half-done in the session
        // that the next call's C_EncryptInit/C_DecryptInit does not start over.
        self.session.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn failed(&self, err: &Error) -> CryptoError {
        failed(&self.describe, err)
    }
}

impl RootKeyProvider for Pkcs11RootKey {
    fn id(&self) -> KeyId {
        self.id
    }

    fn describe(&self) -> String {
        self.describe.clone()
    }

    fn wrap(&self, aad: &[u8], key: &SecretKey) -> Result<Vec<u8>, CryptoError> {
        let mut nonce = random::<NONCE_LEN>()?;
        // The all-zero nonce is the id fingerprint's; a wrap never uses it.
        while nonce.iter().all(|&b| b == 0) {
            nonce = random::<NONCE_LEN>()?;
        }
        let sealed = gcm_encrypt(
            &self.session(),
            self.key,
            &nonce,
            aad,
            key.bytes(),
            &self.describe,
        )?;
        if sealed.len() != KEY_LEN + TAG_LEN {
            return Err(CryptoError::Hsm(format!(
                "{} returned {} bytes for a wrapped key, not {}",
                self.describe,
                sealed.len(),
                KEY_LEN + TAG_LEN
            )));
        }
        Ok([nonce.as_slice(), &sealed].concat())
    }

    fn unwrap(&self, aad: &[u8], wrapped: &[u8]) -> Result<SecretKey, CryptoError> {
        if wrapped.len() != WRAPPED_KEY_LEN {
            return Err(CryptoError::Malformed);
        }
        let (nonce, sealed) = wrapped.split_at(NONCE_LEN);
        let mut nonce = nonce.to_vec();
        let params = GcmParams::new(&mut nonce, aad, TAG_BITS).map_err(|err| self.failed(&err))?;
        let session = self.session();
        let opened = session
            .decrypt(&Mechanism::AesGcm(params), self.key, sealed)
            .map(Zeroizing::new)
            .map_err(|err| match err {
                Error::Pkcs11(
                    RvError::EncryptedDataInvalid | RvError::EncryptedDataLenRange,
                    _,
                ) => CryptoError::Tampered,
                // Some tokens (SoftHSM among them) report a tag that does not verify as
                // CKR_GENERAL_ERROR, which a failing device reports too. If the token still
                // computes this key's fingerprint, it and the key are fine: the input is at fault.
                Error::Pkcs11(RvError::GeneralError, _)
                    if fingerprint(&session, self.key, &self.describe).ok() == Some(self.id) =>
                {
                    CryptoError::Tampered
                }
                other => self.failed(&other),
            })?;
        secret_key_from_slice(&opened)
    }
}

/// AES-GCM inside the token under `key`, with our nonce and a 128-bit tag: `ciphertext | tag`.
/// `what` names the key or token in a failure's sentence.
fn gcm_encrypt(
    session: &Session,
    key: ObjectHandle,
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    msg: &[u8],
    what: &str,
) -> Result<Vec<u8>, CryptoError> {
    let mut iv = *nonce;
    let params = GcmParams::new(&mut iv, aad, TAG_BITS).map_err(|err| failed(what, &err))?;
    let sealed = session
        .encrypt(&Mechanism::AesGcm(params), key, msg)
        .map_err(|err| failed(what, &err))?;
    // A token may replace the IV it is given with one of its own (PKCS#11 allows it, some FIPS
    // modes demand it). The fingerprint needs the fixed IV and a wrap stores the one it gave,
    // so such a token cannot be used.
    if iv != *nonce {
        return Err(CryptoError::Hsm(format!(
            "{what} replaced the AES-GCM IV it was given with its own; secretstore needs a token \
             that accepts the caller's IV"
        )));
    }
    Ok(sealed)
}

/// The root key's id: the first 8 bytes of the AES-GCM tag of the empty message under the
/// all-zero IV and [`ID_AAD`], computed inside the token. It depends on the key alone, reveals
/// nothing of it (without the key, a GCM tag cannot be told from random), and is the same every
/// time. Using one IV for it again and again is harmless: GCM breaks when one IV protects two
/// different messages or AADs, and this IV only ever protects the same empty message with the
/// same AAD, while every wrap uses a random IV that is never the all-zero one.
fn fingerprint(session: &Session, key: ObjectHandle, what: &str) -> Result<KeyId, CryptoError> {
    let tag = gcm_encrypt(session, key, &[0; NONCE_LEN], ID_AAD, &[], what)?;
    let mut id = [0u8; 8];
    let first = tag.get(..8).ok_or_else(|| {
        CryptoError::Hsm(format!("{what} returned a {}-byte AES-GCM tag", tag.len()))
    })?;
    id.copy_from_slice(first);
    Ok(KeyId(id))
}

/// A token found by its label, in a loaded module.
struct Token {
    module: PathBuf,
    pkcs11: Pkcs11,
    slot: Slot,
    label: String,
}

impl Token {
    fn find(module: &Path, label: &str) -> Result<Self, CryptoError> {
        let pkcs11 = load_module(module)?;
        let listing = |err: Error| {
            CryptoError::Hsm(format!(
                "cannot list the tokens of the PKCS#11 module {}: {}",
                module.display(),
                error_text(&err)
            ))
        };
        let mut found = Vec::new();
        for slot in pkcs11.get_slots_with_initialized_token().map_err(listing)? {
            let info = pkcs11.get_token_info(slot).map_err(listing)?;
            // cryptoki has already removed the space padding PKCS#11 gives labels.
            found.push((slot, info.label().to_owned()));
        }
        let mut matching = found.iter().filter(|(_, l)| l == label).map(|(s, _)| *s);
        match (matching.next(), matching.next()) {
            (Some(slot), None) => Ok(Self {
                module: module.to_owned(),
                pkcs11,
                slot,
                label: label.to_owned(),
            }),
            (Some(_), Some(_)) => Err(CryptoError::Hsm(format!(
                "several PKCS#11 tokens are labelled \"{label}\"; give each token its own label"
            ))),
            (None, _) => {
                let mut labels: Vec<&str> = found.iter().map(|(_, l)| l.as_str()).collect();
                labels.sort_unstable();
                let labels = if labels.is_empty() {
                    "none".to_owned()
                } else {
                    labels.join(", ")
                };
                Err(CryptoError::Hsm(format!(
                    "no PKCS#11 token is labelled \"{label}\" (tokens found: {labels})"
                )))
            }
        }
    }

    /// Opens a session and logs in as the token's user; `pin_source` names the PIN in the
    /// sentence that says it was refused.
    fn login(&self, pin: &str, pin_source: &str, rw: bool) -> Result<Session, CryptoError> {
        let session = if rw {
            self.pkcs11.open_rw_session(self.slot)
        } else {
            self.pkcs11.open_ro_session(self.slot)
        }
        .map_err(|err| self.failed(&err))?;
        match session.login(UserType::User, Some(&AuthPin::from(pin))) {
            Ok(()) | Err(Error::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(session),
            Err(Error::Pkcs11(
                RvError::PinIncorrect | RvError::PinInvalid | RvError::PinLenRange,
                _,
            )) => Err(CryptoError::Hsm(format!(
                "{pin_source} was refused by token \"{}\"",
                self.label
            ))),
            Err(Error::Pkcs11(RvError::PinLocked, _)) => Err(CryptoError::Hsm(format!(
                "token \"{}\" has locked its user PIN after too many wrong ones; its security \
                 officer must unlock it",
                self.label
            ))),
            Err(err) => Err(self.failed(&err)),
        }
    }

    /// The one AES key labelled `label`, which must be able to encrypt and decrypt.
    fn find_key(&self, session: &Session, label: &str) -> Result<ObjectHandle, CryptoError> {
        let keys = session
            .find_objects(&[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::AES),
                Attribute::Label(label.as_bytes().to_vec()),
            ])
            .map_err(|err| self.failed(&err))?;
        let key = match keys.as_slice() {
            [key] => *key,
            [] => {
                return Err(CryptoError::Hsm(format!(
                    "token \"{}\" holds no AES key labelled \"{label}\"",
                    self.label
                )))
            }
            several => {
                return Err(CryptoError::Hsm(format!(
                    "token \"{}\" holds {} AES keys labelled \"{label}\"; the root key must be \
                     the only one with its label",
                    self.label,
                    several.len()
                )))
            }
        };
        let attributes = session
            .get_attributes(
                key,
                &[
                    AttributeType::Encrypt,
                    AttributeType::Decrypt,
                    AttributeType::ValueLen,
                ],
            )
            .map_err(|err| self.failed(&err))?;
        for attribute in attributes {
            let refused = match attribute {
                Attribute::Encrypt(false) | Attribute::Decrypt(false) => {
                    "does not allow both encryption and decryption (CKA_ENCRYPT and CKA_DECRYPT)"
                        .to_owned()
                }
                Attribute::ValueLen(len) if len != KEY_BYTES => {
                    format!("is {} bits long, not 256", usize::from(len) * 8)
                }
                _ => continue,
            };
            return Err(CryptoError::Hsm(format!(
                "the AES key labelled \"{label}\" on token \"{}\" {refused}",
                self.label
            )));
        }
        Ok(key)
    }

    fn what(&self) -> String {
        format!("PKCS#11 token \"{}\"", self.label)
    }

    fn failed(&self, err: &Error) -> CryptoError {
        failed(&self.what(), err)
    }
}

/// The module at `path`, loaded and initialized by the first key that names it.
fn load_module(path: &Path) -> Result<Pkcs11, CryptoError> {
    static MODULES: OnceLock<Mutex<HashMap<PathBuf, Pkcs11>>> = OnceLock::new();
    let mut modules = MODULES
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if let Some(pkcs11) = modules.get(path) {
        return Ok(pkcs11.clone());
    }
    let cannot = |err: &Error| {
        let reason = match err {
            Error::LibraryLoading(inner) => inner.to_string(),
            other => error_text(other),
        };
        CryptoError::Hsm(format!(
            "cannot load the PKCS#11 module {}: {reason}",
            path.display()
        ))
    };
    let pkcs11 = Pkcs11::new(path).map_err(|err| cannot(&err))?;
    match pkcs11.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        // Another path to the same library (a symbolic link) initialized it already.
        Ok(()) | Err(Error::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(err) => return Err(cannot(&err)),
    }
    modules.insert(path.to_owned(), pkcs11.clone());
    Ok(pkcs11)
}

fn read_pin_file(path: &Path) -> Result<Zeroizing<String>, CryptoError> {
    crate::ensure_private(path, "the PKCS#11 PIN file")?;
    let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|err| {
        CryptoError::Hsm(format!(
            "cannot read the PKCS#11 PIN file {}: {err}",
            path.display()
        ))
    })?);
    let pin = Zeroizing::new(text.trim_end_matches(['\n', '\r']).to_owned());
    if pin.is_empty() {
        return Err(CryptoError::Hsm(format!(
            "the PKCS#11 PIN file {} is empty",
            path.display()
        )));
    }
    Ok(pin)
}

/// `what` (a key or token) failed, in one sentence.
fn failed(what: &str, err: &Error) -> CryptoError {
    CryptoError::Hsm(format!("{what} failed: {}", error_text(err)))
}

/// A PKCS#11 failure as the call and its return value's name (`C_Login: DeviceError`), which
/// says what failed without the paragraph the standard gives each return value.
fn error_text(err: &Error) -> String {
    match err {
        Error::Pkcs11(rv, function) => format!("C_{function:?} returned {rv:?}"),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn pin_file(contents: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pin");
        std::fs::write(&path, contents).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        (dir, path)
    }

    #[test]
    fn a_pin_file_loses_its_line_break_and_nothing_else() {
        for (contents, pin) in [
            ("1234\n", "1234"),
            ("1234\r\n", "1234"),
            (" 12 34 ", " 12 34 "),
        ] {
            let (_dir, path) = pin_file(contents);
            assert_eq!(read_pin_file(&path).unwrap().as_str(), pin);
        }
        let (_dir, path) = pin_file("\n");
        assert_eq!(
            read_pin_file(&path).unwrap_err().to_string(),
            format!("the PKCS#11 PIN file {} is empty", path.display())
        );
    }
}
