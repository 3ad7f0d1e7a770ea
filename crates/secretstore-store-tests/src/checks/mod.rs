//! Every check of the suite, one module per storage trait (and one for the rules that need two
//! handles on one database). Each takes fresh, empty storage and panics on the first broken
//! rule.

mod atomic;
mod audit;
mod directory;
mod idempotency;
mod isolation;
mod keys;
mod lifecycle;
mod listing;
mod purge;
mod secrets;
mod shared;

pub use atomic::*;
pub use audit::*;
pub use directory::*;
pub use idempotency::*;
pub use isolation::*;
pub use keys::*;
pub use lifecycle::*;
pub use listing::*;
pub use purge::*;
pub use secrets::*;
pub use shared::*;
