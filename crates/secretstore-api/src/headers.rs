//! The names of the headers the API reads or writes on every request, made once. A header
//! looked up or inserted by a `&str` name has that name parsed and checked again each time,
//! which every request paid several times over (callgrind: about 1,400 instructions a find).

use http::HeaderName;

pub const STRIPE_ACCOUNT: HeaderName = HeaderName::from_static("stripe-account");
pub const STRIPE_VERSION: HeaderName = HeaderName::from_static("stripe-version");
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
pub const REQUEST_ID: HeaderName = HeaderName::from_static("request-id");
pub const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");
pub const ORIGINAL_REQUEST: HeaderName = HeaderName::from_static("original-request");
