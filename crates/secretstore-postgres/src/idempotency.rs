//! Idempotency records in PostgreSQL, shared by every server on the database. A claim is a row
//! without an answer, stamped with the time it was taken and a token of the handle that took it;
//! a kept answer is the same row once `sealed` is set. Claiming is one upsert that succeeds only
//! where nobody holds the key: no row, an abandoned claim (taken at or before `held_after`: its
//! server died without finishing) or a stale answer (kept at or before `kept_after`). Otherwise
//! the row says whether the key is in flight or answered. Releasing deletes the row only while
//! it still carries this handle's token, so a handle whose lease ran out never frees a claim
//! that another server has taken since.
//!
//! Completing checks the owner's quota on its row of `idempotency_usage`, locked for the
//! transaction: completes of one owner, through any server, take turns there, so the quota
//! holds exactly; a trigger keeps that row equal to the sum of the owner's answers. Purges
//! take turns too (an advisory lock; a server that finds it taken leaves the purge to the one
//! holding it): the trigger updates owners' rows in whatever order the purge deletes, and two
//! purges deleting for the same owners in different orders would otherwise deadlock.

use std::collections::HashMap;

use deadpool_postgres::{GenericClient, Object};
use parking_lot::Mutex;
use secretstore_core::{
    ClaimTimes, Completed, IdempotencyClaim, IdempotencyKey, KeptAnswer, StoreError,
};

use crate::errors::{damaged, pg_failure};
use crate::secrets::{execute, query_opt};

/// The tokens of the claims this handle holds.
#[derive(Debug, Default)]
pub struct Claims(Mutex<HashMap<IdempotencyKey, [u8; 16]>>);

impl Claims {
    fn token() -> Result<[u8; 16], StoreError> {
        let mut token = [0u8; 16];
        getrandom::getrandom(&mut token)
            .map_err(|e| StoreError::Internal(format!("no randomness for a claim token: {e}")))?;
        Ok(token)
    }
}

/// How often a claim retries when the row it looked at changed under it (completed, released,
/// or purged between the upsert and the read).
const ATTEMPTS: usize = 4;

pub async fn claim<C: GenericClient>(
    client: &C,
    claims: &Claims,
    key: &IdempotencyKey,
    at: ClaimTimes,
) -> Result<IdempotencyClaim, StoreError> {
    const CLAIM: &str = "INSERT INTO idempotency (credential, key, claim, claimed_at) \
         VALUES ($1, $2, $3, $4) \
         ON CONFLICT (credential, key) DO UPDATE SET claim = EXCLUDED.claim, \
             claimed_at = EXCLUDED.claimed_at, fingerprint = NULL, sealed = NULL, \
             created = NULL, bytes = 0 \
         WHERE (idempotency.sealed IS NULL AND idempotency.claimed_at <= $5) \
            OR (idempotency.sealed IS NOT NULL AND idempotency.created <= $6) \
         RETURNING 1";
    const FOUND: &str = "SELECT fingerprint, sealed, created FROM idempotency \
                         WHERE credential = $1 AND key = $2";
    let credential = &key.credential.as_bytes()[..];
    let token = Claims::token()?;
    for _ in 0..ATTEMPTS {
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 6] = [
            &credential,
            &key.key,
            &&token[..],
            &at.now,
            &at.held_after,
            &at.kept_after,
        ];
        if query_opt(client, CLAIM, &params).await?.is_some() {
            claims.0.lock().insert(key.clone(), token);
            return Ok(IdempotencyClaim::Claimed);
        }
        let Some(row) = query_opt(client, FOUND, &[&credential, &key.key]).await? else {
            // Released or purged since the upsert: try again.
            continue;
        };
        let get = |e: tokio_postgres::Error| pg_failure(&e);
        let sealed: Option<Vec<u8>> = row.try_get(1).map_err(get)?;
        let Some(sealed) = sealed else {
            return Ok(IdempotencyClaim::InFlight);
        };
        let created: i64 = row
            .try_get::<_, Option<i64>>(2)
            .map_err(get)?
            .ok_or_else(|| damaged("idempotency.created"))?;
        if created <= at.kept_after {
            // Became stale between the upsert and this read: the next upsert takes it.
            continue;
        }
        let fingerprint: Option<Vec<u8>> = row.try_get(0).map_err(get)?;
        let fingerprint = fingerprint
            .and_then(|f| <[u8; 32]>::try_from(f).ok())
            .ok_or_else(|| damaged("idempotency.fingerprint"))?;
        return Ok(IdempotencyClaim::Kept(KeptAnswer {
            fingerprint,
            sealed,
            created,
        }));
    }
    // The row kept changing under us: someone is busy with the key.
    Ok(IdempotencyClaim::InFlight)
}

/// Deletes a claim (`$3`: its token) while it is still only a claim.
const RELEASE: &str = "DELETE FROM idempotency WHERE credential = $1 AND key = $2 \
                       AND claim = $3 AND sealed IS NULL";

/// Keeps the answer, durably, whoever holds the row now (if this handle's lease ran out and
/// another server ran the request too, the later answer is the one kept), unless the owner's
/// quota has no room for it: then this handle's claim is released instead.
pub async fn complete(
    client: &mut Object,
    claims: &Claims,
    key: &IdempotencyKey,
    answer: &KeptAnswer,
    quota: u64,
) -> Result<Completed, StoreError> {
    // Creates the owner's row at 0 if it has none, and locks it either way.
    const USAGE: &str = "INSERT INTO idempotency_usage (credential, bytes) VALUES ($1, 0) \
         ON CONFLICT (credential) DO UPDATE SET bytes = idempotency_usage.bytes RETURNING bytes";
    const REPLACED: &str = "SELECT bytes FROM idempotency WHERE credential = $1 AND key = $2";
    const KEEP: &str = "INSERT INTO idempotency (credential, key, fingerprint, sealed, created, \
         bytes) VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (credential, key) DO UPDATE SET claim = NULL, claimed_at = NULL, \
             fingerprint = EXCLUDED.fingerprint, sealed = EXCLUDED.sealed, \
             created = EXCLUDED.created, bytes = EXCLUDED.bytes";
    let credential = &key.credential.as_bytes()[..];
    let get = |e: tokio_postgres::Error| pg_failure(&e);
    let result = async {
        let tx = client.transaction().await.map_err(|e| pg_failure(&e))?;
        let used: i64 = query_opt(&tx, USAGE, &[&credential])
            .await?
            .ok_or_else(|| damaged("idempotency_usage"))?
            .try_get(0)
            .map_err(get)?;
        let replaced: i64 = match query_opt(&tx, REPLACED, &[&credential, &key.key]).await? {
            Some(row) => row.try_get(0).map_err(get)?,
            None => 0,
        };
        let bytes = answer.bytes(key);
        let owner_after = u64::try_from(used - replaced)
            .unwrap_or(0)
            .saturating_add(bytes);
        let completed = if owner_after > quota {
            let token = claims.0.lock().get(key).copied();
            if let Some(token) = token {
                execute(&tx, RELEASE, &[&credential, &key.key, &&token[..]]).await?;
            }
            Completed::OverQuota
        } else {
            let stored = i64::try_from(bytes).unwrap_or(i64::MAX);
            let fingerprint = &answer.fingerprint[..];
            let row: [&(dyn tokio_postgres::types::ToSql + Sync); 6] = [
                &credential,
                &key.key,
                &fingerprint,
                &answer.sealed,
                &answer.created,
                &stored,
            ];
            execute(&tx, KEEP, &row).await?;
            Completed::Kept
        };
        tx.commit().await.map_err(|e| pg_failure(&e))?;
        Ok(completed)
    }
    .await;
    // Kept or not, this handle no longer holds the claim: a failed keep leaves the row to its
    // lease, as if this server had died.
    claims.0.lock().remove(key);
    result
}

pub async fn release<C: GenericClient>(
    client: &C,
    claims: &Claims,
    key: &IdempotencyKey,
) -> Result<(), StoreError> {
    let Some(token) = claims.0.lock().remove(key) else {
        return Ok(());
    };
    let credential = &key.credential.as_bytes()[..];
    execute(client, RELEASE, &[&credential, &key.key, &&token[..]]).await?;
    Ok(())
}

/// Deletes up to `$2` answers kept at or before `$1`, and claims abandoned as long ago.
const PURGE: &str = "DELETE FROM idempotency WHERE ctid IN (SELECT ctid FROM idempotency \
                     WHERE created <= $1 OR (sealed IS NULL AND claimed_at <= $1) \
                     LIMIT $2 FOR UPDATE SKIP LOCKED)";

/// The advisory lock purges of idempotency records take turns on ("secridem" in ASCII).
const PURGE_LOCK: i64 = 0x7365_6372_6964_656d;

/// One step of the purge in a transaction of its own: up to `limit` records deleted, and once
/// the step is the last (less than a full one), the usage rows of owners left with nothing.
/// `None` when another server is purging right now.
pub async fn purge_step(
    client: &mut Object,
    kept_after: i64,
    limit: i64,
) -> Result<Option<u64>, StoreError> {
    let tx = client.transaction().await.map_err(|e| pg_failure(&e))?;
    let locked: bool = query_opt(&tx, "SELECT pg_try_advisory_xact_lock($1)", &[&PURGE_LOCK])
        .await?
        .map(|row| row.try_get(0))
        .transpose()
        .map_err(|e| pg_failure(&e))?
        .unwrap_or(false);
    if !locked {
        return Ok(None);
    }
    let removed = execute(&tx, PURGE, &[&kept_after, &limit]).await?;
    if removed < limit as u64 {
        execute(&tx, "DELETE FROM idempotency_usage WHERE bytes <= 0", &[]).await?;
    }
    tx.commit().await.map_err(|e| pg_failure(&e))?;
    Ok(Some(removed))
}
