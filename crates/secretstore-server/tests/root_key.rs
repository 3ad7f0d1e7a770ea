//! What the built app keeps of its root key: nothing but the keys derived from it.

// Tests fail loudly: an unwrap here is an assertion.
#![allow(clippy::unwrap_used)]

use secretstore_server::{App, Config, RootKeySource};
use zeroize::Zeroizing;

#[tokio::test]
async fn a_root_key_from_the_environment_is_wiped_once_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::dev(
        dir.path().join("data"),
        RootKeySource::Env {
            variable: "SECRETSTORE_ROOT_KEY".to_owned(),
            value: Zeroizing::new("ab".repeat(32)),
        },
    );
    let app = App::builder(config).build().await.unwrap();
    match &app.config.root_key {
        RootKeySource::Env { variable, value } => {
            assert_eq!(variable, "SECRETSTORE_ROOT_KEY");
            assert!(
                value.is_empty(),
                "the key's text is still in the configuration"
            );
        }
        other => panic!("the source changed: {other:?}"),
    }
    app.storage.lifecycle.close().await.unwrap();
}
