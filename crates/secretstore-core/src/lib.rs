//! The secretstore domain, free of I/O: what a secret is (`SecretName`, `Payload`, `Scope`,
//! `Namespace`, `SecretId`, `SecretAddress`), the rules a request must satisfy before anything is
//! stored (`limits`), who may do what (`principal`: `Principal` and `authorize`), the storage
//! traits every backend implements (`store`), and `SecretService`, which decides what a set,
//! find, delete or list means and seals or opens payloads on the way through.
//!
//! The HTTP layer above turns wire parameters into these types; the storage layer below only ever
//! sees sealed bytes. Nothing here knows HTTP or which database it runs on. docs/api.md describes
//! the API these types serve.

pub mod audit;
pub mod clock;
pub mod context;
pub mod directory_cache;
pub mod error;
pub mod idempotency;
pub mod ids;
pub mod keys;
pub mod limits;
pub mod metrics;
pub mod principal;
pub mod secret;
pub mod service;
pub mod store;
pub mod tenancy;
mod user_filter;
pub mod write_health;

pub use audit::{
    AuditAnchor, AuditChain, AuditEntry, AuditEvent, AuditFilter, AuditSlot, AuditTicket, Break,
    ChainHash, Outcome, Verified, Verifier,
};
pub use clock::{Clock, ManualClock, SystemClock};
pub use context::{RequestContext, RequestId};
pub use directory_cache::DirectoryCache;
pub use error::{CoreError, CursorKind, SealError, StoreError};
pub use idempotency::{ClaimTimes, Completed, IdempotencyClaim, IdempotencyKey, KeptAnswer};
pub use ids::{AccountId, AppId, Mode, Namespace, SecretId, UserId};
pub use keys::{KeyError, KeyManager, NewUserKey, RootStatus, Rotated, Sealing};
pub use limits::Limits;
pub use principal::{
    authorize, Access, CredentialHint, CredentialId, Denied, Permission, Permissions, Principal,
};
pub use secret::{
    check_length, check_text, is_live, ExpiresAt, InvalidExpiry, InvalidValue, Payload, Scope,
    SecretAddress, SecretName,
};
pub use service::{
    payload_aad, DeleteRequest, FindRequest, ListPage, ListRequest, Secret, SecretService,
    SetRequest,
};
pub use store::{
    seal_once, AtomicWrites, AuditAppend, AuditStore, Directory, IdempotencyStore,
    InstallationFilter, KeyOwner, KeyStore, Lifecycle, ListCursor, ListQuery, MetaStore,
    PutRequest, Reseal, RootUse, Seal, SealedSecret, SecretStore, Store, StoredKey, StoredList,
    Write, Written, AUDIT_SYNC_WITHIN_MS,
};
pub use tenancy::{
    Account, ApiKeyId, ApiKeyRecord, App, Credential, DirectoryPage, Installation, InstallationId,
    KeyType, Listed, Removed, SessionId, User, UserSession,
};
pub use write_health::WriteHealth;
