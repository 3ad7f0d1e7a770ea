//! The test app (`secretstore_testkit::TestApp`: the production router over a fresh data
//! directory on a manual clock) and the helpers these tests share.

pub use secretstore_testkit::app::{app, enc, method, Answer, TestApp, KEY, START};
pub use secretstore_testkit::{contains, files_under};

/// The app's SQLite database, opened beside the server (to look at or tamper with rows).
pub fn database(app: &TestApp) -> rusqlite::Connection {
    rusqlite::Connection::open(app.data_dir().join("secretstore.db")).unwrap()
}
