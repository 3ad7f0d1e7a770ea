//! The secretstore domain, free of I/O: what a secret is (`SecretName`, `Payload`, `Scope`,
//! `Namespace`, `SecretId`), the rules a request must satisfy before anything is stored
//! (`limits`), the `Store` trait every storage backend implements, and `SecretService`, which
//! decides what a set, find, delete or list means and seals or opens payloads on the way through.
//!
//! The HTTP layer above turns wire parameters into these types; the storage layer below only ever
//! sees sealed bytes. Nothing here knows HTTP or which database it runs on.

pub mod clock;
pub mod error;
pub mod idempotency;
pub mod ids;
pub mod limits;
pub mod secret;
pub mod service;
pub mod store;

pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{CoreError, CursorKind, StoreError};
pub use idempotency::{IdempotencyClaim, IdempotencyKey, KeptAnswer};
pub use ids::{AccountId, AppId, Mode, Namespace, SecretId, UserId};
pub use limits::Limits;
pub use secret::{
    is_live, ExpiresAt, InvalidExpiry, InvalidValue, Payload, Scope, SecretKey, SecretName,
};
pub use service::{payload_aad, ListPage, ListRequest, Secret, SecretService, SetRequest};
pub use store::{ListCursor, ListQuery, PutRequest, Seal, SealedSecret, Store, StoredList};
