//! The mapping between domain values and table columns, shared by the writer and the readers.
//! A namespace and scope become five columns; values read back go through the core's own
//! constructors, so a damaged row is an `Internal` error rather than a bad value or a panic.

use secretstore_core::{
    IdempotencyKey, KeptAnswer, Namespace, Scope, SealedSecret, SecretId, SecretKey, SecretName,
    StoreError,
};

use crate::errors::damaged;

/// The columns that locate one scope of one namespace, ready to bind as `?1`..`?5`.
#[derive(Debug, Clone, Copy)]
pub struct ScopeColumns<'a> {
    pub app: &'a str,
    pub account: &'a str,
    pub livemode: i64,
    pub scope_type: &'a str,
    /// '' for the account scope (see the schema).
    pub scope_user: &'a str,
}

impl<'a> ScopeColumns<'a> {
    pub fn new(namespace: &'a Namespace, scope: &'a Scope) -> Self {
        Self {
            app: namespace.app.as_str(),
            account: namespace.account.as_str(),
            livemode: i64::from(namespace.mode.is_live()),
            scope_type: scope.type_str(),
            scope_user: scope.user().map(|u| u.as_str()).unwrap_or(""),
        }
    }
}

/// A row of `id, name, created, expires_at, sealed` (in that order) in the given namespace and
/// scope.
pub fn secret_from_row(
    row: &rusqlite::Row<'_>,
    namespace: &Namespace,
    scope: &Scope,
) -> rusqlite::Result<Result<SealedSecret, StoreError>> {
    let id: String = row.get(0)?;
    let name: String = row.get(1)?;
    let created: i64 = row.get(2)?;
    let expires_at: Option<i64> = row.get(3)?;
    let sealed: Vec<u8> = row.get(4)?;
    Ok(parse_id(&id).and_then(|id| {
        let name = SecretName::parse(&name).map_err(|_| damaged("secrets.name"))?;
        Ok(SealedSecret {
            id,
            key: SecretKey {
                namespace: namespace.clone(),
                scope: scope.clone(),
                name,
            },
            created,
            expires_at,
            sealed,
        })
    }))
}

pub fn parse_id(id: &str) -> Result<SecretId, StoreError> {
    SecretId::parse(id).map_err(|_| damaged("secrets.id"))
}

/// An idempotency record's columns back into a `KeptAnswer`.
pub fn kept_answer(
    fingerprint: Vec<u8>,
    status: i64,
    sealed_body: Vec<u8>,
    created: i64,
) -> Result<KeptAnswer, StoreError> {
    Ok(KeptAnswer {
        fingerprint: fingerprint
            .try_into()
            .map_err(|_| damaged("idempotency.fingerprint"))?,
        status: u16::try_from(status).map_err(|_| damaged("idempotency.status"))?,
        sealed_body,
        created,
    })
}

/// The credential hash as bound to SQL.
pub fn credential(key: &IdempotencyKey) -> &[u8] {
    &key.credential
}

/// The live secret with this key and its `seq`, if any: the lookup a find and a delete share.
pub fn live_secret(
    conn: &rusqlite::Connection,
    key: &SecretKey,
    now: i64,
) -> Result<Option<(SealedSecret, i64)>, StoreError> {
    use rusqlite::OptionalExtension as _;
    let cols = ScopeColumns::new(&key.namespace, &key.scope);
    let found = conn
        .prepare_cached(
            "SELECT id, name, created, expires_at, sealed, seq FROM secrets
             WHERE app = ?1 AND account = ?2 AND livemode = ?3 AND scope_type = ?4
               AND scope_user = ?5 AND name = ?6 AND (expires_at IS NULL OR expires_at > ?7)",
        )
        .and_then(|mut stmt| {
            stmt.query_row(
                rusqlite::params![
                    cols.app,
                    cols.account,
                    cols.livemode,
                    cols.scope_type,
                    cols.scope_user,
                    key.name.as_str(),
                    now
                ],
                |row| {
                    let secret = secret_from_row(row, &key.namespace, &key.scope)?;
                    Ok((secret, row.get::<_, i64>(5)?))
                },
            )
            .optional()
        })
        .map_err(|e| crate::errors::sql_failure(&e))?;
    match found {
        None => Ok(None),
        Some((secret, seq)) => Ok(Some((secret?, seq))),
    }
}
