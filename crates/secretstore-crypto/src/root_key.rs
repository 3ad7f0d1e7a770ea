//! The root key and where it comes from. It never lives in the database: a file readable only by
//! its owner, or an environment variable. Its `Debug` is redacted and its bytes are wiped on drop.

use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::CryptoError;

/// A 256-bit root key.
#[derive(Clone)]
pub struct RootKey(Zeroizing<[u8; 32]>);

/// A public fingerprint of a root key: the first 8 bytes of HMAC-SHA256(key, constant).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyId(pub [u8; 8]);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

impl fmt::Debug for RootKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RootKey(id={}, [REDACTED])", self.id())
    }
}

impl RootKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// A fresh key from the operating system's random source.
    pub fn generate() -> Result<Self, CryptoError> {
        crate::random::<32>().map(Self)
    }

    /// Reads a key written as 64 hex digits or as standard base64 of 32 bytes, surrounding
    /// whitespace ignored. `source_name` names where the text came from, for the error.
    pub fn parse(text: &str, source_name: &str) -> Result<Self, CryptoError> {
        let text = text.trim();
        let bad = |reason: &str| CryptoError::KeyFormat {
            source_name: source_name.to_owned(),
            reason: reason.to_owned(),
        };
        let mut bytes = Zeroizing::new([0u8; 32]);
        if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            hex::decode_to_slice(text, bytes.as_mut()).map_err(|_| bad("invalid hex"))?;
            return Ok(Self(bytes));
        }
        let decoded = Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .map_err(|_| bad("expected 32 bytes as 64 hex digits or as base64"))?,
        );
        if decoded.len() != 32 {
            return Err(bad("expected 32 bytes as 64 hex digits or as base64"));
        }
        bytes.copy_from_slice(&decoded);
        Ok(Self(bytes))
    }

    /// The key as base64, for writing a generated dev key to its file.
    pub fn encode(&self) -> Zeroizing<String> {
        Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(self.0.as_ref()))
    }

    pub fn id(&self) -> KeyId {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.0.as_ref())
            .expect("HMAC takes keys of any length");
        mac.update(b"secretstore root key id v1");
        let tag = mac.finalize().into_bytes();
        let mut id = [0u8; 8];
        id.copy_from_slice(&tag[..8]);
        KeyId(id)
    }

    pub(crate) fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// A 256-bit key for one purpose, named by `info`: HKDF-SHA256 of the root key, so the root
    /// key itself is never used directly and no two purposes share a key.
    pub(crate) fn derive(&self, info: &[u8]) -> Zeroizing<[u8; 32]> {
        let hkdf = Hkdf::<Sha256>::new(Some(b"secretstore"), self.bytes());
        let mut key = Zeroizing::new([0u8; 32]);
        hkdf.expand(info, key.as_mut())
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        key
    }
}

/// Where a root key comes from; one type per source (a file, the environment, later a KMS).
pub trait RootKeySource: fmt::Debug {
    fn load(&self) -> Result<RootKey, CryptoError>;
    /// Where the key comes from, for start-up logs (never the key itself).
    fn describe(&self) -> String;
}

/// A key file private to the server's user (`private_path`): anyone who can read it can read
/// every secret.
#[derive(Debug, Clone)]
pub struct FileRootKey {
    pub path: PathBuf,
}

impl FileRootKey {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// Loads the key file in `dir`, or creates one with a fresh key (mode 0600) if there is
    /// none. Returns the key and whether it was created. For dev mode only.
    pub fn load_or_generate(path: &Path) -> Result<(RootKey, bool), CryptoError> {
        let source = Self::new(path);
        if path.exists() {
            return Ok((source.load()?, false));
        }
        let key = RootKey::generate()?;
        let err = |e: std::io::Error| CryptoError::KeyFile {
            path: path.display().to_string(),
            reason: e.to_string(),
        };
        write_owner_only(path, key.encode().as_bytes()).map_err(err)?;
        Ok((key, true))
    }
}

#[cfg(unix)]
fn write_owner_only(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents)?;
    file.write_all(b"\n")?;
    file.sync_all()
}

#[cfg(not(unix))]
fn write_owner_only(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, contents)
}

impl RootKeySource for FileRootKey {
    fn load(&self) -> Result<RootKey, CryptoError> {
        let err = |reason: String| CryptoError::KeyFile {
            path: self.path.display().to_string(),
            reason,
        };
        let meta = std::fs::metadata(&self.path).map_err(|e| err(e.to_string()))?;
        crate::ensure_private(&self.path, "the root key file")?;
        if !meta.is_file() {
            return Err(err("is not a regular file".to_owned()));
        }
        let text =
            Zeroizing::new(std::fs::read_to_string(&self.path).map_err(|e| err(e.to_string()))?);
        RootKey::parse(&text, &format!("file {}", self.path.display()))
    }

    fn describe(&self) -> String {
        format!("file {}", self.path.display())
    }
}

/// A key given in an environment variable (its value, never printed).
#[derive(Clone)]
pub struct EnvRootKey {
    pub variable: String,
    value: Zeroizing<String>,
}

impl fmt::Debug for EnvRootKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnvRootKey")
            .field("variable", &self.variable)
            .finish_non_exhaustive()
    }
}

impl EnvRootKey {
    pub fn new(variable: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            variable: variable.into(),
            value: Zeroizing::new(value.into()),
        }
    }
}

impl RootKeySource for EnvRootKey {
    fn load(&self) -> Result<RootKey, CryptoError> {
        RootKey::parse(
            &self.value,
            &format!("environment variable {}", self.variable),
        )
    }

    fn describe(&self) -> String {
        format!("environment variable {}", self.variable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hex_and_base64_and_refuses_other_lengths() {
        let key = RootKey::generate().unwrap();
        let b64 = key.encode();
        let from_b64 = RootKey::parse(&b64, "test").unwrap();
        assert_eq!(from_b64.id(), key.id());
        let from_hex = RootKey::parse(&format!(" {}\n", hex::encode(key.bytes())), "test").unwrap();
        assert_eq!(from_hex.id(), key.id());
        assert!(RootKey::parse("abcd", "test").is_err());
        assert!(RootKey::parse("", "test").is_err());
    }

    #[test]
    fn debug_never_shows_key_bytes() {
        let key = RootKey::from_bytes([7u8; 32]);
        let text = format!("{key:?}");
        assert!(text.contains("REDACTED"));
        assert!(!text.contains(&key.encode().to_string()));
        let env = EnvRootKey::new("SECRETSTORE_ROOT_KEY", key.encode().to_string());
        assert!(!format!("{env:?}").contains(&key.encode().to_string()));
    }

    #[cfg(unix)]
    #[test]
    fn key_file_readable_by_others_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("root.key");
        let (created, was_new) = FileRootKey::load_or_generate(&path).unwrap();
        assert!(was_new);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (again, was_new) = FileRootKey::load_or_generate(&path).unwrap();
        assert!(!was_new);
        assert_eq!(again.id(), created.id());

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = FileRootKey::new(&path).load().unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");
    }
}
