//! In-process tests of the whole HTTP service: the real router over a real SQLite store in a
//! temporary directory, with a clock the tests move. One binary, one module per concern.

// Tests fail loudly: an unwrap here is an assertion.
#![allow(clippy::unwrap_used)]

mod common;
mod errors;
mod expiry;
mod idempotency;
mod model;
mod operations;
mod secrecy;
