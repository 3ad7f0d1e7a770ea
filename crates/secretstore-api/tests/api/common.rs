//! The test app (`secretstore_testkit::TestApp`: the production router over a fresh data
//! directory on a manual clock) and the helpers these tests share.

pub use secretstore_testkit::app::{app, enc, method, Answer, TestApp, KEY, START};
pub use secretstore_testkit::{contains, files_under};
