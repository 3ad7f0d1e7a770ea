//! The directory listener: one connection per handle, outside the pool, that `LISTEN`s on the
//! channel every directory write notifies and clears the `DirectoryCache` on each notification.
//! A removal that destroyed keys notifies `KEYS_DESTROYED` too, on which the listener moves the
//! handle's destroyed-keys generation on, so that every server drops the keys it held unwrapped
//! (`KeyStore::destroyed_generation`); so does every (re)connection, since a removal may have
//! happened unheard.
//! While it is not connected (the database went away, say) the cache is not used at all, and it
//! is cleared again once the listener is back, since notifications sent meanwhile were lost.
//! This is how a revocation through one server is refused by every other within milliseconds,
//! and never later than the cache's `max_age`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio_postgres::{AsyncMessage, NoTls};

use crate::directory::{CHANGED_CHANNEL, KEYS_DESTROYED};
use secretstore_core::DirectoryCache;

/// Pause between attempts to reconnect.
const RETRY: Duration = Duration::from_secs(1);

/// Runs until the task is aborted (`close`).
pub async fn run(
    config: tokio_postgres::Config,
    cache: Arc<DirectoryCache>,
    keys_destroyed: Arc<AtomicU64>,
) {
    let mut failures = 0u32;
    loop {
        match listen_once(&config, &cache, &keys_destroyed).await {
            Ok(()) => failures = 0,
            Err(e) => {
                failures += 1;
                // The first failure in a row is worth a line; a database down for minutes
                // should not fill the log.
                if failures == 1 {
                    tracing::warn!(error = %e, "directory listener disconnected; directory look-ups go to the database until it is back");
                }
            }
        }
        cache.set_enabled(false);
        tokio::time::sleep(RETRY).await;
    }
}

/// Connects, listens, and handles notifications until the connection ends.
async fn listen_once(
    config: &tokio_postgres::Config,
    cache: &DirectoryCache,
    keys_destroyed: &AtomicU64,
) -> Result<(), tokio_postgres::Error> {
    let (client, mut connection) = config.connect(NoTls).await?;
    let (sender, mut messages) = futures::channel::mpsc::unbounded();
    // The connection must be polled for the client's queries to run and for notifications to
    // arrive; messages go to this task, errors end the stream.
    let driver = tokio::spawn(async move {
        let mut stream = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = stream.next().await {
            match message {
                Ok(message) => {
                    if sender.unbounded_send(message).is_err() {
                        break;
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    });
    let listening = client
        .batch_execute(&format!("LISTEN {CHANGED_CHANNEL}"))
        .await;
    if let Err(e) = listening {
        driver.abort();
        return Err(e);
    }
    // On, and empty: anything cached before this instant may have missed a notification.
    cache.set_enabled(true);
    keys_destroyed.fetch_add(1, Ordering::SeqCst);
    while let Some(message) = messages.next().await {
        if let AsyncMessage::Notification(note) = message {
            if note.payload() == KEYS_DESTROYED {
                keys_destroyed.fetch_add(1, Ordering::SeqCst);
            }
            cache.clear();
        }
    }
    cache.set_enabled(false);
    drop(client);
    match driver.await {
        Ok(result) => result,
        Err(_) => Ok(()),
    }
}
