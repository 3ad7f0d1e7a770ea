//! Who is asking: the API key from `Authorization` (Bearer, or Basic with the key as user name)
//! and the account from `Stripe-Account`, resolved by an `Authenticator` into a core
//! `Principal` that names the namespace the request acts in and what it may do there. The
//! `Caller` extractor does that (and the rate limit) for every /v1 handler.
//!
//! Two authenticators: dev mode's accepts any well-formed key and takes the app from it;
//! production mode's (`DirectoryAuthenticator`) looks the key's hash up in the directory, then
//! checks its mode, type, expiry and the account it asks for (section 10 of the contract).

use async_trait::async_trait;
use axum::extract::FromRequestParts;
use base64::Engine as _;
use http::request::Parts;
use http::HeaderMap;
use secretstore_core::{
    AccountId, AppId, AuditSlot, Clock, Credential, CredentialHint, CredentialId, Directory,
    KeyType, Mode, Namespace, Permissions, Principal, StoreError,
};
use std::sync::Arc;
use subtle::ConstantTimeEq as _;
use zeroize::Zeroizing;

use crate::error::ApiError;
use crate::AppState;

/// A credential's kind: `sk_` reaches everything the app may; `rk_` carries explicit
/// permissions; `ek_` is a user session's (production mode only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Secret,
    Restricted,
    Session,
}

impl KeyKind {
    /// The kind as the audit log records it (`Principal::credential_ref`).
    pub fn audit_name(self) -> &'static str {
        match self {
            KeyKind::Secret => "secret_key",
            KeyKind::Restricted => "restricted_key",
            KeyKind::Session => "user_session",
        }
    }
}

/// An API key taken apart. Its text is wiped on drop and never printed whole.
pub struct ApiKey {
    pub kind: KeyKind,
    pub mode: Mode,
    text: Zeroizing<String>,
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiKey({})", mask_key(&self.text))
    }
}

const PREFIXES: [(&str, KeyKind, Mode); 6] = [
    ("sk_test_", KeyKind::Secret, Mode::Test),
    ("sk_live_", KeyKind::Secret, Mode::Live),
    ("rk_test_", KeyKind::Restricted, Mode::Test),
    ("rk_live_", KeyKind::Restricted, Mode::Live),
    ("ek_test_", KeyKind::Session, Mode::Test),
    ("ek_live_", KeyKind::Session, Mode::Live),
];

/// Longest key accepted, prefix included.
const MAX_KEY_LEN: usize = 255;

/// A key whose text after the prefix is at least this long is shown with its last four
/// characters; a shorter one would reveal too much of itself.
const MASK_SHOWS_TAIL_FROM: usize = 12;

impl ApiKey {
    /// The key's text after its prefix (`abc` in `sk_test_abc`).
    pub fn body(&self) -> &str {
        &self.text[8..]
    }

    /// The key's identity (a hash of it), for idempotency records and rate limits.
    pub fn credential_id(&self) -> CredentialId {
        CredentialId::of(self.text.as_bytes())
    }

    pub fn masked(&self) -> String {
        mask_key(&self.text)
    }

    /// The key as it may be shown, without allocating: what `mask_key` prints.
    pub fn hint(&self) -> CredentialHint {
        let body = self.body().as_bytes();
        let last4 = (body.len() >= MASK_SHOWS_TAIL_FROM).then(|| {
            [
                body[body.len() - 4],
                body[body.len() - 3],
                body[body.len() - 2],
                body[body.len() - 1],
            ]
        });
        let prefix = PREFIXES
            .iter()
            .find(|(_, kind, mode)| *kind == self.kind && *mode == self.mode)
            .map_or("", |(prefix, _, _)| *prefix);
        CredentialHint::new(prefix, last4)
    }

    fn parse(text: Zeroizing<String>) -> Result<Self, AuthError> {
        let found = PREFIXES
            .iter()
            .find(|(prefix, _, _)| text.starts_with(prefix));
        match found {
            Some(&(_, kind, mode))
                if text.len() <= MAX_KEY_LEN
                    && text.len() > 8
                    && text[8..]
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_') =>
            {
                Ok(Self { kind, mode, text })
            }
            _ => Err(AuthError::InvalidKey {
                masked: mask_key(&text),
            }),
        }
    }
}

/// `sk_test_****` and the last four characters, as Stripe shows keys in errors. Short or
/// unrecognisable keys show less, so an error never reveals most of a key.
pub fn mask_key(key: &str) -> String {
    let printable: String = key
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(MAX_KEY_LEN)
        .collect();
    let (prefix, rest) = match PREFIXES.iter().find(|(p, _, _)| printable.starts_with(p)) {
        Some((p, _, _)) => (*p, &printable[p.len()..]),
        None => ("", printable.as_str()),
    };
    if rest.len() >= MASK_SHOWS_TAIL_FROM {
        format!("{prefix}****{}", &rest[rest.len() - 4..])
    } else {
        format!("{prefix}****")
    }
}

/// Why a request was not let in. The 401s show the key only masked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    Missing,
    InvalidKey {
        masked: String,
    },
    /// A well-formed credential this server did not issue (or whose app is gone).
    Unknown {
        masked: String,
    },
    /// A provisioned key that was revoked or whose roll's grace is over, or an ended session.
    Ended {
        masked: String,
    },
    /// `Stripe-Account` is not an account id.
    AccountInvalid,
    /// The credential may not act for the account it named.
    AccountDenied {
        masked: String,
        account: String,
    },
    /// The directory could not be read.
    Storage(StoreError),
}

/// Reads the API key from `Authorization`: `Bearer <key>`, `Basic base64(<key>:)` or
/// `Basic <key>` (Stripe accepts all three).
pub fn api_key_from_headers(headers: &HeaderMap) -> Result<ApiKey, AuthError> {
    let Some(value) = headers.get(http::header::AUTHORIZATION) else {
        return Err(AuthError::Missing);
    };
    let value = value.to_str().map_err(|_| AuthError::InvalidKey {
        masked: "****".into(),
    })?;
    let value = value.trim();
    let (scheme, credentials) = value.split_once(' ').unwrap_or((value, ""));
    let credentials = credentials.trim();
    let text = if scheme.eq_ignore_ascii_case("bearer") {
        Zeroizing::new(credentials.to_owned())
    } else if scheme.eq_ignore_ascii_case("basic") {
        match base64::engine::general_purpose::STANDARD.decode(credentials) {
            Ok(decoded) => {
                let decoded = Zeroizing::new(decoded);
                match std::str::from_utf8(&decoded) {
                    Ok(text) => Zeroizing::new(text.split(':').next().unwrap_or("").to_owned()),
                    Err(_) => {
                        return Err(AuthError::InvalidKey {
                            masked: "****".into(),
                        })
                    }
                }
            }
            Err(_) => Zeroizing::new(credentials.trim_end_matches(':').to_owned()),
        }
    } else {
        return Err(AuthError::InvalidKey {
            masked: mask_key(value),
        });
    };
    if text.is_empty() {
        return Err(AuthError::Missing);
    }
    ApiKey::parse(text)
}

/// `Stripe-Account`, if given (trimmed).
fn stripe_account(headers: &HeaderMap) -> Result<Option<String>, AuthError> {
    match headers.get(crate::headers::STRIPE_ACCOUNT) {
        None => Ok(None),
        Some(value) => value
            .to_str()
            .map(|text| Some(text.trim().to_owned()))
            .map_err(|_| AuthError::AccountInvalid),
    }
}

/// Resolves a key and an optional `Stripe-Account` into a `Principal`.
#[async_trait]
pub trait Authenticator: Send + Sync + std::fmt::Debug + 'static {
    async fn authenticate(
        &self,
        key: &ApiKey,
        account: Option<&str>,
    ) -> Result<Principal, AuthError>;
}

/// Dev mode (docs/api.md, "Dev mode"): every well-formed key is accepted; the text after the
/// mode prefix names the app; any `acct_...` is an installation of it. Without `Stripe-Account`,
/// requests act on the app's own account, `acct_dev_<app>`. Secret and restricted keys alike may
/// read and write.
#[derive(Debug, Default, Clone, Copy)]
pub struct DevAuthenticator;

#[async_trait]
impl Authenticator for DevAuthenticator {
    async fn authenticate(
        &self,
        key: &ApiKey,
        account: Option<&str>,
    ) -> Result<Principal, AuthError> {
        let app = AppId::parse(key.body())
            .ok()
            .filter(|_| key.kind != KeyKind::Session)
            .ok_or_else(|| AuthError::InvalidKey {
                masked: key.masked(),
            })?;
        let account = match account {
            Some(account) => AccountId::parse(account).map_err(|_| AuthError::AccountInvalid)?,
            None => {
                AccountId::parse(&format!("acct_dev_{app}")).map_err(|_| AuthError::InvalidKey {
                    masked: key.masked(),
                })?
            }
        };
        let permissions = Permissions::ALL;
        Ok(Principal {
            namespace: Namespace {
                app,
                account,
                mode: key.mode,
            },
            credential: key.credential_id(),
            shown: key.hint(),
            permissions,
            session_user: None,
            issued: None,
        })
    }
}

/// Production mode: every credential is checked against the directory, looked up by its
/// SHA-256 and the stored hash compared in constant time. A key reaches its app's namespaces on
/// the accounts that installed the app (`Stripe-Account`; without it, the app's owner); a user
/// session only its own account, with its user's scope (docs/api.md §6).
#[derive(Debug)]
pub struct DirectoryAuthenticator {
    directory: Arc<dyn Directory>,
    clock: Arc<dyn Clock>,
}

impl DirectoryAuthenticator {
    pub fn new(directory: Arc<dyn Directory>, clock: Arc<dyn Clock>) -> Self {
        Self { directory, clock }
    }

    /// Logs a refusal (prefix and last four characters only); `crate::metrics` counts it by
    /// reason once it becomes the answer.
    fn refuse(&self, key: &ApiKey, reason: &'static str, err: AuthError) -> AuthError {
        tracing::warn!(credential = %key.hint(), reason, "authentication failed");
        err
    }
}

#[async_trait]
impl Authenticator for DirectoryAuthenticator {
    async fn authenticate(
        &self,
        key: &ApiKey,
        account: Option<&str>,
    ) -> Result<Principal, AuthError> {
        let hash = key.credential_id();
        let unknown = || AuthError::Unknown {
            masked: key.masked(),
        };
        let found = self
            .directory
            .credential(&hash)
            .await
            .map_err(AuthError::Storage)?;
        let now = self.clock.now();
        let asked = account
            .map(|a| AccountId::parse(a).map_err(|_| AuthError::AccountInvalid))
            .transpose()?;
        let denied = |asked: &AccountId| AuthError::AccountDenied {
            masked: key.masked(),
            account: asked.to_string(),
        };
        match found {
            Some(Credential::Key(record))
                if bool::from(record.hash.as_bytes().ct_eq(hash.as_bytes()))
                    && record.mode == key.mode
                    && matches!(
                        (record.key_type, key.kind),
                        (KeyType::Secret, KeyKind::Secret)
                            | (KeyType::Restricted, KeyKind::Restricted)
                    ) =>
            {
                if !record.usable_at(now) {
                    let ended = AuthError::Ended {
                        masked: key.masked(),
                    };
                    return Err(self.refuse(key, "revoked or expired", ended));
                }
                let account = match asked {
                    Some(asked) => {
                        let installed = self
                            .directory
                            .installed(&record.app, &asked)
                            .await
                            .map_err(AuthError::Storage)?;
                        if !installed {
                            return Err(self.refuse(key, "account not installed", denied(&asked)));
                        }
                        asked
                    }
                    None => match self
                        .directory
                        .app(&record.app)
                        .await
                        .map_err(AuthError::Storage)?
                    {
                        Some(app) => app.owner,
                        None => return Err(self.refuse(key, "app removed", unknown())),
                    },
                };
                let permissions = match record.key_type {
                    KeyType::Secret => Permissions::ALL,
                    KeyType::Restricted => record.permissions,
                };
                Ok(Principal {
                    namespace: Namespace {
                        app: record.app,
                        account,
                        mode: record.mode,
                    },
                    credential: hash,
                    shown: key.hint(),
                    permissions,
                    session_user: None,
                    issued: Some(record.id.as_str().to_owned()),
                })
            }
            Some(Credential::Session(session))
                if bool::from(session.hash.as_bytes().ct_eq(hash.as_bytes()))
                    && session.mode == key.mode
                    && key.kind == KeyKind::Session =>
            {
                if !session.usable_at(now) {
                    let ended = AuthError::Ended {
                        masked: key.masked(),
                    };
                    return Err(self.refuse(key, "session ended", ended));
                }
                if let Some(asked) = asked.filter(|asked| *asked != session.account) {
                    return Err(self.refuse(key, "another account", denied(&asked)));
                }
                Ok(Principal {
                    namespace: Namespace {
                        app: session.app,
                        account: session.account,
                        mode: session.mode,
                    },
                    credential: hash,
                    shown: key.hint(),
                    permissions: Permissions::ALL,
                    session_user: Some(session.user),
                    issued: Some(session.id.as_str().to_owned()),
                })
            }
            _ => Err(self.refuse(key, "unknown credential", unknown())),
        }
    }
}

/// The authenticated caller of a /v1 request, within its rate limit. Extracting it is the
/// first step of every operation: nothing is read or decided before the caller is known.
#[derive(Debug, Clone)]
pub struct Caller(pub Principal);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let slot = parts.extensions.get::<Arc<AuditSlot>>().cloned();
        let key = api_key_from_headers(&parts.headers)?;
        let authenticated = match stripe_account(&parts.headers) {
            Ok(account) => state.auth.authenticate(&key, account.as_deref()).await,
            Err(refused) => Err(refused),
        };
        let principal = match authenticated {
            Ok(principal) => principal,
            Err(refused) => {
                if let Some(slot) = &slot {
                    // Not authenticated: the credential is known only by its hint.
                    let hint = key.hint();
                    slot.note(|event| {
                        event.credential_kind = Some(key.kind.audit_name().into());
                        event.credential = Some(hint.to_string());
                    });
                }
                return Err(refused.into());
            }
        };
        if let Some(slot) = &slot {
            crate::audit::note_principal(slot, &principal);
        }
        if let Some(limit) = &state.rate_limit {
            limit.check(&principal.credential, &principal.namespace.account)?;
        }
        Ok(Caller(principal))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(auth: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::AUTHORIZATION,
            HeaderValue::from_str(auth).unwrap(),
        );
        h
    }

    #[test]
    fn bearer_and_both_basic_forms() {
        let bearer = api_key_from_headers(&headers("Bearer sk_test_abc")).unwrap();
        assert_eq!(bearer.body(), "abc");
        let encoded = base64::engine::general_purpose::STANDARD.encode("sk_live_abc:");
        let basic = api_key_from_headers(&headers(&format!("Basic {encoded}"))).unwrap();
        assert_eq!((basic.body(), basic.mode), ("abc", Mode::Live));
        let raw = api_key_from_headers(&headers("Basic rk_test_abc")).unwrap();
        assert_eq!(raw.kind, KeyKind::Restricted);
    }

    #[test]
    fn missing_and_malformed_keys() {
        assert_eq!(
            api_key_from_headers(&HeaderMap::new()).unwrap_err(),
            AuthError::Missing
        );
        assert_eq!(
            api_key_from_headers(&headers("Bearer ")).unwrap_err(),
            AuthError::Missing
        );
        for bad in [
            "Bearer sk_test_",
            "Bearer bogus",
            "Bearer pk_test_abc",
            "Token sk_test_abc",
            "Bearer sk_test_a-b",
        ] {
            assert!(
                matches!(
                    api_key_from_headers(&headers(bad)),
                    Err(AuthError::InvalidKey { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn masks_show_prefix_and_last_four_only() {
        assert_eq!(
            mask_key("sk_test_51HabcdefghijklmnWXYZ"),
            "sk_test_****WXYZ"
        );
        assert_eq!(mask_key("sk_test_short"), "sk_test_****");
        assert_eq!(mask_key("bogus"), "****");
        let key = api_key_from_headers(&headers("Bearer sk_test_0123456789abcdef")).unwrap();
        assert!(!format!("{key:?}").contains("0123456789"));
        // The allocation-free hint shows exactly what the mask shows.
        for text in [
            "sk_test_0123456789abcdef",
            "rk_live_short",
            "sk_live_0123456789ab",
        ] {
            let key = api_key_from_headers(&headers(&format!("Bearer {text}"))).unwrap();
            assert_eq!(key.hint().to_string(), mask_key(text), "{text}");
        }
    }

    #[tokio::test]
    async fn dev_mode_names_app_account_and_mode() {
        let key = api_key_from_headers(&headers("Bearer sk_live_myapp")).unwrap();
        let p = DevAuthenticator
            .authenticate(&key, Some("acct_123"))
            .await
            .unwrap();
        assert_eq!(p.namespace.app.as_str(), "myapp");
        assert_eq!(p.namespace.account.as_str(), "acct_123");
        assert_eq!(p.namespace.mode, Mode::Live);
        assert_eq!(p.credential, CredentialId::of(b"sk_live_myapp"));
        assert_eq!(p.shown.to_string(), key.masked());
        let own = DevAuthenticator.authenticate(&key, None).await.unwrap();
        assert_eq!(own.namespace.account.as_str(), "acct_dev_myapp");
        assert_eq!(
            DevAuthenticator
                .authenticate(&key, Some("usr_1"))
                .await
                .unwrap_err(),
            AuthError::AccountInvalid
        );
        let restricted = api_key_from_headers(&headers("Bearer rk_test_myapp")).unwrap();
        let r = DevAuthenticator
            .authenticate(&restricted, None)
            .await
            .unwrap();
        assert_eq!(r.permissions, Permissions::ALL);
    }
}
