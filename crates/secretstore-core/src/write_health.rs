//! Whether a backend's writes succeed, for its readiness check (`Lifecycle::check_ready`).
//! Reads can go on answering while writes fail (a full or read-only disk, a database that
//! refuses writes), so a check that only reads says "ready" to a load balancer that then sends
//! writes nowhere they can land. A backend notes the outcome of its writes here, and its check
//! believes the latest one while it is recent (`RECENT`); otherwise it makes a write of its own
//! (a probe) and believes that, so an idle server finds out too, both that writes fail and,
//! once they can again, that they succeed, without a client having to write first. A flood of
//! checks makes at most one probe a second.

use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::StoreError;

/// How long the outcome of a write stands for whether writes succeed.
pub const RECENT: Duration = Duration::from_secs(1);

/// The name of the store's `MetaStore` value a probe writes (an empty value).
pub const PROBE_NAME: &str = "readiness-probe";

/// The outcome of the latest write: when, and why storage refused it (`None`: it succeeded).
type Outcome = (Instant, Option<String>);

/// The latest outcome of a backend's writes.
#[derive(Debug, Default)]
pub struct WriteHealth {
    latest: Mutex<Option<Outcome>>,
}

impl WriteHealth {
    /// Records what a write answered: a failure of storage (`Unavailable`) says writes fail,
    /// with its reason; a success says they succeed; any other error (a full scope, a bug) says
    /// nothing about whether storage takes writes.
    pub fn note<T>(&self, result: &Result<T, StoreError>) {
        match result {
            Ok(_) => self.succeeded(),
            Err(StoreError::Unavailable(why)) => self.failed(why),
            Err(_) => {}
        }
    }

    pub fn failed(&self, why: &str) {
        *self.lock() = Some((Instant::now(), Some(why.to_owned())));
    }

    pub fn succeeded(&self) {
        *self.lock() = Some((Instant::now(), None));
    }

    /// Whether writes succeed: the latest outcome noted, if it is recent; otherwise the
    /// outcome of `probe`, a write the backend notes like any other.
    pub async fn check<F>(&self, probe: impl FnOnce() -> F) -> Result<(), StoreError>
    where
        F: Future<Output = Result<(), StoreError>>,
    {
        let recent = self
            .lock()
            .as_ref()
            .filter(|(when, _)| when.elapsed() < RECENT)
            .map(|(_, failure)| failure.clone());
        match recent {
            Some(None) => Ok(()),
            Some(Some(why)) => Err(StoreError::Unavailable(why)),
            None => probe().await,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Outcome>> {
        // The value is replaced whole: a panic elsewhere cannot leave it half-written.
        self.latest
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `check` answers with a probe that answers `probe`, and whether it probed.
    fn checked(
        health: &WriteHealth,
        probe: Result<(), StoreError>,
    ) -> (Result<(), StoreError>, bool) {
        let mut probed = false;
        let result = block_on(health.check(|| {
            probed = true;
            async move { probe }
        }));
        (result, probed)
    }

    /// Drives a future that never waits (the probes here are ready at once).
    fn block_on<F: Future>(future: F) -> F::Output {
        let mut context = std::task::Context::from_waker(std::task::Waker::noop());
        let mut future = std::pin::pin!(future);
        loop {
            if let std::task::Poll::Ready(output) = future.as_mut().poll(&mut context) {
                return output;
            }
        }
    }

    #[test]
    fn a_recent_outcome_stands_and_an_old_one_asks_for_a_probe() {
        let health = WriteHealth::default();
        let full = || Err(StoreError::Unavailable("disk full".into()));
        assert_eq!(
            checked(&health, Ok(())),
            (Ok(()), true),
            "nothing noted yet"
        );
        assert_eq!(checked(&health, full()), (full(), true));
        health.note::<()>(&Err(StoreError::ScopeFull { max: 1 }));
        assert_eq!(
            checked(&health, Ok(())),
            (Ok(()), true),
            "a full scope says nothing"
        );
        health.note::<()>(&full());
        assert_eq!(
            checked(&health, Ok(())),
            (full(), false),
            "a recent failure stands"
        );
        health.note(&Ok(()));
        assert_eq!(
            checked(&health, full()),
            (Ok(()), false),
            "a recent success stands"
        );
        *health.lock() = Some((Instant::now() - RECENT, None));
        assert_eq!(
            checked(&health, full()),
            (full(), true),
            "an old one asks the probe"
        );
    }
}
