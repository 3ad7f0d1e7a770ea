//! The open connections of one listener, so that no client can hold them all: at most
//! `max_connections` at once and at most `max_per_client` from one client address. When the
//! listener is full, the connection that has been idle longest (no request in flight) is asked
//! to close to make room for the new one, rather than the new one being turned away while idle
//! keep-alive sockets sit on every slot.
//!
//! Each connection registers here and holds a `Registration` for as long as it lives (its drop
//! gives the slot back); the server loop marks requests in and out of flight with `Busy`, and a
//! connection watches its `close` signal to finish gracefully when asked.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::Notify;

/// What the registry knows of one connection.
#[derive(Debug)]
pub struct ConnectionState {
    /// Requests of this connection in flight (HTTP/1.1 serves one at a time, so 0 or 1).
    busy: AtomicUsize,
    /// When it last finished a request (or opened), in ms since the registry began.
    last_active_ms: AtomicU64,
    /// Asked to close: not asked twice.
    closing: AtomicBool,
    /// Signalled to ask the connection to finish its request in flight, if any, and close.
    pub close: Notify,
}

impl ConnectionState {
    fn idle(&self) -> bool {
        self.busy.load(Ordering::SeqCst) == 0 && !self.closing.load(Ordering::SeqCst)
    }
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Every slot is taken, and no connection was idle to make room.
    Full,
    /// This client address holds `max_per_client` connections already.
    PerClient,
}

#[derive(Debug, Default)]
struct Inner {
    next_id: u64,
    live: HashMap<u64, (IpAddr, Arc<ConnectionState>)>,
    per_client: HashMap<IpAddr, usize>,
}

/// See the module documentation.
#[derive(Debug)]
pub struct Connections {
    inner: Mutex<Inner>,
    max_connections: usize,
    max_per_client: usize,
    began: Instant,
    /// Signalled whenever a connection ends.
    ended: Notify,
}

impl Connections {
    pub fn new(max_connections: usize, max_per_client: usize) -> Arc<Self> {
        Arc::new(Self {
            inner: Mutex::new(Inner::default()),
            max_connections: max_connections.max(1),
            max_per_client: max_per_client.max(1),
            began: Instant::now(),
            ended: Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn now_ms(&self) -> u64 {
        self.began.elapsed().as_millis() as u64
    }

    /// Connections open now.
    pub fn len(&self) -> usize {
        self.lock().live.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Registers a connection from `client`, or says why not. When every slot is taken it asks
    /// the longest-idle connection to close and refuses this one only if there is none; the
    /// caller may wait for `ended` and try again.
    pub fn admit(self: &Arc<Self>, client: IpAddr) -> Result<Registration, Refusal> {
        let mut inner = self.lock();
        if inner.per_client.get(&client).copied().unwrap_or(0) >= self.max_per_client {
            return Err(Refusal::PerClient);
        }
        if inner.live.len() >= self.max_connections {
            return Err(Refusal::Full);
        }
        inner.next_id += 1;
        let id = inner.next_id;
        let state = Arc::new(ConnectionState {
            busy: AtomicUsize::new(0),
            last_active_ms: AtomicU64::new(self.now_ms()),
            closing: AtomicBool::new(false),
            close: Notify::new(),
        });
        inner.live.insert(id, (client, Arc::clone(&state)));
        *inner.per_client.entry(client).or_insert(0) += 1;
        Ok(Registration {
            id,
            state,
            connections: Arc::clone(self),
        })
    }

    /// Asks the connection idle for longest to close; false if none is idle.
    pub fn close_idlest(&self) -> bool {
        let inner = self.lock();
        let idlest = inner
            .live
            .values()
            .filter(|(_, state)| state.idle())
            .min_by_key(|(_, state)| state.last_active_ms.load(Ordering::SeqCst));
        match idlest {
            Some((_, state)) => {
                state.closing.store(true, Ordering::SeqCst);
                state.close.notify_one();
                true
            }
            None => false,
        }
    }

    /// Asks every connection to close (shutdown): idle ones at once, busy ones after their
    /// request.
    pub fn close_all(&self) {
        for (_, state) in self.lock().live.values() {
            state.closing.store(true, Ordering::SeqCst);
            state.close.notify_one();
        }
    }

    /// Waits (at most `patience`) for a connection to end, after asking the idlest one to
    /// close; true if one was asked. The waiter is registered before the ask, so an end that
    /// comes at once is not missed.
    pub async fn make_room(&self, patience: std::time::Duration) -> bool {
        let ended = self.ended.notified();
        tokio::pin!(ended);
        ended.as_mut().enable();
        if !self.close_idlest() {
            return false;
        }
        let _ = tokio::time::timeout(patience, ended).await;
        true
    }

    /// Waits until every connection has ended.
    pub async fn drained(&self) {
        loop {
            let ended = self.ended.notified();
            tokio::pin!(ended);
            ended.as_mut().enable();
            if self.is_empty() {
                return;
            }
            ended.await;
        }
    }
}

/// One connection's place in the registry; dropping it gives the place back.
#[derive(Debug)]
pub struct Registration {
    id: u64,
    pub state: Arc<ConnectionState>,
    connections: Arc<Connections>,
}

impl Registration {
    /// Marks a request in flight until the returned guard drops (the answer is made, or the
    /// request was abandoned).
    pub fn busy(&self) -> Busy {
        self.state.busy.fetch_add(1, Ordering::SeqCst);
        Busy {
            state: Arc::clone(&self.state),
            connections: Arc::clone(&self.connections),
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut inner = self.connections.lock();
        if let Some((client, _)) = inner.live.remove(&self.id) {
            if let Some(count) = inner.per_client.get_mut(&client) {
                *count -= 1;
                if *count == 0 {
                    inner.per_client.remove(&client);
                }
            }
        }
        drop(inner);
        self.connections.ended.notify_waiters();
    }
}

/// A request in flight on a connection.
#[derive(Debug)]
pub struct Busy {
    state: Arc<ConnectionState>,
    connections: Arc<Connections>,
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.state
            .last_active_ms
            .store(self.connections.now_ms(), Ordering::SeqCst);
        self.state.busy.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[test]
    fn one_client_cannot_take_every_slot() {
        let connections = Connections::new(10, 3);
        let held: Vec<_> = (0..3).map(|_| connections.admit(ip(1)).unwrap()).collect();
        assert_eq!(connections.admit(ip(1)).unwrap_err(), Refusal::PerClient);
        let other = connections.admit(ip(2)).unwrap();
        drop(held);
        assert!(connections.admit(ip(1)).is_ok());
        drop(other);
    }

    #[test]
    fn a_full_listener_asks_the_longest_idle_connection_to_close() {
        let connections = Connections::new(3, 3);
        let a = connections.admit(ip(1)).unwrap();
        let b = connections.admit(ip(2)).unwrap();
        let c = connections.admit(ip(3)).unwrap();
        assert_eq!(connections.admit(ip(4)).unwrap_err(), Refusal::Full);
        // `a` is busy; `b` finished a request after `c` opened: `c` is the idlest.
        let _in_flight = a.busy();
        std::thread::sleep(std::time::Duration::from_millis(5));
        drop(b.busy());
        assert!(connections.close_idlest());
        assert!(c.state.closing.load(Ordering::SeqCst));
        assert!(!b.state.closing.load(Ordering::SeqCst));
        // Asked once only; next, `b`; `a` is busy and never asked.
        assert!(connections.close_idlest());
        assert!(b.state.closing.load(Ordering::SeqCst));
        assert!(!connections.close_idlest());
        drop(c);
        assert!(connections.admit(ip(4)).is_ok());
    }
}
