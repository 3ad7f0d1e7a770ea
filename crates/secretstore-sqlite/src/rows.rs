//! The mapping between domain values and table columns, shared by the writer and the readers,
//! and the one home of the SQL that locates a scope and decides liveness. A namespace and scope
//! become five columns, always bound as `?1`..`?5` (`ScopeColumns::bind`) and matched by
//! `in_scope!()`; values read back go through the core's own constructors, so a damaged row is
//! an `Internal` error rather than a bad value or a panic.

use rusqlite::{Connection, Statement};
use secretstore_core::{
    AccountId, AppId, KeptAnswer, Namespace, Scope, SealedSecret, SecretAddress, SecretId,
    SecretName, StoreError,
};

use crate::errors::{damaged, sql_failure};

/// The condition that a row of `secrets` belongs to the scope bound as `?1`..`?5`.
macro_rules! in_scope {
    () => {
        "app = ?1 AND account = ?2 AND livemode = ?3 AND scope_type = ?4 AND scope_user = ?5"
    };
}

/// The condition that a row of `secrets` is live (not expired) at the instant bound as `$now`:
/// a secret is gone from the second its `expires_at` names (`secretstore_core::is_live`).
macro_rules! live_at {
    ($now:literal) => {
        concat!("(expires_at IS NULL OR expires_at > ", $now, ")")
    };
}

/// The columns of a secret as `secret_from_row` reads them, in its order.
macro_rules! secret_columns {
    () => {
        "id, name, created, expires_at, sealed"
    };
}

pub(crate) use {in_scope, live_at, secret_columns};

/// The columns that locate one scope of one namespace.
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
            livemode: i64::from(namespace.mode.livemode()),
            scope_type: scope.type_str(),
            scope_user: scope.user().map(|u| u.as_str()).unwrap_or(""),
        }
    }

    /// Binds the scope as `?1`..`?5` of a statement using `in_scope!()`.
    pub fn bind(&self, stmt: &mut Statement<'_>) -> rusqlite::Result<()> {
        stmt.raw_bind_parameter(1, self.app)?;
        stmt.raw_bind_parameter(2, self.account)?;
        stmt.raw_bind_parameter(3, self.livemode)?;
        stmt.raw_bind_parameter(4, self.scope_type)?;
        stmt.raw_bind_parameter(5, self.scope_user)
    }
}

/// A row that starts with `secret_columns!()`, in the given namespace and scope.
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
            address: SecretAddress {
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

/// The namespace of a row of `secrets`, from its `app`, `account` and `livemode`.
pub fn namespace_from_columns(
    app: &str,
    account: &str,
    livemode: bool,
) -> Result<Namespace, StoreError> {
    Ok(Namespace {
        app: AppId::parse(app).map_err(|_| damaged("secrets.app"))?,
        account: AccountId::parse(account).map_err(|_| damaged("secrets.account"))?,
        mode: crate::directory::mode(livemode),
    })
}

/// The scope of a row of `secrets`, from its `scope_type` and `scope_user`.
pub fn scope_from_columns(scope_type: &str, scope_user: &str) -> Result<Scope, StoreError> {
    Scope::from_columns(scope_type, scope_user)
        .ok_or_else(|| damaged("secrets.scope_type, scope_user"))
}

/// An idempotency record's columns back into a `KeptAnswer`.
pub fn kept_answer(
    fingerprint: Vec<u8>,
    sealed: Vec<u8>,
    created: i64,
) -> Result<KeptAnswer, StoreError> {
    Ok(KeptAnswer {
        fingerprint: fingerprint
            .try_into()
            .map_err(|_| damaged("idempotency.fingerprint"))?,
        sealed,
        created,
    })
}

/// The live secret at this address and its `seq`, if any: the lookup a find and a delete share.
pub fn live_secret(
    conn: &Connection,
    address: &SecretAddress,
    now: i64,
) -> Result<Option<(SealedSecret, i64)>, StoreError> {
    const SQL: &str = concat!(
        "SELECT ",
        secret_columns!(),
        ", seq FROM secrets WHERE ",
        in_scope!(),
        " AND name = ?6 AND ",
        live_at!("?7")
    );
    let cols = ScopeColumns::new(&address.namespace, &address.scope);
    let found = (|| -> rusqlite::Result<_> {
        let mut stmt = conn.prepare_cached(SQL)?;
        cols.bind(&mut stmt)?;
        stmt.raw_bind_parameter(6, address.name.as_str())?;
        stmt.raw_bind_parameter(7, now)?;
        let mut rows = stmt.raw_query();
        rows.next()?
            .map(|row| {
                let secret = secret_from_row(row, &address.namespace, &address.scope)?;
                Ok((secret, row.get::<_, i64>(5)?))
            })
            .transpose()
    })()
    .map_err(|e| sql_failure(&e))?;
    match found {
        None => Ok(None),
        Some((secret, seq)) => Ok(Some((secret?, seq))),
    }
}
