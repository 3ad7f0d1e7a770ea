//! A read cache of the first pages of lists (a list without a cursor), so that a scope listed
//! again and again is answered without a query on a reader thread: the hand-off to the reader
//! and back, and the query itself, whose connection has to read its pages again after every
//! commit (audit records commit all the time), were about 40% of a list's CPU
//! (`scripts/profile list`). Like the secrets' cache (`cache.rs`) it holds only what storage
//! holds: metadata and ciphertext, never a plaintext payload.
//!
//! A page stays right until a write touches its scope or one of the secrets it depends on
//! expires. So the writer forgets a scope's pages after every commit that touched the scope and
//! before it answers (`writer::settle`), a read fills the cache only if no write touched the
//! scope's shard since the read began (a per-shard generation number, as for secrets), and a
//! page is served only while every secret it lists is live and so is the first one past it (the
//! row that made `has_more` true): the earliest of their expiries is kept with the page
//! (`valid_until`). Expiry can only shorten a scope, so a page that said there was no more stays
//! right until a write.

use parking_lot::MutexGuard;
use secretstore_core::{is_live, ListQuery, Namespace, Scope, StoredList};

use crate::cache::{entry_bytes, Shard, Shards, Ticket, Weighed};

/// What a page costs beyond its secrets (`cache::entry_bytes` each): the map's slot, the
/// scope's strings and the page's own fields. An estimate that errs high, as the bound is on
/// memory.
const PAGE_OVERHEAD: usize = 256;

/// The cached first pages of one scope, one per page size asked for. Kept by the hash of
/// (namespace, scope); both are compared on every hit.
#[derive(Debug)]
struct ScopePages {
    namespace: Namespace,
    scope: Scope,
    pages: Vec<Page>,
}

#[derive(Debug)]
struct Page {
    limit: u32,
    list: StoredList,
    /// The earliest expiry among the page's secrets and the first one past it: the page is
    /// served while this is live (`is_live`).
    valid_until: Option<i64>,
    bytes: usize,
}

impl Weighed for ScopePages {
    fn weight(&self) -> usize {
        self.pages.iter().map(|page| page.bytes).sum()
    }
}

impl ScopePages {
    fn of(&self, query: &ListQuery) -> bool {
        self.namespace == query.namespace && self.scope == query.scope
    }
}

/// First pages of lists by scope, holding at most a budget of bytes.
#[derive(Debug)]
pub struct ListCache {
    shards: Shards<ScopePages>,
}

impl ListCache {
    /// Holds at most `budget` bytes of pages; 0 turns the cache off.
    pub fn new(budget: usize) -> Self {
        Self {
            shards: Shards::new(budget),
        }
    }

    fn lock(&self, query: &ListQuery) -> (usize, u64, MutexGuard<'_, Shard<ScopePages>>) {
        let (shard, hash) = self.shards.locate((&query.namespace, &query.scope));
        (shard, hash, self.shards.lock(shard))
    }

    /// The page `query` asks for, if cached and still right at `query.now`; otherwise a ticket
    /// for filling it after a read. Only first pages are cached: `query` has no cursor.
    pub fn get(&self, query: &ListQuery) -> Result<StoredList, Ticket> {
        debug_assert!(query.cursor.is_none());
        let (shard, hash, guard) = self.lock(query);
        let hit = guard
            .entries
            .get(&hash)
            .filter(|found| found.of(query))
            .and_then(|found| found.pages.iter().find(|page| page.limit == query.limit))
            .filter(|page| is_live(page.valid_until, query.now));
        match hit {
            Some(page) => Ok(page.list.clone()),
            None => Err(Ticket {
                shard,
                hash,
                generation: guard.generation,
            }),
        }
    }

    /// Keeps the page a read found, unless a write to the shard came in between. `past` is the
    /// expiry of the first live secret past the page, if there is one (`Some(None)`: it never
    /// expires). Makes room by dropping other scopes' pages; more than a shard's whole budget
    /// is not kept.
    pub fn fill(
        &self,
        ticket: Ticket,
        query: &ListQuery,
        list: &StoredList,
        past: Option<Option<i64>>,
    ) {
        let page = Page {
            limit: query.limit,
            list: list.clone(),
            valid_until: list
                .items
                .iter()
                .map(|item| item.expires_at)
                .chain(past)
                .flatten()
                .min(),
            bytes: PAGE_OVERHEAD + list.items.iter().map(entry_bytes).sum::<usize>(),
        };
        self.shards.fill(ticket, |shard| {
            // The scope's other page sizes stay; a scope of the same hash gives way.
            let mut pages = match shard.remove(ticket.hash) {
                Some(found) if found.of(query) => found.pages,
                _ => Vec::new(),
            };
            pages.retain(|kept| kept.limit != query.limit);
            pages.push(page);
            Some(ScopePages {
                namespace: query.namespace.clone(),
                scope: query.scope.clone(),
                pages,
            })
        });
    }

    /// A write to a secret of this scope is committed (or failed): forget the scope's pages,
    /// and refuse fills that began before.
    pub fn invalidate(&self, namespace: &Namespace, scope: &Scope) {
        self.shards
            .invalidate(self.shards.locate((namespace, scope)));
    }

    /// Secrets were deleted wholesale (a tenant's removal): forget everything.
    pub fn clear(&self) {
        self.shards.clear();
    }

    /// Gives back the memory of pages no longer right at `now` (a secret they depend on
    /// expired); they were never served anyway.
    pub fn purge(&self, now: i64) {
        self.shards.prune(|scope| {
            scope.pages.retain(|page| is_live(page.valid_until, now));
            scope.pages.is_empty()
        });
    }

    /// What the pages cost now, in bytes.
    pub fn bytes(&self) -> usize {
        self.shards.bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secretstore_core::{
        AccountId, AppId, Mode, SealedSecret, SecretAddress, SecretId, SecretName, UserId,
    };

    fn namespace() -> Namespace {
        Namespace {
            app: AppId::parse("app").unwrap(),
            account: AccountId::parse("acct_1").unwrap(),
            mode: Mode::Test,
        }
    }

    fn query(scope: Scope, limit: u32, now: i64) -> ListQuery {
        ListQuery {
            namespace: namespace(),
            scope,
            limit,
            cursor: None,
            now,
        }
    }

    fn secret(name: &str, expires_at: Option<i64>) -> SealedSecret {
        SealedSecret {
            id: SecretId::generate(),
            address: SecretAddress {
                namespace: namespace(),
                scope: Scope::Account,
                name: SecretName::parse(name).unwrap(),
            },
            created: 1,
            expires_at,
            sealed: vec![1, 2, 3],
        }
    }

    fn page(items: Vec<SealedSecret>, has_more: bool) -> StoredList {
        StoredList { items, has_more }
    }

    #[test]
    fn a_fill_that_raced_a_write_to_the_scope_is_dropped() {
        let cache = ListCache::new(1 << 20);
        let q = query(Scope::Account, 10, 5);
        let ticket = cache.get(&q).unwrap_err();
        cache.invalidate(&q.namespace, &q.scope); // a write committed while the read ran
        cache.fill(ticket, &q, &page(vec![secret("a", None)], false), None);
        assert!(cache.get(&q).is_err(), "the stale page must not be cached");
        let list = page(vec![secret("a", None)], false);
        cache.fill(cache.get(&q).unwrap_err(), &q, &list, None);
        assert_eq!(cache.get(&q).unwrap(), list);
        // A write to the scope forgets it; one to another scope does not.
        let user = Scope::User(UserId::parse("usr_1").unwrap());
        cache.invalidate(&q.namespace, &user);
        assert_eq!(cache.get(&q).unwrap(), list);
        cache.invalidate(&q.namespace, &q.scope);
        assert!(cache.get(&q).is_err());
    }

    #[test]
    fn pages_are_kept_by_size_and_scope() {
        let cache = ListCache::new(1 << 20);
        let ten = query(Scope::Account, 10, 0);
        let two = query(Scope::Account, 2, 0);
        let user = query(Scope::User(UserId::parse("usr_1").unwrap()), 10, 0);
        let a = page(vec![secret("a", None), secret("b", None)], true);
        let b = page(vec![secret("a", None)], false);
        cache.fill(cache.get(&ten).unwrap_err(), &ten, &a, Some(None));
        cache.fill(cache.get(&two).unwrap_err(), &two, &b, None);
        assert_eq!(cache.get(&ten).unwrap(), a);
        assert_eq!(cache.get(&two).unwrap(), b);
        assert!(cache.get(&user).is_err());
        cache.clear();
        assert!(cache.get(&ten).is_err());
        assert_eq!(cache.bytes(), 0);
    }

    #[test]
    fn a_page_is_served_only_while_its_secrets_and_the_next_one_are_live() {
        let cache = ListCache::new(1 << 20);
        // A listed secret expires at 30, the first one past the page at 20.
        let list = page(vec![secret("a", None), secret("b", Some(30))], true);
        let at = |now| query(Scope::Account, 2, now);
        cache.fill(
            cache.get(&at(10)).unwrap_err(),
            &at(10),
            &list,
            Some(Some(20)),
        );
        assert_eq!(cache.get(&at(19)).unwrap(), list);
        assert!(
            cache.get(&at(20)).is_err(),
            "has_more may be false from 20 on"
        );
        // Past the page, a secret that never expires: the listed one decides.
        let cache = ListCache::new(1 << 20);
        cache.fill(cache.get(&at(10)).unwrap_err(), &at(10), &list, Some(None));
        assert_eq!(cache.get(&at(29)).unwrap(), list);
        assert!(cache.get(&at(30)).is_err(), "b is gone from 30 on");
        cache.purge(30);
        assert_eq!(cache.bytes(), 0);
    }

    #[test]
    fn the_cache_holds_at_most_its_budget_of_bytes() {
        let budget = 64 * 1024;
        let cache = ListCache::new(budget);
        for i in 0..500 {
            let q = query(
                Scope::User(UserId::parse(&format!("usr_{i}")).unwrap()),
                10,
                0,
            );
            let mut items = vec![secret("a", None); (i % 10) + 1];
            for item in &mut items {
                item.sealed = vec![7; (i * 37) % 20_100];
            }
            cache.fill(cache.get(&q).unwrap_err(), &q, &page(items, false), None);
            assert!(cache.bytes() <= budget, "{} bytes", cache.bytes());
        }
        assert!(cache.bytes() > 0);
        let off = ListCache::new(0);
        let q = query(Scope::Account, 10, 0);
        off.fill(
            off.get(&q).unwrap_err(),
            &q,
            &page(vec![secret("a", None)], false),
            None,
        );
        assert_eq!(off.bytes(), 0);
    }
}
