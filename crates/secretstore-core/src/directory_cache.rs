//! `DirectoryCache`: recent answers of the three directory look-ups every production request
//! makes (the credential by its hash, the app, whether an account installed the app), so that
//! they need not reach the database each time. Each storage backend keeps one and is
//! responsible for what makes it correct:
//!
//! - a directory write through this handle clears it after the write committed and before the
//!   write answers, so the next request sees a revocation;
//! - where other processes share the database (PostgreSQL), their writes must clear it too
//!   (the backend listens for them; while it cannot, it turns the cache off with `set_enabled`),
//!   and `max_age` bounds how long an entry may be believed if such a signal is ever lost.
//!
//! A look-up that began before a clear must not fill the cache with what it read: `generation`
//! is taken before the read and the fill is dropped if a clear came in between. Unknown
//! credentials are never kept (forged keys must not fill the cache), and the cache starts again
//! empty once it holds `CAPACITY` entries of a kind, so its memory is bounded.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::ids::{AccountId, AppId};
use crate::principal::CredentialId;
use crate::tenancy::{App, Credential};

/// Most entries of one kind kept; past it that kind starts again empty.
pub const CAPACITY: usize = 10_000;

/// One kind of entry, with the instant each was filled.
#[derive(Debug)]
struct Entries<K, V>(Mutex<HashMap<K, (V, Instant)>>);

impl<K: Eq + Hash, V: Clone> Entries<K, V> {
    fn new() -> Self {
        Self(Mutex::new(HashMap::new()))
    }

    fn get(&self, key: &K, max_age: Option<Duration>) -> Option<V> {
        let map = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let (value, filled) = map.get(key)?;
        match max_age {
            Some(age) if filled.elapsed() >= age => None,
            _ => Some(value.clone()),
        }
    }

    fn fill(&self, cache: &DirectoryCache, generation: u64, key: K, value: V) {
        let mut map = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // Checked under the lock: `clear` bumps the generation before it takes this lock, so a
        // fill either sees the new generation or is wiped by the clear that follows.
        if cache.generation() != generation || !cache.enabled() {
            return;
        }
        if map.len() >= CAPACITY {
            map.clear();
        }
        map.insert(key, (value, Instant::now()));
    }

    fn clear(&self) {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clear();
    }
}

/// See the module documentation.
#[derive(Debug)]
pub struct DirectoryCache {
    credentials: Entries<CredentialId, Credential>,
    apps: Entries<AppId, App>,
    installed: Entries<(AppId, AccountId), bool>,
    /// Bumped by every clear, so a read that began before one cannot fill the cache.
    generation: AtomicU64,
    /// How long an entry is believed; `None`: until the next clear.
    max_age: Option<Duration>,
    /// Off: every look-up goes to storage, and nothing is kept.
    enabled: AtomicBool,
}

impl DirectoryCache {
    /// A cache whose entries live until the next clear: for a backend that sees every write
    /// (one process on its database).
    pub fn new() -> Self {
        Self::with_max_age(None)
    }

    /// A cache whose entries are believed for at most `max_age` even without a clear.
    pub fn with_max_age(max_age: Option<Duration>) -> Self {
        Self {
            credentials: Entries::new(),
            apps: Entries::new(),
            installed: Entries::new(),
            generation: AtomicU64::new(0),
            max_age,
            enabled: AtomicBool::new(true),
        }
    }

    /// Turns the cache on or off; either way it starts empty.
    pub fn set_enabled(&self, enabled: bool) {
        self.enabled.store(enabled, Ordering::SeqCst);
        self.clear();
    }

    fn enabled(&self) -> bool {
        self.enabled.load(Ordering::SeqCst)
    }

    /// The credential with this hash: cached, or from `fetch` (then kept if found).
    pub async fn credential_or<F, Fut, E>(
        &self,
        hash: &CredentialId,
        fetch: F,
    ) -> Result<Option<Credential>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<Credential>, E>>,
    {
        if let Some(found) = self.credential(hash) {
            return Ok(Some(found));
        }
        let generation = self.generation();
        let found = fetch().await?;
        if let Some(credential) = &found {
            self.fill_credential(generation, *hash, credential);
        }
        Ok(found)
    }

    /// The app with this id: cached, or from `fetch` (then kept if found).
    pub async fn app_or<F, Fut, E>(&self, id: &AppId, fetch: F) -> Result<Option<App>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<App>, E>>,
    {
        if let Some(app) = self.app(id) {
            return Ok(Some(app));
        }
        let generation = self.generation();
        let found = fetch().await?;
        if let Some(app) = &found {
            self.fill_app(generation, app);
        }
        Ok(found)
    }

    /// Whether `account` installed `app`: cached, or from `fetch` (then kept).
    pub async fn installed_or<F, Fut, E>(
        &self,
        app: &AppId,
        account: &AccountId,
        fetch: F,
    ) -> Result<bool, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<bool, E>>,
    {
        if let Some(yes) = self.installed(app, account) {
            return Ok(yes);
        }
        let generation = self.generation();
        let yes = fetch().await?;
        self.fill_installed(generation, app.clone(), account.clone(), yes);
        Ok(yes)
    }

    /// Take before a look-up whose answer may fill the cache.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    pub fn credential(&self, hash: &CredentialId) -> Option<Credential> {
        if !self.enabled() {
            return None;
        }
        self.credentials.get(hash, self.max_age)
    }

    /// Keeps a credential found by a read that began at `generation`.
    pub fn fill_credential(&self, generation: u64, hash: CredentialId, found: &Credential) {
        self.credentials.fill(self, generation, hash, found.clone());
    }

    pub fn app(&self, id: &AppId) -> Option<App> {
        if !self.enabled() {
            return None;
        }
        self.apps.get(id, self.max_age)
    }

    pub fn fill_app(&self, generation: u64, app: &App) {
        self.apps
            .fill(self, generation, app.id.clone(), app.clone());
    }

    pub fn installed(&self, app: &AppId, account: &AccountId) -> Option<bool> {
        if !self.enabled() {
            return None;
        }
        self.installed
            .get(&(app.clone(), account.clone()), self.max_age)
    }

    pub fn fill_installed(&self, generation: u64, app: AppId, account: AccountId, yes: bool) {
        self.installed.fill(self, generation, (app, account), yes);
    }

    /// A directory write committed (or may have): forget everything.
    pub fn clear(&self) {
        // Generation first: a fill racing this clear sees the new number and gives up.
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.credentials.clear();
        self.apps.clear();
        self.installed.clear();
    }
}

impl Default for DirectoryCache {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::AccountId;

    fn app(id: &str) -> App {
        App {
            id: AppId::parse(id).expect("app id"),
            name: "An app".into(),
            owner: AccountId::parse("acct_owner").expect("account id"),
            created: 1,
        }
    }

    #[test]
    fn a_clear_forgets_everything_and_stops_fills_that_began_before_it() {
        let cache = DirectoryCache::new();
        let before = cache.generation();
        cache.fill_app(before, &app("one"));
        assert!(cache.app(&app("one").id).is_some());
        cache.clear();
        assert!(cache.app(&app("one").id).is_none());
        // A read that began before the clear brings an answer that may be stale.
        cache.fill_app(before, &app("two"));
        assert!(cache.app(&app("two").id).is_none());
        cache.fill_app(cache.generation(), &app("two"));
        assert!(cache.app(&app("two").id).is_some());
    }

    #[test]
    fn entries_older_than_the_max_age_are_not_believed() {
        let cache = DirectoryCache::with_max_age(Some(Duration::ZERO));
        cache.fill_installed(
            cache.generation(),
            app("one").id,
            AccountId::parse("acct_x").expect("account id"),
            true,
        );
        let account = AccountId::parse("acct_x").expect("account id");
        assert_eq!(cache.installed(&app("one").id, &account), None);
    }

    #[test]
    fn a_disabled_cache_keeps_nothing() {
        let cache = DirectoryCache::new();
        cache.set_enabled(false);
        cache.fill_app(cache.generation(), &app("one"));
        assert!(cache.app(&app("one").id).is_none());
        cache.set_enabled(true);
        cache.fill_app(cache.generation(), &app("one"));
        assert!(cache.app(&app("one").id).is_some());
    }

    #[test]
    fn memory_is_bounded() {
        let cache = DirectoryCache::new();
        for n in 0..(CAPACITY + 10) {
            cache.fill_app(cache.generation(), &app(&format!("app{n}")));
        }
        let kept = cache.apps.0.lock().expect("lock").len();
        assert!(kept <= CAPACITY, "{kept} entries");
    }
}
