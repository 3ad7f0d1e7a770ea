//! The schema and its migrations. Each migration is one SQL script; `secretstore_migrations`
//! records which ones the database has. Every server applies what is missing at start-up,
//! inside one transaction that first takes a transaction-scoped advisory lock: when several
//! servers start at once on an empty database, one applies the scripts and the others wait,
//! then find nothing left to do. A database written by a newer binary is refused instead of
//! misread.
//!
//! Append new migrations; never edit one that has shipped. The tables live in the connection's
//! current schema (`search_path`), so one database can hold several stores apart.

use deadpool_postgres::Object;
use secretstore_core::StoreError;

use crate::errors::pg_failure;

/// The advisory lock key of migrations ("secrmigr" in ASCII): one number every server agrees on.
const MIGRATION_LOCK: i64 = 0x7365_6372_6d69_6772;

/// Every migration, in order; the database has applied those whose numbers (1-based) are in
/// `secretstore_migrations`.
pub const MIGRATIONS: &[&str] = &[
    // 1: secrets, idempotency records, store metadata, and the tenant directory of production
    // mode: the same tables as the embedded store's schema, in PostgreSQL's types.
    //
    // `seq` is the order of creation (an identity, never reused); a replace keeps the row and so
    // its place in lists. `scope_user` is '' for the account scope. An idempotency row is a
    // claim while `sealed` is NULL (`claim` names the handle holding it, `claimed_at` starts
    // its lease) and a kept answer once `sealed` is set; `bytes` is what the answer counts
    // towards its owner's quota (`KeptAnswer::bytes`, 0 for a claim), and
    // `idempotency_usage` their sum per owner, kept right by a trigger through every insert,
    // update and delete (the purge included), so checking a quota is one locked row.
    // Directory credentials are kept only as a SHA-256 (`hash`, unique: the look-up of every
    // request) and a hint for display. No foreign keys: a removal deletes what an object owns
    // itself, in one transaction, and counts it.
    "CREATE TABLE secrets (
        seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        app TEXT NOT NULL,
        account TEXT NOT NULL,
        livemode BOOLEAN NOT NULL,
        scope_type TEXT NOT NULL CHECK (scope_type IN ('account', 'user')),
        scope_user TEXT NOT NULL DEFAULT '',
        name TEXT NOT NULL,
        created BIGINT NOT NULL,
        expires_at BIGINT NULL,
        sealed BYTEA NOT NULL,
        -- The scope and name as one 32-byte key (see secrets.rs, `address_key`): what point
        -- look-ups use, and what keeps a (scope, name) from being stored twice.
        address BYTEA NOT NULL UNIQUE CHECK (length(address) = 32)
    );
    -- Serves list (one scope, by seq) and the live count of a scope.
    CREATE INDEX secrets_by_scope
        ON secrets (app, account, livemode, scope_type, scope_user, seq);
    -- Serves the expiry sweep.
    CREATE INDEX secrets_by_expiry ON secrets (expires_at) WHERE expires_at IS NOT NULL;
    -- Serves the removal of an account's or a user's secrets (every app).
    CREATE INDEX secrets_by_account ON secrets (account, scope_type, scope_user);

    CREATE TABLE idempotency (
        credential BYTEA NOT NULL,
        key TEXT NOT NULL,
        claim BYTEA NULL,
        claimed_at BIGINT NULL,
        fingerprint BYTEA NULL,
        sealed BYTEA NULL,
        created BIGINT NULL,
        bytes BIGINT NOT NULL DEFAULT 0,
        PRIMARY KEY (credential, key),
        CHECK ((sealed IS NULL) = (created IS NULL)),
        CHECK (sealed IS NOT NULL OR claimed_at IS NOT NULL)
    );
    -- Serves the sweep of answers past their time to live.
    CREATE INDEX idempotency_by_created ON idempotency (created);
    CREATE TABLE idempotency_usage (
        credential BYTEA PRIMARY KEY,
        bytes BIGINT NOT NULL
    );
    CREATE FUNCTION idempotency_count_bytes() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.bytes <> 0 THEN
            UPDATE idempotency_usage SET bytes = bytes - OLD.bytes
                WHERE credential = OLD.credential;
        END IF;
        IF TG_OP IN ('INSERT', 'UPDATE') AND NEW.bytes <> 0 THEN
            INSERT INTO idempotency_usage (credential, bytes) VALUES (NEW.credential, NEW.bytes)
                ON CONFLICT (credential)
                DO UPDATE SET bytes = idempotency_usage.bytes + EXCLUDED.bytes;
        END IF;
        RETURN NULL;
    END
    $$;
    CREATE TRIGGER idempotency_count_bytes AFTER INSERT OR UPDATE OR DELETE ON idempotency
        FOR EACH ROW EXECUTE FUNCTION idempotency_count_bytes();

    CREATE TABLE meta (
        name TEXT PRIMARY KEY,
        value BYTEA
    );

    CREATE TABLE accounts (
        seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        name TEXT,
        created BIGINT NOT NULL
    );
    CREATE TABLE apps (
        seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL,
        owner TEXT NOT NULL,
        created BIGINT NOT NULL
    );
    CREATE INDEX apps_by_owner ON apps (owner);
    CREATE TABLE installations (
        seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        app TEXT NOT NULL,
        account TEXT NOT NULL,
        created BIGINT NOT NULL,
        UNIQUE (app, account)
    );
    CREATE INDEX installations_by_account ON installations (account);
    CREATE TABLE users (
        seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        id TEXT NOT NULL,
        account TEXT NOT NULL,
        email TEXT,
        created BIGINT NOT NULL,
        UNIQUE (account, id)
    );
    CREATE TABLE api_keys (
        seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        app TEXT NOT NULL,
        livemode BOOLEAN NOT NULL,
        key_type TEXT NOT NULL CHECK (key_type IN ('secret', 'restricted')),
        can_read BOOLEAN NOT NULL,
        can_write BOOLEAN NOT NULL,
        name TEXT,
        created BIGINT NOT NULL,
        expires_at BIGINT NULL,
        revoked BOOLEAN NOT NULL DEFAULT FALSE,
        hash BYTEA NOT NULL UNIQUE,
        hint_prefix TEXT NOT NULL,
        hint_last4 TEXT
    );
    CREATE INDEX api_keys_by_app ON api_keys (app);
    CREATE TABLE user_sessions (
        seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        app TEXT NOT NULL,
        account TEXT NOT NULL,
        user_id TEXT NOT NULL,
        livemode BOOLEAN NOT NULL,
        created BIGINT NOT NULL,
        expires_at BIGINT NOT NULL,
        hash BYTEA NOT NULL UNIQUE,
        hint_prefix TEXT NOT NULL,
        hint_last4 TEXT
    );
    CREATE INDEX user_sessions_by_account ON user_sessions (account, user_id);
    CREATE INDEX user_sessions_by_app ON user_sessions (app);",
    // 2: the audit log (`secretstore_core::audit`), as in the embedded store, and the chain's
    // head: one row every appending transaction locks (`FOR UPDATE`) before it takes the next
    // seq, which gives the chain one order across servers, at the price of serialising every
    // audited request's append (docs/audit.md).
    "CREATE TABLE audit (
        seq BIGINT PRIMARY KEY,
        time_ms BIGINT NOT NULL,
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
        prev BYTEA NOT NULL,
        hash BYTEA NOT NULL
    );
    CREATE TABLE audit_head (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        seq BIGINT NOT NULL,
        hash BYTEA NOT NULL
    );
    INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, decode(repeat('00', 32), 'hex'));
    CREATE TABLE audit_anchor (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        seq BIGINT NOT NULL,
        hash BYTEA NOT NULL,
        pruned_at_ms BIGINT NOT NULL,
        mac BYTEA NOT NULL
    );",
    // 3: the wrapped keys of the key hierarchy (`KeyStore`), as in the embedded store: every
    // version of each owner's key, wrapped by the root key version `root` (its 8-byte id)
    // names; an owner is a namespace (`kind` 'namespace' with its app, account and mode) or one
    // of the server's own keys (`kind` 'service' or 'digest', the other three columns ''). The
    // primary key is what makes one of several servers that race to add an owner's first key
    // win; its text columns compare byte by byte (`COLLATE "C"`) so that it also serves the
    // walk of `keys_not_under` in the order the other backends give, whatever the database's
    // collation. `version` is a BIGINT: a key version is a u32, past INTEGER's range. Nothing
    // deletes a row: a version must stay while anything may still be sealed under it.
    // `keys_root` serves the count per root key version and the search for keys still under
    // an old one.
    "CREATE TABLE keys (
        kind TEXT COLLATE \"C\" NOT NULL,
        app TEXT COLLATE \"C\" NOT NULL,
        account TEXT COLLATE \"C\" NOT NULL,
        mode TEXT COLLATE \"C\" NOT NULL,
        version BIGINT NOT NULL,
        root BYTEA NOT NULL,
        wrapped BYTEA NOT NULL,
        created BIGINT NOT NULL,
        PRIMARY KEY (kind, app, account, mode, version)
    );
    CREATE INDEX keys_root ON keys (root);",
    // 4: users' own keys (crypto-shredding): `kind` 'user' with `account` and `scope_user`
    // (the others ''); every other kind has `scope_user` ''. The primary key gains it. A
    // removal now deletes the keys of what it removes; `keys_account` serves an account's
    // removal, which meets keys of every app on it.
    "ALTER TABLE keys ADD COLUMN scope_user TEXT COLLATE \"C\" NOT NULL DEFAULT '';
    ALTER TABLE keys DROP CONSTRAINT keys_pkey;
    ALTER TABLE keys ADD PRIMARY KEY (kind, app, account, mode, scope_user, version);
    CREATE INDEX keys_account ON keys (account);",
    // 5: a secret's public id loses its unique index, as in the embedded store (its migration
    // 9): nothing looks a secret up by id, an id is 30 random alphanumerics (178 bits), and
    // the index cost every create an insert at a random place in a B-tree.
    "ALTER TABLE secrets DROP CONSTRAINT secrets_id_key;",
    // 6: a root key rotation walks the keys not under the active version by root key version,
    // then owner (`keys_not_under`), from the start of the ranges on either side of it, which
    // this index serves in order: each page reads only the keys it answers. Walked in the
    // owners' order and filtered, as before, every page read again each key already re-wrapped
    // (a rotation of n keys by pages of 100 read about n²/200). It leads with `root`, so it
    // also serves the count per root key version that `keys_root` served.
    "CREATE INDEX keys_by_root_owner ON keys (root, kind, app, account, mode, scope_user, version);
    DROP INDEX keys_root;",
];

/// The schema version this binary writes.
pub const SCHEMA_VERSION: i32 = MIGRATIONS.len() as i32;

/// Brings the database up to `SCHEMA_VERSION`, or refuses one that is newer. Safe to run from
/// any number of servers at once.
pub async fn migrate(client: &mut Object) -> Result<(), StoreError> {
    let tx = client.transaction().await.map_err(|e| pg_failure(&e))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(|e| pg_failure(&e))?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS secretstore_migrations (
             version INTEGER PRIMARY KEY,
             applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
         )",
    )
    .await
    .map_err(|e| pg_failure(&e))?;
    let version: i32 = tx
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM secretstore_migrations",
            &[],
        )
        .await
        .map_err(|e| pg_failure(&e))?
        .get(0);
    if version > SCHEMA_VERSION {
        return Err(StoreError::Internal(format!(
            "the database has schema version {version}, newer than the {SCHEMA_VERSION} this \
             secretstore knows: it was written by a newer secretstore; run that version (or \
             newer) on it"
        )));
    }
    for (index, script) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let number = index as i32 + 1;
        tx.batch_execute(script)
            .await
            .map_err(|e| match pg_failure(&e) {
                StoreError::Unavailable(why) => StoreError::Unavailable(why),
                _ => StoreError::Internal(format!("schema migration {number} failed: {e}")),
            })?;
        tx.execute(
            "INSERT INTO secretstore_migrations (version) VALUES ($1)",
            &[&number],
        )
        .await
        .map_err(|e| pg_failure(&e))?;
    }
    tx.commit().await.map_err(|e| pg_failure(&e))?;
    if version < SCHEMA_VERSION {
        tracing::info!(
            from = version,
            to = SCHEMA_VERSION,
            "migrated database schema"
        );
    }
    Ok(())
}
