//! What the service knows about the request it serves, beyond its parameters: the request id
//! every answer carries and the credential that made it. It travels into every `SecretService`
//! call, so that what must be recorded per request (an audit record, a trace) can be added there
//! without changing every signature again.

use crate::principal::CredentialId;

/// `req_` + 20 alphanumerics, made by the HTTP layer for every request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestId(pub String);

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The request a service call serves.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub request_id: RequestId,
    pub credential: CredentialId,
}
