//! What the service knows about the request it serves, beyond its parameters: the request id
//! every answer carries and the credential that made it. It travels into every `SecretService`
//! call, so that what must be recorded per request (an audit record, a trace) can be added there
//! without changing every signature again.

use crate::audit::AuditTicket;
use crate::principal::CredentialId;

/// `req_` + 20 alphanumerics, made by the HTTP layer for every request. Fixed-size and `Copy`,
/// so handing it around costs no allocation.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestId([u8; RequestId::LEN]);

impl RequestId {
    pub const LEN: usize = 24;

    /// An id from its text; `None` unless it is `req_` and 20 ASCII alphanumerics.
    pub fn new(bytes: [u8; Self::LEN]) -> Option<Self> {
        (bytes.starts_with(b"req_") && bytes[4..].iter().all(u8::is_ascii_alphanumeric))
            .then_some(Self(bytes))
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII is ever stored (see `new`).
        std::str::from_utf8(&self.0).unwrap_or("req_")
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Debug for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RequestId({})", self.as_str())
    }
}

/// The request a service call serves.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// `None` for work no request asked for (the sweep).
    pub request_id: Option<RequestId>,
    pub credential: CredentialId,
    /// Where the request's audit record goes, when auditing is on: a write commits it with
    /// the write.
    pub audit: Option<AuditTicket>,
}
