//! What secretstore's tests share, in one crate (as crates.io keeps its `TestApp`): the
//! in-process app the router tests drive (`TestApp`), the in-process server the client's tests
//! talk to (`TestServer`), the launcher of the real `secretstore` binary for end-to-end, CLI and
//! harness runs (`binary`), and `MemoryStore`, an in-memory backend that passes the storage
//! conformance suite (two handles included), for tests that want storage without files, and
//! scratch PostgreSQL databases and schemas (`postgres`) that tests create and drop.
//!
//! Every app here is built by `secretstore_server::App`, the same wiring as `secretstore serve`.

// Test support fails loudly: an unwrap here is an assertion of the test using it.
#![allow(clippy::unwrap_used)]

pub mod app;
pub mod binary;
pub mod files;
pub mod memory;
pub mod postgres;
pub mod server;

pub use app::{app, Answer, TestApp, TestAppBuilder, KEY, START};
pub use files::{contains, files_under};
pub use memory::MemoryStore;
pub use server::{server, server_with, TestServer};
