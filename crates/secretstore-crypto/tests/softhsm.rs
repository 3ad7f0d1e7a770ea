//! `Pkcs11RootKey` against a real SoftHSM2 token. SoftHSM reads its configuration (where its
//! tokens are) from `SOFTHSM2_CONF` once, when the module is initialized, and a module is
//! initialized once per process; so everything runs in this one test, in its own test binary,
//! against one temporary token directory, and the variable is set before anything else runs.
#![cfg(feature = "pkcs11")]
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use cryptoki::context::Pkcs11;
use cryptoki::error::{Error, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, KeyType, ObjectClass};
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;
use secretstore_crypto::envelope_v2::{open, seal};
use secretstore_crypto::{
    CryptoError, Envelope, Kek, LocalRootKey, Pkcs11RootKey, RootKey, RootKeyProvider, RootKeyring,
    SecretKey,
};
use zeroize::Zeroizing;

const PIN: &str = "1234";
const MODULES: &[&str] = &[
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
];

fn module() -> PathBuf {
    MODULES
        .iter()
        .map(PathBuf::from)
        .find(|path| path.exists())
        .unwrap_or_else(|| {
            panic!(
                "the SoftHSM2 PKCS#11 module is not installed (looked for {MODULES:?}); run \
                 `apt-get install softhsm2`"
            )
        })
}

fn init_token(conf: &Path, label: &str) {
    let output = Command::new("softhsm2-util")
        .env("SOFTHSM2_CONF", conf)
        .args(["--init-token", "--free", "--label", label])
        .args(["--pin", PIN, "--so-pin", "5678"])
        .output()
        .unwrap_or_else(|err| {
            panic!("cannot run softhsm2-util ({err}); run `apt-get install softhsm2`")
        });
    assert!(
        output.status.success(),
        "softhsm2-util --init-token failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn pin() -> Zeroizing<String> {
    Zeroizing::new(PIN.to_owned())
}

fn write_private(path: &Path, contents: &str) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(path, contents).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// A key's bytes are the crate's own: two keys are the same if one opens what the other sealed.
fn assert_same_key(a: &SecretKey, b: &SecretKey) {
    let sealed = seal(&Kek::new(1, a), b"aad", b"payload").unwrap();
    assert_eq!(
        open(&Kek::new(1, b), b"aad", &sealed).unwrap().as_slice(),
        b"payload"
    );
}

fn hsm_error(result: Result<Pkcs11RootKey, CryptoError>) -> String {
    match result {
        Err(CryptoError::Hsm(sentence)) => sentence,
        other => panic!("expected an HSM error, got {other:?}"),
    }
}

/// Makes an AES key the way a careless operator could, which `generate_key` would refuse.
fn create_key_directly(module: &Path, token: &str, label: &str, decrypt: bool) {
    let pkcs11 = Pkcs11::new(module).unwrap();
    // The module is initialized already (by the keys opened before): a second C_Initialize
    // is refused, and this handle shares the first one's state.
    let slot = pkcs11
        .get_slots_with_initialized_token()
        .unwrap()
        .into_iter()
        .find(|slot| pkcs11.get_token_info(*slot).unwrap().label() == token)
        .unwrap();
    let session = pkcs11.open_rw_session(slot).unwrap();
    match session.login(UserType::User, Some(&AuthPin::from(PIN))) {
        Ok(()) | Err(Error::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
        Err(err) => panic!("{err}"),
    }
    session
        .generate_key(
            &Mechanism::AesKeyGen,
            &[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::AES),
                Attribute::ValueLen(32.into()),
                Attribute::Label(label.as_bytes().to_vec()),
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Encrypt(true),
                Attribute::Decrypt(decrypt),
            ],
        )
        .unwrap();
}

#[test]
fn pkcs11_root_keys_on_softhsm() {
    let module = module();
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::create_dir(&tokens).unwrap();
    let conf = dir.path().join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )
    .unwrap();
    // The only test in this binary, and nothing else runs yet: no other thread reads the
    // environment while it changes.
    std::env::set_var("SOFTHSM2_CONF", &conf);
    init_token(&conf, "T");
    init_token(&conf, "W");
    let pin_file = dir.path().join("pin");
    write_private(&pin_file, &format!("{PIN}\n"));

    // Keys are created inside the token, and a label is never given to two keys.
    Pkcs11RootKey::generate_key(&module, "T", pin(), "root-1").unwrap();
    Pkcs11RootKey::generate_key(&module, "T", pin(), "root-2").unwrap();
    let err = Pkcs11RootKey::generate_key(&module, "T", pin(), "root-1").unwrap_err();
    assert_eq!(
        err.to_string(),
        "token \"T\" already holds a key labelled \"root-1\"; choose another label"
    );

    // Wrap and unwrap inside the token.
    let first = Pkcs11RootKey::open(&module, "T", pin(), "root-1").unwrap();
    assert_eq!(
        first.describe(),
        format!(
            "PKCS#11 key \"root-1\" on token \"T\" (module {})",
            module.display()
        )
    );
    assert!(!format!("{first:?}").contains(PIN));
    let key = SecretKey::generate().unwrap();
    let wrapped = first.wrap(b"ns_1 v1", &key).unwrap();
    assert_eq!(wrapped.len(), 12 + 32 + 16);
    assert_ne!(wrapped, first.wrap(b"ns_1 v1", &key).unwrap());
    let opened = first.unwrap(b"ns_1 v1", &wrapped).unwrap();
    assert_same_key(&key, &opened);
    let r = first.unwrap(b"ns_1 v2", &wrapped);
    assert!(matches!(r, Err(CryptoError::Tampered)), "{r:?}");
    for i in [0, 12, 30, wrapped.len() - 1] {
        let mut bad = wrapped.clone();
        bad[i] ^= 0x01;
        assert!(
            matches!(first.unwrap(b"ns_1 v1", &bad), Err(CryptoError::Tampered)),
            "byte {i}"
        );
    }
    assert!(matches!(
        first.unwrap(b"ns_1 v1", &wrapped[1..]),
        Err(CryptoError::Malformed)
    ));

    // The id is the key's: the same on every open, another for another key.
    let again = Pkcs11RootKey::open_with_pin_file(&module, "T", &pin_file, "root-1").unwrap();
    assert_eq!(again.id(), first.id());
    let second = Pkcs11RootKey::open(&module, "T", pin(), "root-2").unwrap();
    assert_ne!(second.id(), first.id());
    assert!(matches!(
        second.unwrap(b"ns_1 v1", &wrapped),
        Err(CryptoError::Tampered)
    ));

    // No bytes, so no format 1 and no legacy subkeys: a format 1 value names its root key.
    let root = RootKey::generate().unwrap();
    let v1 = Envelope::new(&root).seal(b"row", b"payload").unwrap();
    assert!(matches!(
        first.open_v1(b"row", &v1),
        Err(CryptoError::UnknownRootKey(id)) if id == root.id()
    ));
    assert!(first.legacy_subkey(b"anything").is_none());

    // In a keyring beside a local key, each unwraps what it wrapped.
    let first_id = first.id();
    let keyring = RootKeyring::new(
        Arc::new(first),
        vec![Arc::new(LocalRootKey::new(root.clone()))],
    )
    .unwrap();
    let (id, by_hsm) = keyring.wrap(b"ns_2 v1", &key).unwrap();
    assert_eq!(id, first_id);
    assert_same_key(
        &key,
        &keyring.unwrap(first_id, b"ns_2 v1", &by_hsm).unwrap(),
    );
    assert_eq!(keyring.open_v1(b"row", &v1).unwrap().as_slice(), b"payload");

    // A restart: every session closed (so the process is logged out), then opened anew.
    drop((keyring, again, second));
    let reopened = Pkcs11RootKey::open_with_pin_file(&module, "T", &pin_file, "root-1").unwrap();
    assert_eq!(reopened.id(), first_id);
    assert_same_key(&key, &reopened.unwrap(b"ns_1 v1", &wrapped).unwrap());
    assert_same_key(&key, &reopened.unwrap(b"ns_2 v1", &by_hsm).unwrap());

    // Each failure is one sentence that names what to fix. Token W has no session open, so
    // its PIN is checked (one logged in already is not asked again).
    let wrong_pin = dir.path().join("wrong-pin");
    write_private(&wrong_pin, "4321\n");
    assert_eq!(
        hsm_error(Pkcs11RootKey::open_with_pin_file(
            &module, "W", &wrong_pin, "root-1"
        )),
        format!(
            "the PIN in {} was refused by token \"W\"",
            wrong_pin.display()
        )
    );
    assert_eq!(
        hsm_error(Pkcs11RootKey::open(
            &module,
            "W",
            Zeroizing::new("4321".to_owned()),
            "root-1"
        )),
        "the PIN was refused by token \"W\""
    );
    assert_eq!(
        hsm_error(Pkcs11RootKey::open(&module, "T", pin(), "root-3")),
        "token \"T\" holds no AES key labelled \"root-3\""
    );
    assert_eq!(
        hsm_error(Pkcs11RootKey::open(&module, "X", pin(), "root-1")),
        "no PKCS#11 token is labelled \"X\" (tokens found: T, W)"
    );
    let missing = Path::new("/nonexistent/libpkcs11.so");
    let err = hsm_error(Pkcs11RootKey::open(missing, "T", pin(), "root-1"));
    assert!(
        err.starts_with("cannot load the PKCS#11 module /nonexistent/libpkcs11.so: "),
        "{err}"
    );
    create_key_directly(&module, "T", "twice", true);
    create_key_directly(&module, "T", "twice", true);
    assert_eq!(
        hsm_error(Pkcs11RootKey::open(&module, "T", pin(), "twice")),
        "token \"T\" holds 2 AES keys labelled \"twice\"; the root key must be the only one \
         with its label"
    );
    create_key_directly(&module, "T", "encrypt-only", false);
    assert_eq!(
        hsm_error(Pkcs11RootKey::open(&module, "T", pin(), "encrypt-only")),
        "the AES key labelled \"encrypt-only\" on token \"T\" does not allow both encryption \
         and decryption (CKA_ENCRYPT and CKA_DECRYPT)"
    );

    // The PIN file is held to the root key file's rule.
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&pin_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = Pkcs11RootKey::open_with_pin_file(&module, "T", &pin_file, "root-1").unwrap_err();
    assert!(
        matches!(err, CryptoError::NotPrivate(_)) && err.to_string().contains("chmod 600"),
        "{err}"
    );
}
