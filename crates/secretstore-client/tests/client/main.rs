//! Tests of the client against the real secretstore HTTP service started in-process (the real
//! router over a real SQLite store in a temporary directory, served on 127.0.0.1:0), and of its
//! retry behaviour against a small scripted fake server. One binary, one module per concern.

// Tests fail loudly: an unwrap here is an assertion.
#![allow(clippy::unwrap_used)]

mod common;
mod errors;
mod fake;
mod operations;
mod pagination;
mod retries;
mod tenancy;
