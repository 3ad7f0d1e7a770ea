//! Each write as one function of the write connection, durable once its batch commits. The
//! writer runs the secrets API's writes (a put, a delete, a commit) without a savepoint
//! (`writer::Job::fails_before_changing`), so each function here checks everything that can
//! refuse it (a full scope, a missing secret, a key that exists, sealing) before its first
//! change: a write that fails then leaves nothing behind without one.

use rusqlite::{params, Connection};
use secretstore_core::{
    is_live, seal_once, Completed, IdempotencyKey, KeptAnswer, PutRequest, SealedSecret,
    SecretAddress, StoreError, Write, Written,
};

use crate::errors::sql_failure;
use crate::rows::{in_scope, live_at, live_secret, parse_id, ScopeColumns};

/// What a put finds at its address: the row's `seq`, `id`, `created` and `expires_at`.
type Existing = (i64, String, i64, Option<i64>);

/// A put's count of its scope's live secrets, up to the limit (`?7`): whether the scope is full
/// is all a put needs, so a create reads at most the limit's index entries however many the
/// scope holds (a scope left above a lowered limit was read whole by every refused create).
pub(crate) const COUNT_LIVE: &str = concat!(
    "SELECT COUNT(*) FROM (SELECT 1 FROM secrets WHERE ",
    in_scope!(),
    " AND ",
    live_at!("?6"),
    " LIMIT ?7)"
);

/// Create or replace; see `SecretStore::put`.
pub fn put(conn: &Connection, request: PutRequest) -> Result<SealedSecret, StoreError> {
    const EXISTING: &str = concat!(
        "SELECT seq, id, created, expires_at FROM secrets WHERE ",
        in_scope!(),
        " AND name = ?6"
    );
    let PutRequest {
        address,
        new_id,
        now,
        expires_at,
        max_per_scope,
        seal,
    } = request;
    let cols = ScopeColumns::new(&address.namespace, &address.scope);
    let existing = (|| -> rusqlite::Result<Option<Existing>> {
        let mut stmt = conn.prepare_cached(EXISTING)?;
        cols.bind(&mut stmt)?;
        stmt.raw_bind_parameter(6, address.name.as_str())?;
        let mut rows = stmt.raw_query();
        rows.next()?
            .map(|row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)))
            .transpose()
    })()
    .map_err(|e| sql_failure(&e))?;

    let mut expired = None;
    if let Some((seq, id, created, old_expiry)) = existing {
        if is_live(old_expiry, now) {
            // Replace in place: same row, so same id, `created` and place in lists.
            let id = parse_id(&id)?;
            let sealed = seal_once(seal, &id)?;
            // SQLite rewrites the entries of every index holding a column the statement
            // assigns, changed or not: `expires_at` is in two, so a replace that keeps its
            // expiry (most do) leaves it alone and writes the table's row only.
            let replaced = if old_expiry == expires_at {
                conn.prepare_cached("UPDATE secrets SET sealed = ?1 WHERE seq = ?2")
                    .and_then(|mut stmt| stmt.execute(params![sealed, seq]))
            } else {
                conn.prepare_cached(
                    "UPDATE secrets SET sealed = ?1, expires_at = ?2 WHERE seq = ?3",
                )
                .and_then(|mut stmt| stmt.execute(params![sealed, expires_at, seq]))
            };
            replaced.map_err(|e| sql_failure(&e))?;
            return Ok(SealedSecret {
                id,
                address,
                created,
                expires_at,
                sealed,
            });
        }
        // Expired: as good as absent, and not counted below; it goes once nothing can fail.
        expired = Some(seq);
    }

    let live = (|| -> rusqlite::Result<i64> {
        let mut stmt = conn.prepare_cached(COUNT_LIVE)?;
        cols.bind(&mut stmt)?;
        stmt.raw_bind_parameter(6, now)?;
        stmt.raw_bind_parameter(7, i64::from(max_per_scope))?;
        let mut rows = stmt.raw_query();
        match rows.next()? {
            Some(row) => row.get(0),
            None => Ok(0),
        }
    })()
    .map_err(|e| sql_failure(&e))?;
    if live >= i64::from(max_per_scope) {
        return Err(StoreError::ScopeFull { max: max_per_scope });
    }
    let sealed = seal_once(seal, &new_id)?;
    if let Some(seq) = expired {
        delete_row(conn, seq)?;
    }
    conn.prepare_cached(
        "INSERT INTO secrets
             (id, app, account, livemode, scope_type, scope_user, name, created, expires_at, sealed)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            new_id.as_str(),
            cols.app,
            cols.account,
            cols.livemode,
            cols.scope_type,
            cols.scope_user,
            address.name.as_str(),
            now,
            expires_at,
            sealed
        ])
    })
    .map_err(|e| sql_failure(&e))?;
    Ok(SealedSecret {
        id: new_id,
        address,
        created: now,
        expires_at,
        sealed,
    })
}

fn delete_row(conn: &Connection, seq: i64) -> Result<(), StoreError> {
    conn.prepare_cached("DELETE FROM secrets WHERE seq = ?1")
        .and_then(|mut stmt| stmt.execute([seq]))
        .map_err(|e| sql_failure(&e))?;
    Ok(())
}

/// Removes the live secret at this address; an expired one stays for the sweep.
pub fn delete(
    conn: &Connection,
    address: &SecretAddress,
    now: i64,
) -> Result<Option<SealedSecret>, StoreError> {
    let Some((secret, seq)) = live_secret(conn, address, now)? else {
        return Ok(None);
    };
    delete_row(conn, seq)?;
    Ok(Some(secret))
}

/// Several writes in order; the first failure fails them all. Each write checks what can
/// refuse it before it changes anything, and a new key can fail only because its owner has
/// that version (`Write::AddKey`): that is checked for every key first, and the keys are
/// inserted last (nothing else in a commit reads them), so that a put beside a user's first
/// key fails, if it does, before the commit changed anything. Should a write fail after an
/// earlier one changed something all the same (two puts into one full scope), the writer
/// undoes the whole batch (`writer::Job::fails_before_changing`).
pub fn commit(conn: &Connection, writes: Vec<Write>) -> Result<Vec<Written>, StoreError> {
    if !writes.iter().any(|write| matches!(write, Write::AddKey(_))) {
        // The common commit (a write and its audit record): nothing to reorder, so no
        // partition, renumbering and sort on the writer thread.
        return writes.into_iter().map(|write| apply(conn, write)).collect();
    }
    let (keys, others): (Vec<_>, Vec<_>) = writes
        .into_iter()
        .enumerate()
        .partition(|(_, write)| matches!(write, Write::AddKey(_)));
    for (_, write) in &keys {
        if let Write::AddKey(key) = write {
            crate::keys::check_new_key(conn, key)?;
        }
    }
    let mut written = others
        .into_iter()
        .chain(keys)
        .map(|(at, write)| apply(conn, write).map(|done| (at, done)))
        .collect::<Result<Vec<_>, _>>()?;
    written.sort_by_key(|(at, _)| *at);
    Ok(written.into_iter().map(|(_, done)| done).collect())
}

fn apply(conn: &Connection, write: Write) -> Result<Written, StoreError> {
    match write {
        Write::PutSecret(request) => put(conn, request).map(Written::PutSecret),
        Write::DeleteSecret { address, now } => {
            delete(conn, &address, now).map(Written::DeleteSecret)
        }
        Write::DeleteLive { address, now } => match delete(conn, &address, now)? {
            Some(secret) => Ok(Written::DeleteSecret(Some(secret))),
            None => Err(StoreError::Missing(format!(
                "secret {}",
                address.name.as_str()
            ))),
        },
        Write::Audit(append) => crate::audit::append(conn, append).map(Written::Audit),
        Write::AddKey(key) => crate::keys::add_new_key(conn, key).map(Written::AddKey),
    }
}

/// Deletes up to `limit` expired secrets; the caller repeats until less than a full step went,
/// so one sweep never holds the writer long. `expires_at <= now` is the complement of
/// `live_at!` written so that the partial index on `expires_at` serves it.
pub fn purge_secrets(conn: &Connection, now: i64, limit: u32) -> Result<u64, StoreError> {
    conn.prepare_cached(
        "DELETE FROM secrets WHERE seq IN
             (SELECT seq FROM secrets WHERE expires_at <= ?1 LIMIT ?2)",
    )
    .and_then(|mut stmt| stmt.execute(params![now, limit]))
    .map(|n| n as u64)
    .map_err(|e| sql_failure(&e))
}

/// Deletes up to `limit` kept answers created at or before `kept_after`.
pub fn purge_kept_answers(
    conn: &Connection,
    kept_after: i64,
    limit: u32,
) -> Result<u64, StoreError> {
    conn.prepare_cached(
        "DELETE FROM idempotency WHERE rowid IN
             (SELECT rowid FROM idempotency WHERE created <= ?1 LIMIT ?2)",
    )
    .and_then(|mut stmt| stmt.execute(params![kept_after, limit]))
    .map(|n| n as u64)
    .map_err(|e| sql_failure(&e))
}

/// Deletes the rows of `idempotency_usage` that count nothing any more (owners whose answers
/// have all been purged), so the table holds only owners with answers.
pub fn forget_idle_owners(conn: &Connection) -> Result<u64, StoreError> {
    conn.prepare_cached("DELETE FROM idempotency_usage WHERE bytes <= 0")
        .and_then(|mut stmt| stmt.execute([]))
        .map(|n| n as u64)
        .map_err(|e| sql_failure(&e))
}

/// Keeps the answer, unless its owner's answers would then hold more than `quota` bytes; see
/// `IdempotencyStore::idempotency_complete`. The writer runs one job at a time, so the check
/// and the insert cannot be split by another keep.
pub fn keep_answer(
    conn: &Connection,
    key: &IdempotencyKey,
    answer: &KeptAnswer,
    quota: u64,
) -> Result<Completed, StoreError> {
    let credential = &key.credential.as_bytes()[..];
    // The owner's bytes, less those of the stale answer of this key that this one replaces.
    let used: i64 = conn
        .prepare_cached(
            "SELECT COALESCE((SELECT bytes FROM idempotency_usage WHERE credential = ?1), 0)
                  - COALESCE((SELECT bytes FROM idempotency
                              WHERE credential = ?1 AND key = ?2), 0)",
        )
        .and_then(|mut stmt| stmt.query_row(params![credential, key.key], |row| row.get(0)))
        .map_err(|e| sql_failure(&e))?;
    let bytes = answer.bytes(key);
    if u64::try_from(used).unwrap_or(0).saturating_add(bytes) > quota {
        return Ok(Completed::OverQuota);
    }
    // An upsert, not INSERT OR REPLACE: a replacing delete would not run the usage triggers.
    conn.prepare_cached(
        "INSERT INTO idempotency (credential, key, fingerprint, sealed, created, bytes)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (credential, key) DO UPDATE SET fingerprint = excluded.fingerprint,
             sealed = excluded.sealed, created = excluded.created, bytes = excluded.bytes",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            credential,
            key.key,
            &answer.fingerprint[..],
            answer.sealed,
            answer.created,
            i64::try_from(bytes).unwrap_or(i64::MAX)
        ])
    })
    .map_err(|e| sql_failure(&e))?;
    Ok(Completed::Kept)
}

pub fn meta_put(conn: &Connection, name: &str, value: &[u8]) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO meta (name, value) VALUES (?1, ?2)
         ON CONFLICT (name) DO UPDATE SET value = excluded.value",
    )
    .and_then(|mut stmt| stmt.execute(params![name, value]))
    .map_err(|e| sql_failure(&e))?;
    Ok(())
}
