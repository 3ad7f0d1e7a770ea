//! The schema and its migrations. Each migration is one SQL script; the database records how
//! many it has applied in `PRAGMA user_version`, so opening applies only the missing ones, all
//! in one transaction, and a database written by a newer binary is refused instead of misread.
//!
//! Append new migrations; never edit one that has shipped.

use rusqlite::{Connection, TransactionBehavior};
use secretstore_core::StoreError;

use crate::errors::sql_failure;

/// Every migration, in order; `user_version` = how many of them the database has.
pub const MIGRATIONS: &[&str] = &[
    // 1: secrets, idempotency records, store metadata.
    //
    // `seq` is the order of creation (AUTOINCREMENT so a deleted newest row's number is never
    // given again); a replace keeps the row and so its place in lists. `scope_user` is '' for the
    // account scope so the uniqueness constraint treats it as a value (NULLs never collide).
    // Column names `id`, `name` and `sealed` are relied upon by the end-to-end tampering tests.
    "CREATE TABLE secrets (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        app TEXT NOT NULL,
        account TEXT NOT NULL,
        livemode INTEGER NOT NULL CHECK (livemode IN (0, 1)),
        scope_type TEXT NOT NULL CHECK (scope_type IN ('account', 'user')),
        scope_user TEXT NOT NULL DEFAULT '',
        name TEXT NOT NULL,
        created INTEGER NOT NULL,
        expires_at INTEGER NULL,
        sealed BLOB NOT NULL,
        UNIQUE (app, account, livemode, scope_type, scope_user, name)
    );
    -- Serves list (one scope, by seq) and the live count of a scope.
    CREATE INDEX secrets_by_scope
        ON secrets (app, account, livemode, scope_type, scope_user, seq);
    -- Serves the expiry sweep.
    CREATE INDEX secrets_by_expiry ON secrets (expires_at) WHERE expires_at IS NOT NULL;

    CREATE TABLE idempotency (
        credential BLOB NOT NULL,
        key TEXT NOT NULL,
        fingerprint BLOB NOT NULL,
        status INTEGER NOT NULL,
        sealed_body BLOB NOT NULL,
        created INTEGER NOT NULL,
        PRIMARY KEY (credential, key)
    );
    -- Serves the sweep of records past their time to live.
    CREATE INDEX idempotency_by_created ON idempotency (created);

    CREATE TABLE meta (
        name TEXT PRIMARY KEY,
        value BLOB
    );",
    // 2: kept idempotent answers become one opaque sealed blob (status and body sealed
    // together, so neither can be edited apart from the other), without a status column.
    // Answers kept by schema 1 cannot be turned into the new form without the key; they are
    // dropped. They were replayed for at most 24 hours, so only a retry spanning the upgrade
    // runs again instead of being replayed.
    "DROP TABLE idempotency;
    CREATE TABLE idempotency (
        credential BLOB NOT NULL,
        key TEXT NOT NULL,
        fingerprint BLOB NOT NULL,
        sealed BLOB NOT NULL,
        created INTEGER NOT NULL,
        PRIMARY KEY (credential, key)
    );
    -- Serves the sweep of answers past their time to live.
    CREATE INDEX idempotency_by_created ON idempotency (created);",
    // 3: the tenant directory of production mode. `seq` orders listings (newest first); no
    // foreign keys: a removal deletes what an object owns itself, in one transaction, and
    // counts it. Credentials are kept only as a SHA-256 (`hash`, unique: the look-up of every
    // request) and a hint for display.
    "CREATE TABLE accounts (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        name TEXT,
        created INTEGER NOT NULL
    );
    CREATE TABLE apps (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL,
        owner TEXT NOT NULL,
        created INTEGER NOT NULL
    );
    CREATE INDEX apps_by_owner ON apps (owner);
    CREATE TABLE installations (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        app TEXT NOT NULL,
        account TEXT NOT NULL,
        created INTEGER NOT NULL,
        UNIQUE (app, account)
    );
    CREATE INDEX installations_by_account ON installations (account);
    CREATE TABLE users (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL,
        account TEXT NOT NULL,
        email TEXT,
        created INTEGER NOT NULL,
        UNIQUE (account, id)
    );
    CREATE TABLE api_keys (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        app TEXT NOT NULL,
        livemode INTEGER NOT NULL CHECK (livemode IN (0, 1)),
        key_type TEXT NOT NULL CHECK (key_type IN ('secret', 'restricted')),
        can_read INTEGER NOT NULL,
        can_write INTEGER NOT NULL,
        name TEXT,
        created INTEGER NOT NULL,
        expires_at INTEGER NULL,
        revoked INTEGER NOT NULL DEFAULT 0,
        hash BLOB NOT NULL UNIQUE,
        hint_prefix TEXT NOT NULL,
        hint_last4 TEXT
    );
    CREATE INDEX api_keys_by_app ON api_keys (app);
    CREATE TABLE user_sessions (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        app TEXT NOT NULL,
        account TEXT NOT NULL,
        user TEXT NOT NULL,
        livemode INTEGER NOT NULL CHECK (livemode IN (0, 1)),
        created INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        hash BLOB NOT NULL UNIQUE,
        hint_prefix TEXT NOT NULL,
        hint_last4 TEXT
    );
    CREATE INDEX user_sessions_by_account ON user_sessions (account, user);
    CREATE INDEX user_sessions_by_app ON user_sessions (app);
    -- Serves the removal of an account's or a user's secrets (every app).
    CREATE INDEX secrets_by_account ON secrets (account, scope_type, scope_user);",
    // 4: a kept answer is sealed with everything stored beside it as associated data, its
    // creation time now included, so an edited `created` fails to open like any other edit.
    // Answers kept by schema 3 were sealed without it and would no longer open: they are
    // dropped, as by migration 2 (only a retry spanning the upgrade runs again).
    "DELETE FROM idempotency;",
    // 5: each owner's kept answers are counted, in bytes, for its quota. `bytes` is what an
    // answer counts (`KeptAnswer::bytes`: its sealed blob, its key and two 32-byte digests;
    // computed here for the answers already kept); `idempotency_usage` is their sum per owner,
    // kept right by the triggers through every insert, update and delete (the purge included),
    // so checking a quota is one look-up.
    "ALTER TABLE idempotency ADD COLUMN bytes INTEGER NOT NULL DEFAULT 0;
    UPDATE idempotency SET bytes = length(sealed) + length(CAST(key AS BLOB)) + 64;
    CREATE TABLE idempotency_usage (
        credential BLOB PRIMARY KEY,
        bytes INTEGER NOT NULL
    ) WITHOUT ROWID;
    INSERT INTO idempotency_usage (credential, bytes)
        SELECT credential, SUM(bytes) FROM idempotency GROUP BY credential;
    CREATE TRIGGER idempotency_usage_insert AFTER INSERT ON idempotency BEGIN
        INSERT INTO idempotency_usage (credential, bytes) VALUES (NEW.credential, NEW.bytes)
            ON CONFLICT (credential) DO UPDATE SET bytes = bytes + excluded.bytes;
    END;
    CREATE TRIGGER idempotency_usage_delete AFTER DELETE ON idempotency BEGIN
        UPDATE idempotency_usage SET bytes = bytes - OLD.bytes WHERE credential = OLD.credential;
    END;
    CREATE TRIGGER idempotency_usage_update AFTER UPDATE OF credential, bytes ON idempotency
    BEGIN
        UPDATE idempotency_usage SET bytes = bytes - OLD.bytes WHERE credential = OLD.credential;
        INSERT INTO idempotency_usage (credential, bytes) VALUES (NEW.credential, NEW.bytes)
            ON CONFLICT (credential) DO UPDATE SET bytes = bytes + excluded.bytes;
    END;",
    // 6: the audit log (`secretstore_core::audit`): one row per request, hash-chained. `seq`
    // is given by the writer (the last one plus one), never reused, so a gap is a removal.
    // `audit_anchor` holds the one anchor a prune leaves. No index beyond the seq: appends sit
    // on every request's path, and a search reads newest first.
    "CREATE TABLE audit (
        seq INTEGER PRIMARY KEY,
        time_ms INTEGER NOT NULL,
        request_id TEXT NOT NULL,
        credential_kind TEXT,
        credential TEXT,
        app TEXT,
        account TEXT,
        mode TEXT,
        scope_type TEXT,
        user_id TEXT,
        operation TEXT NOT NULL,
        secret_name TEXT,
        client TEXT,
        status INTEGER NOT NULL,
        code TEXT,
        prev BLOB NOT NULL,
        hash BLOB NOT NULL
    );
    CREATE TABLE audit_anchor (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        seq INTEGER NOT NULL,
        hash BLOB NOT NULL,
        pruned_at_ms INTEGER NOT NULL,
        mac BLOB NOT NULL
    );",
    // 7: the wrapped keys of the key hierarchy (`KeyStore`): every version of each owner's key,
    // wrapped by the root key version `root` (its 8-byte id) names. An owner is a namespace
    // (`kind` 'namespace' with its app, account and mode) or one of the server's own keys
    // (`kind` 'service' or 'digest', the other three columns ''), so that one primary key,
    // which also orders a rotation's walk, covers both. Nothing deletes a row: a version must
    // stay while anything may still be sealed under it. `keys_root` serves the count per root
    // key version and the search for keys still under an old one.
    "CREATE TABLE keys (
        kind TEXT NOT NULL,
        app TEXT NOT NULL,
        account TEXT NOT NULL,
        mode TEXT NOT NULL,
        version INTEGER NOT NULL,
        root BLOB NOT NULL,
        wrapped BLOB NOT NULL,
        created INTEGER NOT NULL,
        PRIMARY KEY (kind, app, account, mode, version)
    );
    CREATE INDEX keys_root ON keys (root);",
    // 8: users' own keys (crypto-shredding): `kind` 'user' with `account` and `scope_user`
    // (the others ''), so the primary key gains `scope_user` ('' for every other kind) and
    // the table is made again, as SQLite changes no primary key in place. A removal now
    // deletes the keys of what it removes; `keys_account` serves an account's removal, which
    // meets keys of every app on it.
    "CREATE TABLE keys_8 (
        kind TEXT NOT NULL,
        app TEXT NOT NULL,
        account TEXT NOT NULL,
        mode TEXT NOT NULL,
        scope_user TEXT NOT NULL,
        version INTEGER NOT NULL,
        root BLOB NOT NULL,
        wrapped BLOB NOT NULL,
        created INTEGER NOT NULL,
        PRIMARY KEY (kind, app, account, mode, scope_user, version)
    );
    INSERT INTO keys_8 (kind, app, account, mode, scope_user, version, root, wrapped, created)
        SELECT kind, app, account, mode, '', version, root, wrapped, created FROM keys;
    DROP TABLE keys;
    ALTER TABLE keys_8 RENAME TO keys;
    CREATE INDEX keys_root ON keys (root);
    CREATE INDEX keys_account ON keys (account);",
    // 9: a secret's public id loses its unique index. Nothing looks a secret up by id, and an
    // id is 30 random alphanumerics (178 bits), so the index only cost every create an insert
    // at a random place: one more page written per create, then checkpointed again (20 KB
    // against 12 KB per create, and a third fewer creates per second). SQLite changes no
    // constraint in place, so the table is made again, its indexes with it; the AUTOINCREMENT
    // counter moves to the new table first (DROP TABLE deletes the old one's), so a seq is
    // still never given twice.
    "CREATE TABLE secrets_9 (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL,
        app TEXT NOT NULL,
        account TEXT NOT NULL,
        livemode INTEGER NOT NULL CHECK (livemode IN (0, 1)),
        scope_type TEXT NOT NULL CHECK (scope_type IN ('account', 'user')),
        scope_user TEXT NOT NULL DEFAULT '',
        name TEXT NOT NULL,
        created INTEGER NOT NULL,
        expires_at INTEGER NULL,
        sealed BLOB NOT NULL,
        UNIQUE (app, account, livemode, scope_type, scope_user, name)
    );
    INSERT INTO secrets_9 (seq, id, app, account, livemode, scope_type, scope_user, name,
            created, expires_at, sealed)
        SELECT seq, id, app, account, livemode, scope_type, scope_user, name, created,
            expires_at, sealed
        FROM secrets ORDER BY seq;
    DELETE FROM sqlite_sequence WHERE name = 'secrets_9';
    INSERT INTO sqlite_sequence (name, seq)
        SELECT 'secrets_9', seq FROM sqlite_sequence WHERE name = 'secrets';
    DROP TABLE secrets;
    ALTER TABLE secrets_9 RENAME TO secrets;
    CREATE INDEX secrets_by_scope
        ON secrets (app, account, livemode, scope_type, scope_user, seq);
    CREATE INDEX secrets_by_expiry ON secrets (expires_at) WHERE expires_at IS NOT NULL;
    CREATE INDEX secrets_by_account ON secrets (account, scope_type, scope_user);",
    // 10: `secrets_by_scope` also holds `expires_at`, so a create's count of its scope's live
    // secrets reads the index alone instead of looking each row up in the table (100,000
    // names set at 1,000 to a scope: 10.0 s against 11.5-12.0 s, `scripts/profile find` with
    // SECRETS=100000), and a list looks up only the rows it keeps.
    "DROP INDEX secrets_by_scope;
    CREATE INDEX secrets_by_scope
        ON secrets (app, account, livemode, scope_type, scope_user, seq, expires_at);",
    // 11: no index leads with the account any more. `secrets_by_account` and `keys_account`
    // served only the removal of an account or a user (an admin request), yet every create
    // inserted into both: without them a create's writer work went from 26.8-27.2 to
    // 23.9-25.1 us (creates in scopes of their own, alternating builds). A removal walks the
    // apps instead (`directory::apps_with_secrets`), which every other index leads with.
    "DROP INDEX secrets_by_account;
    DROP INDEX keys_account;",
];

/// The schema version this binary writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// Brings the database up to `SCHEMA_VERSION`, or refuses one that is newer.
pub fn migrate(conn: &mut Connection, path_for_messages: &str) -> Result<(), StoreError> {
    // IMMEDIATE takes the write lock before reading the version, so two processes could never
    // both decide to apply the same migration (the directory lock already prevents that).
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| sql_failure(&e))?;
    let version: u32 = tx
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(|e| sql_failure(&e))?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::Internal(format!(
            "the database {path_for_messages} has schema version {version}, newer than the \
             {SCHEMA_VERSION} this secretstore knows: it was written by a newer secretstore; \
             run that version (or newer) on it"
        )));
    }
    for (index, script) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        tx.execute_batch(script)
            .map_err(|e| match sql_failure(&e) {
                // A full disk is worth retrying; a script that fails on this database is not.
                StoreError::Unavailable(why) => StoreError::Unavailable(why),
                _ => StoreError::Internal(format!("schema migration {} failed: {e}", index + 1)),
            })?;
    }
    if version < SCHEMA_VERSION {
        // PRAGMA takes no bound parameters; the value is our own constant.
        tx.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))
            .map_err(|e| sql_failure(&e))?;
        tracing::info!(
            from = version,
            to = SCHEMA_VERSION,
            "migrated database schema"
        );
    }
    tx.commit().map_err(|e| sql_failure(&e))
}
