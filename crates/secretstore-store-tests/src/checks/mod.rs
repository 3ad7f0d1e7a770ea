//! Every check of the suite, grouped by the part of the trait it holds to account. Each takes a
//! fresh, empty store and panics on the first broken rule.

mod idempotency;
mod isolation;
mod lifecycle;
mod listing;
mod purge;
mod secrets;

pub use idempotency::*;
pub use isolation::*;
pub use lifecycle::*;
pub use listing::*;
pub use purge::*;
pub use secrets::*;
