//! End-to-end tests of the real `secretstore` binary: started on a free port over a fresh data
//! directory, driven over HTTP, stopped with SIGTERM or killed with SIGKILL, restarted, and its
//! files inspected. One binary, one module per concern.

// Tests fail loudly: an unwrap here is an assertion.
#![allow(clippy::unwrap_used)]

mod server;

mod abuse;
mod audit;
mod backup;
mod durability;
mod faults;
mod keys;
mod metrics;
mod postgres;
mod startup;
mod tampering;
mod tenancy;
mod tls;
