//! What the built app keeps of a root key given in the environment: the key itself (for a
//! reload on SIGHUP, as the ring holds it anyway), never its text.

// Tests fail loudly: an unwrap here is an assertion.
#![allow(clippy::unwrap_used)]

use secretstore_crypto::RootKey;
use secretstore_server::{App, Config, RootKeySource};
use zeroize::Zeroizing;

#[tokio::test]
async fn a_root_key_from_the_environment_is_kept_as_a_key_and_its_text_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::dev(
        dir.path().join("data"),
        RootKeySource::Env {
            variable: "SECRETSTORE_ROOT_KEY".to_owned(),
            value: Zeroizing::new("ab".repeat(32)),
        },
    );
    let app = App::builder(config).build().await.unwrap();
    match app.config.root_keys.as_slice() {
        [RootKeySource::Key(key)] => {
            assert_eq!(
                key.id(),
                RootKey::parse(&"ab".repeat(32), "test").unwrap().id()
            );
        }
        other => panic!("the text of the key is still in the configuration: {other:?}"),
    }
    app.storage.lifecycle.close().await.unwrap();
}
