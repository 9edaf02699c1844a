//! Connection admission, shared by the HTTP and RTSP servers: no number of unauthenticated
//! connections from the network can refuse loopback clients (Home Assistant, the healthcheck) or
//! viewers that gave credentials.
//!
//! Every accepted connection gets a [`Ticket`]. Connections fall in three classes:
//! - unauthenticated from a non-loopback address: at most `per_address` per address and
//!   `capacity` in all. A newcomer over either cap is never refused; instead the least valuable
//!   connection of the same kind is closed: one that sent bytes but no whole request (a trickle)
//!   before one not read yet, before one that finished a request; the oldest first. A flood
//!   therefore displaces itself, not the clients that speak promptly.
//! - loopback (trusted or not): a pool of its own with the same rule, so the network cannot reach it.
//! - authenticated: not displaceable; at most `capacity` of them, beyond which credentials are
//!   answered "busy".
//!
//! A deadline per request head is the servers' job ([`HEAD_DEADLINE`]): trickling bytes never
//! extends it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

use crate::access::is_loopback;

/// A request head (request line + headers) must arrive within this time of its first byte
/// (HTTP: of the connection's start or the previous response), however slowly bytes trickle.
pub const HEAD_DEADLINE: Duration = Duration::from_secs(5);
/// Unauthenticated connections one non-loopback address may hold at once.
pub const PER_ADDRESS: usize = 32;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// Sent bytes that were read, but no complete request: what a slow trickle looks like. A real
    /// client's head arrives whole, so it never stays here.
    Trickling,
    /// Connected, nothing read yet.
    Fresh,
    /// Finished at least one request, no credentials yet.
    Spoke,
    /// Gave credentials (or needs none and said so): never displaced.
    Authed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Pool {
    Loopback,
    Network,
}

struct Entry {
    addr: IpAddr,
    pool: Pool,
    stage: Stage,
    /// Admission order: lower is older.
    seq: u64,
    close: CancellationToken,
}

#[derive(Default)]
struct Inner {
    next: u64,
    entries: HashMap<u64, Entry>,
    displaced: u64,
    refused: u64,
}

/// The admission state of one server.
pub struct Admission {
    capacity: usize,
    per_address: usize,
    inner: Mutex<Inner>,
}

/// What a server knows about one admitted connection; dropping it frees the place.
pub struct Ticket {
    admission: Arc<Admission>,
    id: u64,
    close: CancellationToken,
}

/// Counters for `/metrics`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub open: usize,
    pub authenticated: usize,
    pub displaced: u64,
    pub refused: u64,
}

impl Admission {
    /// `capacity`: unauthenticated connections per pool and authenticated ones in all.
    pub fn new(capacity: usize, per_address: usize) -> Arc<Admission> {
        Arc::new(Admission {
            capacity: capacity.max(1),
            per_address: per_address.max(1),
            inner: Mutex::new(Inner::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admits a connection from `addr`, closing a less valuable one of its kind when over a cap.
    pub fn admit(self: &Arc<Self>, addr: IpAddr) -> Ticket {
        let pool = if is_loopback(addr) { Pool::Loopback } else { Pool::Network };
        let mut g = self.lock();
        let mut victims = Vec::new();
        if pool == Pool::Network {
            let same_addr = |e: &Entry| e.addr == addr && e.stage != Stage::Authed;
            if g.entries.values().filter(|e| same_addr(e)).count() >= self.per_address {
                victims.extend(pick_victim(&g, same_addr));
            }
        }
        let same_pool = |e: &Entry| e.pool == pool && e.stage != Stage::Authed;
        if victims.is_empty() && g.entries.values().filter(|e| same_pool(e)).count() >= self.capacity {
            // Take from the address holding the most, so one address cannot squeeze out the others.
            let mut per: HashMap<IpAddr, usize> = HashMap::new();
            for e in g.entries.values().filter(|e| same_pool(e)) {
                *per.entry(e.addr).or_default() += 1;
            }
            if let Some((&top, _)) = per.iter().max_by_key(|(_, n)| **n) {
                victims.extend(pick_victim(&g, |e| same_pool(e) && e.addr == top));
            }
        }
        for v in victims {
            if let Some(e) = g.entries.remove(&v) {
                e.close.cancel();
                g.displaced += 1;
            }
        }
        g.next += 1;
        let id = g.next;
        let close = CancellationToken::new();
        g.entries.insert(id, Entry { addr, pool, stage: Stage::Fresh, seq: id, close: close.clone() });
        Ticket { admission: self.clone(), id, close }
    }

    pub fn counts(&self) -> Counts {
        let g = self.lock();
        Counts {
            open: g.entries.len(),
            authenticated: g.entries.values().filter(|e| e.stage == Stage::Authed).count(),
            displaced: g.displaced,
            refused: g.refused,
        }
    }
}

/// The least valuable connection among those `select` picks: never-spoke before spoke, oldest first.
fn pick_victim(g: &Inner, select: impl Fn(&Entry) -> bool) -> Option<u64> {
    g.entries.iter().filter(|(_, e)| select(e)).min_by_key(|(_, e)| (e.stage == Stage::Spoke, e.seq)).map(|(id, _)| *id)
}

impl Ticket {
    fn advance(&self, from: &[Stage], to: Stage) {
        let mut g = self.admission.lock();
        if let Some(e) = g.entries.get_mut(&self.id) {
            if from.contains(&e.stage) {
                e.stage = to;
            }
        }
    }

    /// Bytes were read, and they did not (yet) make a request.
    pub fn read_some(&self) {
        self.advance(&[Stage::Fresh], Stage::Trickling)
    }

    /// The connection finished a request (it is a client, not a trickle).
    pub fn spoke(&self) {
        self.advance(&[Stage::Fresh, Stage::Trickling], Stage::Spoke)
    }

    /// The connection gave valid credentials. False when the authenticated room is full
    /// (the server answers "busy"); the connection then stays displaceable.
    pub fn authenticated(&self) -> bool {
        let mut g = self.admission.lock();
        let authed = g.entries.values().filter(|e| e.stage == Stage::Authed).count();
        let Some(stage) = g.entries.get(&self.id).map(|e| e.stage) else { return false };
        if stage == Stage::Authed {
            return true;
        }
        if authed >= self.admission.capacity {
            g.refused += 1;
            return false;
        }
        if let Some(e) = g.entries.get_mut(&self.id) {
            e.stage = Stage::Authed;
        }
        true
    }

    /// Completes when the connection was displaced by a newcomer and must close.
    pub fn displaced(&self) -> WaitForCancellationFuture<'_> {
        self.close.cancelled()
    }

    pub fn is_displaced(&self) -> bool {
        self.close.is_cancelled()
    }
}

/// A socket that tells its ticket when bytes were read (HTTP: hyper reads, then the request
/// reaches the service, which calls `spoke`).
pub struct Watched<T> {
    pub inner: T,
    pub ticket: Arc<Ticket>,
    seen: bool,
}

impl<T> Watched<T> {
    pub fn new(inner: T, ticket: Arc<Ticket>) -> Self {
        Watched { inner, ticket, seen: false }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if !self.seen && buf.filled().len() > before {
            self.seen = true;
            self.ticket.read_some();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, b)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.admission.lock().entries.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_flood_from_one_address_only_displaces_itself() {
        let a = Admission::new(64, 4);
        let flood: Vec<Ticket> = (0..300).map(|_| a.admit(ip("192.0.2.7"))).collect();
        let alive = flood.iter().filter(|t| !t.is_displaced()).count();
        assert_eq!(alive, 4);
        // The newest ones survive.
        assert!(flood[296..].iter().all(|t| !t.is_displaced()));
        let other = a.admit(ip("192.0.2.8"));
        let lo = a.admit(ip("127.0.0.1"));
        assert!(!other.is_displaced() && !lo.is_displaced());
        assert_eq!(a.counts().displaced, 296);
    }

    #[test]
    fn a_client_that_spoke_outlives_fresh_trickles() {
        let a = Admission::new(64, 4);
        let viewer = a.admit(ip("192.0.2.7"));
        viewer.spoke();
        let _flood: Vec<Ticket> = (0..100).map(|_| a.admit(ip("192.0.2.7"))).collect();
        assert!(!viewer.is_displaced());
    }

    #[test]
    fn a_trickle_goes_before_a_connection_not_read_yet() {
        let a = Admission::new(64, 3);
        let trickle = a.admit(ip("192.0.2.7"));
        trickle.read_some();
        let fresh = a.admit(ip("192.0.2.7"));
        let older_trickle = a.admit(ip("192.0.2.7"));
        older_trickle.read_some();
        let _new = a.admit(ip("192.0.2.7"));
        assert!(trickle.is_displaced() && !fresh.is_displaced() && !older_trickle.is_displaced());
        // A trickle that then completes a request is a client.
        older_trickle.spoke();
        let _new2 = a.admit(ip("192.0.2.7"));
        assert!(fresh.is_displaced() && !older_trickle.is_displaced());
    }

    #[test]
    fn authenticated_connections_are_never_displaced() {
        let a = Admission::new(8, 2);
        let viewer = a.admit(ip("192.0.2.7"));
        assert!(viewer.authenticated());
        let _flood: Vec<Ticket> = (0..50).map(|_| a.admit(ip("192.0.2.7"))).collect();
        assert!(!viewer.is_displaced());
        assert_eq!(a.counts().authenticated, 1);
    }

    #[test]
    fn many_addresses_fill_the_pool_but_not_loopback() {
        let a = Admission::new(10, 4);
        let net: Vec<Ticket> = (0..40).map(|i| a.admit(ip(&format!("192.0.2.{}", i % 20)))).collect();
        let alive = net.iter().filter(|t| !t.is_displaced()).count();
        assert_eq!(alive, 10);
        let lo: Vec<Ticket> = (0..10).map(|_| a.admit(ip("127.0.0.1"))).collect();
        assert!(lo.iter().all(|t| !t.is_displaced()));
        assert_eq!(net.iter().filter(|t| !t.is_displaced()).count(), 10);
    }

    #[test]
    fn authenticated_room_is_bounded_and_places_are_freed() {
        let a = Admission::new(2, 2);
        let t1 = a.admit(ip("192.0.2.1"));
        let t2 = a.admit(ip("192.0.2.2"));
        assert!(t1.authenticated() && t2.authenticated());
        let t3 = a.admit(ip("192.0.2.3"));
        assert!(!t3.authenticated());
        assert_eq!(a.counts().refused, 1);
        drop(t1);
        assert!(t3.authenticated());
        drop((t2, t3));
        assert_eq!(a.counts().open, 0);
    }
}
