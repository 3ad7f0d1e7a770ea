//! The storage conformance suite: one set of checks, written against the `Store` trait alone,
//! that every backend must pass. Each check is a `pub async fn(Arc<dyn Store>)` in [`checks`]
//! that panics (through `assert!`) on the first rule the store breaks, and each one covers
//! sentences of the trait's documentation, which is the specification.
//!
//! A backend runs the suite from one integration-test file, with a factory that opens a fresh,
//! empty store and returns it with whatever must live as long as it (a temporary directory, a
//! scratch schema):
//!
//! ```ignore
//! async fn fresh() -> (Arc<dyn Store>, tempfile::TempDir) { ... }
//! secretstore_store_tests::conformance_tests!(fresh);
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

/// The one list of checks. Both [`CHECKS`] and [`conformance_tests!`] come from it, so a check
/// added here runs everywhere.
#[doc(hidden)]
#[macro_export]
macro_rules! __every_check {
    (@with [tests $make:path] $($check:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $check() {
                $crate::run_check($make, $crate::checks::$check).await;
            }
        )*
    };
    (@with [table] $($check:ident),* $(,)?) => {
        /// Every check of the suite, in a sensible order to run them.
        pub const CHECKS: &[$crate::Check] = &[
            $(
                $crate::Check {
                    name: stringify!($check),
                    run: |store| Box::pin($crate::checks::$check(store)),
                },
            )*
        ];
    };
    ($($mode:tt)*) => {
        $crate::__every_check!(@with [$($mode)*]
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
            purge_removes_exactly_the_expired_secrets,
            purge_removes_many_expired_secrets,
            purge_removes_stale_idempotency_records,
            idempotency_claim_complete_replay,
            idempotency_release_lets_a_retry_claim,
            idempotency_answers_expire_after_their_ttl,
            idempotency_keys_are_per_credential,
            idempotency_concurrent_claims_have_one_winner,
            meta_values_round_trip,
            check_ready_answers,
            close_refuses_later_calls,
        );
    };
}

__every_check!(table);

/// Generates one `#[tokio::test]` per check, each with a fresh store from `$make`: an async fn
/// (or other path) returning `(Arc<dyn Store>, G)`, where `G` is kept alive until the check and
/// the store's `close` are done.
#[macro_export]
macro_rules! conformance_tests {
    ($make:path) => {
        $crate::__every_check!(tests $make);
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

/// Runs every check in sequence, each on a fresh store. Prints each check's name first (to
/// stderr), so a failure shows which one it was.
pub async fn run_all<F, Fut, G>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = (Arc<dyn Store>, G)>,
{
    for check in CHECKS {
        eprintln!("store conformance: {}", check.name);
        run_check(&make, check.run).await;
    }
}
