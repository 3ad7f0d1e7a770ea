//! The storage conformance suite: one set of checks, written against the storage traits alone
//! (`secretstore_core::store`), that every backend must pass. Each check is a
//! `pub async fn(Arc<dyn Store>)` in [`checks`], one module per trait, that panics (through
//! `assert!`) on the first rule the store breaks; each covers sentences of the traits'
//! documentation, which is the specification. The checks of the rules across processes take two
//! handles on one database (`pub async fn(Arc<dyn Store>, Arc<dyn Store>)`).
//!
//! A backend runs the suite from one integration-test file, with a factory that opens a fresh,
//! empty store and returns it with whatever must live as long as it (a temporary directory, a
//! scratch schema), and one that opens two handles on one fresh database, or `None` where the
//! backend allows only one (its two-handle checks then pass as skipped, saying so):
//!
//! ```ignore
//! async fn fresh() -> (Arc<dyn Store>, tempfile::TempDir) { ... }
//! async fn fresh_pair() -> Option<(Arc<dyn Store>, Arc<dyn Store>, tempfile::TempDir)> { ... }
//! secretstore_store_tests::conformance_tests!(fresh, fresh_pair);
//! ```
//!
//! which generates one `#[tokio::test]` per check (the calling crate needs tokio with the
//! `macros` and `rt-multi-thread` features), or calls [`run_all`] to run them in sequence.

pub mod checks;
pub mod fixtures;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use secretstore_core::Store;

/// What running a check gives: a future that panics if the store breaks a rule.
pub type CheckFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// One check, by name, for [`run_all`] and for listing.
#[derive(Debug, Clone, Copy)]
pub struct Check {
    pub name: &'static str,
    pub run: fn(Arc<dyn Store>) -> CheckFuture,
}

/// One check of two handles on one database.
#[derive(Debug, Clone, Copy)]
pub struct PairCheck {
    pub name: &'static str,
    pub run: fn(Arc<dyn Store>, Arc<dyn Store>) -> CheckFuture,
}

/// The one list of checks. Both the tables ([`CHECKS`], [`PAIR_CHECKS`]) and
/// [`conformance_tests!`] come from it, so a check added here runs everywhere.
#[doc(hidden)]
#[macro_export]
macro_rules! __every_check {
    (@with [tests $make:path, $pair:path] [$($check:ident),*] [$($pair_check:ident),*]) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $check() {
                $crate::run_check($make, $crate::checks::$check).await;
            }
        )*
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $pair_check() {
                $crate::run_pair_check($pair, $crate::checks::$pair_check).await;
            }
        )*
    };
    (@with [table] [$($check:ident),*] [$($pair_check:ident),*]) => {
        /// Every check of one handle, in a sensible order to run them.
        pub const CHECKS: &[$crate::Check] = &[
            $(
                $crate::Check {
                    name: stringify!($check),
                    run: |store| Box::pin($crate::checks::$check(store)),
                },
            )*
        ];
        /// Every check of two handles on one database.
        pub const PAIR_CHECKS: &[$crate::PairCheck] = &[
            $(
                $crate::PairCheck {
                    name: stringify!($pair_check),
                    run: |one, two| Box::pin($crate::checks::$pair_check(one, two)),
                },
            )*
        ];
    };
    ($($mode:tt)*) => {
        $crate::__every_check!(@with [$($mode)*]
            [
                put_creates_a_secret,
                put_replaces_a_live_secret_in_place,
                seal_gets_the_new_id_on_create_and_the_existing_id_on_replace,
                replace_without_expiry_clears_it,
                sealed_bytes_and_names_are_kept_exactly,
                expired_secrets_are_invisible,
                expired_secrets_do_not_count_toward_the_maximum,
                put_over_an_expired_secret_creates_a_new_one,
                scope_full_at_exactly_the_maximum,
                concurrent_puts_never_overshoot_the_maximum,
                concurrent_puts_of_one_name_make_one_secret,
                delete_returns_the_secret_as_it_was,
                failing_seal_stores_nothing,
                failing_seals_do_not_disturb_concurrent_puts,
                namespaces_are_isolated,
                scopes_are_isolated,
                cursors_from_elsewhere_are_not_found,
                list_of_an_empty_scope,
                list_is_newest_first_in_creation_order_within_one_second,
                list_pages_forward_with_starting_after,
                list_pages_backward_with_ending_before,
                list_has_more_counts_only_live_secrets,
                a_first_page_asked_again_follows_expiry_without_writes,
                purge_removes_exactly_the_expired_secrets,
                purge_removes_many_expired_secrets,
                count_secrets_counts_every_stored_secret,
                purge_removes_stale_idempotency_records,
                idempotency_claim_complete_replay,
                idempotency_release_lets_a_retry_claim,
                idempotency_answers_expire_after_their_ttl,
                idempotency_keys_are_per_credential,
                idempotency_concurrent_claims_have_one_winner,
                idempotency_quota_bounds_what_one_owner_keeps,
                idempotency_quota_counts_stored_answers_until_purged,
                idempotency_quota_holds_under_concurrent_completes,
                commit_applies_every_write_in_order,
                commit_is_all_or_nothing,
                audit_appends_form_a_chain_that_verifies,
                audit_records_of_failed_writes_are_not_kept,
                concurrent_audit_appends_make_one_chain,
                audit_search_returns_what_the_filter_matches,
                audit_prune_leaves_an_anchor_the_rest_verifies_from,
                directory_accounts_round_trip_and_page,
                directory_apps_and_installations_refer_to_what_exists,
                directory_users_keys_and_sessions,
                directory_removals_take_exactly_what_they_own,
                keys_are_kept_per_owner_oldest_first,
                add_key_of_a_stored_version_answers_the_first,
                concurrent_adds_of_one_version_keep_one_key,
                a_commit_adds_a_new_key_with_its_writes_or_nothing,
                concurrent_commits_of_a_new_key_keep_one,
                keys_not_under_answers_the_keys_of_other_roots,
                rewrap_key_is_a_compare_and_set,
                keys_by_root_counts_the_keys_of_each_root,
                users_with_keys_lists_each_user_once,
                stale_sealed_answers_what_a_rotation_must_reseal,
                reseal_applies_only_where_the_sealed_bytes_still_match,
                namespaces_lists_each_namespace_with_secrets_once,
                meta_values_round_trip,
                check_ready_answers,
                close_refuses_later_calls
            ]
            [
                two_handles_see_each_others_writes_at_once,
                two_handles_never_overshoot_the_maximum,
                two_handles_one_name_makes_one_secret,
                two_handles_share_idempotency_claims,
                a_claim_of_a_vanished_handle_frees_after_its_lease,
                two_handles_share_an_idempotency_quota,
                two_handles_append_to_one_chain,
                two_handles_adding_one_key_keep_one,
                two_handles_committing_one_new_key_keep_one,
                a_removal_through_one_handle_tells_the_other_keys_were_destroyed
            ]
        );
    };
}

__every_check!(table);

/// Generates one `#[tokio::test]` per check: each check of one handle gets a fresh store from
/// `$make` (an async fn or other path returning `(Arc<dyn Store>, G)`, where `G` is kept alive
/// until the check and the store's `close` are done), and each check of two handles gets two
/// handles on one fresh database from `$pair` (returning `Option<(Arc<dyn Store>,
/// Arc<dyn Store>, G)>`; `None` skips it).
#[macro_export]
macro_rules! conformance_tests {
    ($make:path, $pair:path) => {
        $crate::__every_check!(tests $make, $pair);
    };
}

/// Runs one check on a fresh store from `make`, then closes the store.
pub async fn run_check<F, Fut, G, C, CF>(make: F, check: C)
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = (Arc<dyn Store>, G)>,
    C: FnOnce(Arc<dyn Store>) -> CF,
    CF: Future<Output = ()>,
{
    let (store, guard) = make().await;
    check(Arc::clone(&store)).await;
    // Some checks close the store themselves; closing twice is allowed.
    let _ = store.close().await;
    drop(store);
    drop(guard);
}

/// Runs one check of two handles on one fresh database from `make`, or says it is skipped
/// when the backend allows one handle only.
pub async fn run_pair_check<F, Fut, G, C, CF>(make: F, check: C)
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Option<(Arc<dyn Store>, Arc<dyn Store>, G)>>,
    C: FnOnce(Arc<dyn Store>, Arc<dyn Store>) -> CF,
    CF: Future<Output = ()>,
{
    let Some((one, two, guard)) = make().await else {
        eprintln!("skipped: this backend allows only one handle on a database");
        return;
    };
    check(Arc::clone(&one), Arc::clone(&two)).await;
    let _ = one.close().await;
    let _ = two.close().await;
    drop((one, two));
    drop(guard);
}

/// Runs every check in sequence, each on fresh storage. Prints each check's name first (to
/// stderr), so a failure shows which one it was.
pub async fn run_all<F, Fut, G, P, PFut, PG>(make: F, pair: P)
where
    F: Fn() -> Fut,
    Fut: Future<Output = (Arc<dyn Store>, G)>,
    P: Fn() -> PFut,
    PFut: Future<Output = Option<(Arc<dyn Store>, Arc<dyn Store>, PG)>>,
{
    for check in CHECKS {
        eprintln!("store conformance: {}", check.name);
        run_check(&make, check.run).await;
    }
    for check in PAIR_CHECKS {
        eprintln!("store conformance: {}", check.name);
        run_pair_check(&pair, check.run).await;
    }
}
