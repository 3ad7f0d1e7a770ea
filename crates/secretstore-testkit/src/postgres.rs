//! Scratch PostgreSQL for tests: each test gets a database of its own (`ScratchDatabase`, for
//! servers started as separate processes) or a schema of its own (`ScratchSchema`, cheaper, for
//! in-process stores), created empty and dropped when the guard goes, so runs never see each
//! other's data.
//!
//! The server comes from `SECRETSTORE_TEST_DATABASE_URL` (default
//! `postgres://root@127.0.0.1:5432/test`, the machine's own PostgreSQL with trust auth), whose
//! role must be allowed to create databases. A test that needs PostgreSQL and cannot reach it
//! fails, naming the variable, unless `SECRETSTORE_SKIP_POSTGRES_TESTS=1` asks to skip such tests
//! on a machine without one: `available()` then says no.

use std::time::Duration;

use tokio_postgres::NoTls;

/// The variable naming the test server, and its default.
pub const URL_VARIABLE: &str = "SECRETSTORE_TEST_DATABASE_URL";
pub const DEFAULT_URL: &str = "postgres://root@127.0.0.1:5432/test";

/// The URL of the server tests use.
pub fn server_url() -> String {
    std::env::var(URL_VARIABLE).unwrap_or_else(|_| DEFAULT_URL.to_owned())
}

/// Whether PostgreSQL tests should run: false only when the operator asked to skip them.
pub fn available() -> bool {
    let skip = std::env::var("SECRETSTORE_SKIP_POSTGRES_TESTS").unwrap_or_default();
    if matches!(skip.as_str(), "1" | "true" | "yes") {
        eprintln!("skipped: SECRETSTORE_SKIP_POSTGRES_TESTS is set");
        return false;
    }
    true
}

fn random_name(prefix: &str) -> String {
    let mut bytes = [0u8; 8];
    getrandom::getrandom(&mut bytes).unwrap();
    let suffix: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{prefix}_{suffix}")
}

/// Runs one statement on the test server, on a thread of its own with its own runtime, so
/// guards can use it from `Drop` whatever runtime (or none) is around.
fn admin(url: String, sql: String) -> Result<(), String> {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        runtime.block_on(async move {
            let mut config: tokio_postgres::Config =
                url.parse().map_err(|e| format!("{URL_VARIABLE}: {e}"))?;
            config.connect_timeout(Duration::from_secs(5));
            let (client, connection) = config.connect(NoTls).await.map_err(|e| {
                format!(
                    "cannot reach the test PostgreSQL at {URL_VARIABLE} (default \
                     {DEFAULT_URL}): {e}; start it (.ci/run does) or set \
                     SECRETSTORE_SKIP_POSTGRES_TESTS=1"
                )
            })?;
            let driver = tokio::spawn(connection);
            let result = client.batch_execute(&sql).await.map_err(|e| e.to_string());
            drop(client);
            let _ = driver.await;
            result
        })
    })
    .join()
    .map_err(|_| "the admin thread panicked".to_owned())?
}

/// A database of its own, dropped (with any connections still open to it) when this goes.
#[derive(Debug)]
pub struct ScratchDatabase {
    name: String,
    url: String,
}

impl ScratchDatabase {
    /// Creates an empty database on the test server. Panics with a clear message if the server
    /// cannot be reached.
    pub fn create() -> Self {
        let name = random_name("secretstore_test");
        let server = server_url();
        admin(server.clone(), format!("CREATE DATABASE {name}")).unwrap();
        let url = with_database(&server, &name);
        Self { name, url }
    }

    /// The URL of this database, for `--database-url`.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Keeps the database (for a failed run someone will look at); returns its URL.
    pub fn keep(self) -> String {
        let url = self.url.clone();
        std::mem::forget(self);
        url
    }
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        if let Err(e) = admin(
            server_url(),
            format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        ) {
            eprintln!("could not drop the scratch database {}: {e}", self.name);
        }
    }
}

/// `url` with its database name replaced by `database`.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[authority_start..]
        .find('/')
        .map_or(base.len(), |i| authority_start + i);
    let mut out = format!("{}/{database}", &base[..path_start]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

/// A schema of its own in the test database, dropped with everything in it when this goes.
#[derive(Debug)]
pub struct ScratchSchema {
    name: String,
}

impl ScratchSchema {
    pub fn create() -> Self {
        let name = random_name("secretstore_test");
        admin(server_url(), format!("CREATE SCHEMA {name}")).unwrap();
        Self { name }
    }

    /// A connection configuration whose tables live in this schema.
    pub fn config(&self) -> tokio_postgres::Config {
        let mut config: tokio_postgres::Config = server_url().parse().unwrap();
        config.options(format!("-c search_path={}", self.name));
        config
    }
}

impl Drop for ScratchSchema {
    fn drop(&mut self) {
        if let Err(e) = admin(
            server_url(),
            format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name),
        ) {
            eprintln!("could not drop the scratch schema {}: {e}", self.name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn the_database_of_a_url_is_replaced() {
        assert_eq!(
            with_database("postgres://root@127.0.0.1:5432/test", "x"),
            "postgres://root@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgres://u:p@h/test?sslmode=disable", "x"),
            "postgres://u:p@h/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h", "x"), "postgres://h/x");
    }
}
