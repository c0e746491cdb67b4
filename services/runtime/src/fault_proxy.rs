//! A TCP fault proxy served by this binary, in the manner of the well-known
//! TCP toxic proxies: it listens on one address, forwards every connection to
//! one upstream, and applies [`Toxic`]s to what passes. Toxics can be changed
//! at any time ([`ProxyHandle::set`]) and take effect on new connections and,
//! chunk by chunk, on the ones already open.
//!
//! Everything is bounded: each direction of a connection copies through
//! [`CHUNKS_IN_FLIGHT`] fixed buffers of [`CHUNK_BYTES`] (a stalled side
//! stops the proxy reading the other), at most [`MAX_CONNECTIONS`] are open at
//! once, and connecting upstream gives up after [`CONNECT_TIMEOUT`].
//!
//! Randomness (jitter, drops, loss, slice sizes) comes from one seeded
//! `StdRng`: connection `i` gets its own seed drawn from it in accept order,
//! so the same seed and the same sequence of connections replay the same
//! decisions.

use std::{
    io,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use rand::{Rng, SeedableRng, rngs::StdRng};
use serde::Serialize;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{
        TcpListener, TcpStream,
        tcp::{ReadHalf, WriteHalf},
    },
    sync::{Semaphore, mpsc, watch},
    task::{JoinHandle, JoinSet},
    time::Instant,
};
use tokio_util::sync::CancellationToken;

/// Size of one copy buffer.
pub const CHUNK_BYTES: usize = 8 * 1024;
/// Buffers per direction of a connection: read ahead while a chunk is delayed.
pub const CHUNKS_IN_FLIGHT: usize = 4;
/// Connections open at once; more are closed at once and counted as refused.
pub const MAX_CONNECTIONS: usize = 512;
/// How long connecting to the upstream may take before the client is closed.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// What a lost segment costs in the [`Toxic::Loss`] model: Linux's minimum
/// TCP retransmission timeout.
pub const RETRANSMISSION_TIMEOUT: Duration = Duration::from_millis(200);
/// Bandwidth pacing writes at most this many pieces a second.
const PACING_HZ: u64 = 50;

/// Which way data flows through the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Both ways.
    #[default]
    Both,
    /// Client to upstream (requests).
    Upstream,
    /// Upstream to client (responses).
    Downstream,
}

impl Direction {
    fn covers(self, flow: Direction) -> bool {
        self == Direction::Both || self == flow
    }
}

/// One fault the proxy applies. At most one toxic of each kind counts: the
/// first in the list given to [`ProxyHandle::set`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum Toxic {
    /// Each forwarded chunk is delivered `ms` ± up to `jitter_ms` (uniform)
    /// after the proxy read it.
    Latency {
        ms: u64,
        jitter_ms: u64,
        direction: Direction,
    },
    /// At most `kib_per_s` KiB a second (0 counts as 1).
    Bandwidth {
        kib_per_s: u64,
        direction: Direction,
    },
    /// Blackhole: nothing is forwarded while this is set (data waits, as a
    /// partitioned TCP connection's segments would); with `ms > 0` each
    /// connection is closed `ms` after it first saw the toxic.
    Timeout { ms: u64 },
    /// Each connection is reset (RST, via `SO_LINGER` 0) on both sides
    /// `after_ms` after it first saw the toxic.
    ResetPeer { after_ms: u64 },
    /// Chunks are cut into slices of `avg_bytes` ± up to `jitter_bytes`,
    /// written `delay_us` apart.
    Slicer {
        avg_bytes: usize,
        jitter_bytes: usize,
        delay_us: u64,
        direction: Direction,
    },
    /// New connections are closed at once with this probability (0–100 %).
    Drop { percent: u8 },
    /// A simple application-level model of packet loss, not `tc netem`: with
    /// this probability (0–100 %) a forwarded chunk is held back one TCP
    /// retransmission timeout ([`RETRANSMISSION_TIMEOUT`]) before it is
    /// delivered, as if its segment had been lost and resent. Nothing is
    /// really dropped and nothing is reordered; what the application sees is
    /// the stall that loss causes.
    Loss { percent: u8, direction: Direction },
}

impl Toxic {
    pub fn latency(ms: u64, jitter_ms: u64) -> Toxic {
        Toxic::Latency {
            ms,
            jitter_ms,
            direction: Direction::Both,
        }
    }

    pub fn bandwidth(kib_per_s: u64) -> Toxic {
        Toxic::Bandwidth {
            kib_per_s,
            direction: Direction::Both,
        }
    }

    pub fn slicer(avg_bytes: usize, jitter_bytes: usize, delay_us: u64) -> Toxic {
        Toxic::Slicer {
            avg_bytes,
            jitter_bytes,
            delay_us,
            direction: Direction::Both,
        }
    }

    pub fn loss(percent: u8) -> Toxic {
        Toxic::Loss {
            percent,
            direction: Direction::Both,
        }
    }

    /// The same toxic applied to one direction only; toxics that act on
    /// whole connections (timeout, reset, drop) are returned unchanged.
    pub fn only(self, direction: Direction) -> Toxic {
        match self {
            Toxic::Latency { ms, jitter_ms, .. } => Toxic::Latency {
                ms,
                jitter_ms,
                direction,
            },
            Toxic::Bandwidth { kib_per_s, .. } => Toxic::Bandwidth {
                kib_per_s,
                direction,
            },
            Toxic::Slicer {
                avg_bytes,
                jitter_bytes,
                delay_us,
                ..
            } => Toxic::Slicer {
                avg_bytes,
                jitter_bytes,
                delay_us,
                direction,
            },
            Toxic::Loss { percent, .. } => Toxic::Loss { percent, direction },
            Toxic::Timeout { .. } | Toxic::ResetPeer { .. } | Toxic::Drop { .. } => self,
        }
    }
}

/// Counters since the proxy started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct ProxyStats {
    /// Connections accepted, refused ones included.
    pub connections: u64,
    /// Connections closed at once: by [`Toxic::Drop`], because the upstream
    /// could not be reached, or because [`MAX_CONNECTIONS`] were open.
    pub refused: u64,
    /// Bytes forwarded from clients to the upstream.
    pub bytes_up: u64,
    /// Bytes forwarded from the upstream to clients.
    pub bytes_down: u64,
}

#[derive(Default)]
struct Counters {
    connections: AtomicU64,
    refused: AtomicU64,
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
}

struct Shared {
    toxics: watch::Sender<Arc<[Toxic]>>,
    counters: Counters,
    cancel: CancellationToken,
}

/// A running proxy. Dropping the handle stops it too.
pub struct ProxyHandle {
    local_addr: SocketAddr,
    upstream: SocketAddr,
    shared: Arc<Shared>,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for ProxyHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyHandle")
            .field("local_addr", &self.local_addr)
            .field("upstream", &self.upstream)
            .field("toxics", &self.toxics())
            .finish()
    }
}

/// Starts fault proxies.
#[derive(Debug)]
pub struct FaultProxy;

impl FaultProxy {
    /// Listen on `listen` (port 0 picks a free one) and forward every
    /// connection to `upstream`, with no toxics until [`ProxyHandle::set`].
    pub async fn start(
        listen: SocketAddr,
        upstream: SocketAddr,
        seed: u64,
    ) -> io::Result<ProxyHandle> {
        let listener = TcpListener::bind(listen).await?;
        let local_addr = listener.local_addr()?;
        let (toxics, _) = watch::channel(Arc::<[Toxic]>::from(Vec::new()));
        let shared = Arc::new(Shared {
            toxics,
            counters: Counters::default(),
            cancel: CancellationToken::new(),
        });
        let task = tokio::spawn(serve(listener, upstream, seed, shared.clone()));
        tracing::debug!(%local_addr, %upstream, seed, "fault proxy listening");
        Ok(ProxyHandle {
            local_addr,
            upstream,
            shared,
            task: Some(task),
        })
    }
}

impl ProxyHandle {
    /// Where clients connect.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    /// Replace the active toxics; open connections see them from their next
    /// chunk on.
    pub fn set(&self, toxics: Vec<Toxic>) {
        self.shared.toxics.send_replace(toxics.into());
    }

    /// Remove every toxic: held data flows again, pending closes and resets
    /// are cancelled.
    pub fn clear(&self) {
        self.set(Vec::new());
    }

    /// The active toxics.
    pub fn toxics(&self) -> Vec<Toxic> {
        self.shared.toxics.borrow().to_vec()
    }

    pub fn stats(&self) -> ProxyStats {
        let c = &self.shared.counters;
        ProxyStats {
            connections: c.connections.load(Ordering::Relaxed),
            refused: c.refused.load(Ordering::Relaxed),
            bytes_up: c.bytes_up.load(Ordering::Relaxed),
            bytes_down: c.bytes_down.load(Ordering::Relaxed),
        }
    }

    /// Stop listening, close every connection and wait until they are closed.
    pub async fn shutdown(mut self) {
        self.shared.cancel.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for ProxyHandle {
    fn drop(&mut self) {
        self.shared.cancel.cancel();
    }
}

/// The first toxic of a kind, picked by `f`.
fn first<T>(toxics: &[Toxic], f: impl FnMut(&Toxic) -> Option<T>) -> Option<T> {
    toxics.iter().find_map(f)
}

fn roll_percent(rng: &mut StdRng, percent: u8) -> bool {
    rng.random_range(0..100u8) < percent.min(100)
}

async fn serve(listener: TcpListener, upstream: SocketAddr, seed: u64, shared: Arc<Shared>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut open = JoinSet::new();
    loop {
        let client = tokio::select! {
            _ = shared.cancel.cancelled() => break,
            Some(_) = open.join_next(), if !open.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok((client, _)) => client,
                Err(e) => {
                    // Out of descriptors and the like: back off, keep serving.
                    tracing::warn!(error = %e, "fault proxy accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let counters = &shared.counters;
        counters.connections.fetch_add(1, Ordering::Relaxed);
        // Both draws happen for every connection, so decisions depend only
        // on the seed and the connection's position, not on the toxics.
        let drop_draw = rng.random_range(0..100u8);
        let conn_seed: u64 = rng.random();
        let drop_percent = first(&shared.toxics.borrow(), |t| match t {
            Toxic::Drop { percent } => Some(*percent),
            _ => None,
        });
        if drop_percent.is_some_and(|p| drop_draw < p.min(100)) {
            counters.refused.fetch_add(1, Ordering::Relaxed);
            drop(client);
            continue;
        }
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            counters.refused.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let shared = shared.clone();
        open.spawn(async move {
            connection(client, upstream, conn_seed, &shared).await;
            drop(permit);
        });
    }
    // Every connection watches the same cancellation; wait for them to close.
    while open.join_next().await.is_some() {}
}

/// How a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// Both directions finished, or an error ended them.
    Done,
    /// Closed by the proxy (timeout toxic, shutdown): FIN to both sides.
    Close,
    /// Reset: RST to both sides.
    Reset,
}

async fn connection(mut client: TcpStream, upstream: SocketAddr, seed: u64, shared: &Shared) {
    let counters = &shared.counters;
    let mut server = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(upstream)).await
    {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(%upstream, error = %e, "fault proxy upstream unreachable");
            counters.refused.fetch_add(1, Ordering::Relaxed);
            return;
        }
        Err(_) => {
            tracing::debug!(%upstream, "fault proxy upstream connect timed out");
            counters.refused.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let end = {
        let (client_read, client_write) = client.split();
        let (server_read, server_write) = server.split();
        let mut seeds = StdRng::seed_from_u64(seed);
        let up = pump(
            client_read,
            server_write,
            Direction::Upstream,
            StdRng::seed_from_u64(seeds.random()),
            shared.toxics.subscribe(),
            &counters.bytes_up,
        );
        let down = pump(
            server_read,
            client_write,
            Direction::Downstream,
            StdRng::seed_from_u64(seeds.random()),
            shared.toxics.subscribe(),
            &counters.bytes_down,
        );
        tokio::select! {
            r = async { tokio::try_join!(up, down) } => match r {
                // A reset on one side is passed on to the other.
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => End::Reset,
                _ => End::Done,
            },
            end = control(shared.toxics.subscribe()) => end,
            _ = shared.cancel.cancelled() => End::Close,
        }
    };
    if end == End::Reset {
        let _ = client.set_zero_linger();
        let _ = server.set_zero_linger();
    }
    // Dropping both streams closes them (RST when linger is zero).
}

/// Watch the toxics for what ends a connection: a timeout's close or a reset.
async fn control(mut toxics: watch::Receiver<Arc<[Toxic]>>) -> End {
    let mut close_at: Option<Instant> = None;
    let mut reset_at: Option<Instant> = None;
    loop {
        {
            let now = Instant::now();
            let current = toxics.borrow_and_update();
            let timeout_ms = first(&current, |t| match t {
                Toxic::Timeout { ms } => Some(*ms),
                _ => None,
            });
            close_at = match timeout_ms {
                Some(ms) if ms > 0 => close_at.or(Some(now + Duration::from_millis(ms))),
                _ => None,
            };
            let reset_ms = first(&current, |t| match t {
                Toxic::ResetPeer { after_ms } => Some(*after_ms),
                _ => None,
            });
            reset_at = reset_ms.map(|ms| reset_at.unwrap_or(now + Duration::from_millis(ms)));
        }
        let deadline = [reset_at, close_at].into_iter().flatten().min();
        tokio::select! {
            changed = toxics.changed() => {
                if changed.is_err() {
                    // The proxy is going away; its cancellation closes us.
                    std::future::pending::<()>().await;
                }
            }
            _ = sleep_until(deadline) => {
                return if reset_at == deadline { End::Reset } else { End::Close };
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// What applies to one direction right now.
#[derive(Debug, Clone, Copy, Default)]
struct FlowPlan {
    blackhole: bool,
    latency: Option<(u64, u64)>,
    bandwidth_bytes_per_s: Option<u64>,
    slicer: Option<(usize, usize, u64)>,
    loss_percent: Option<u8>,
}

fn plan(toxics: &[Toxic], flow: Direction) -> FlowPlan {
    FlowPlan {
        blackhole: toxics.iter().any(|t| matches!(t, Toxic::Timeout { .. })),
        latency: first(toxics, |t| match *t {
            Toxic::Latency {
                ms,
                jitter_ms,
                direction,
            } if direction.covers(flow) => Some((ms, jitter_ms)),
            _ => None,
        }),
        bandwidth_bytes_per_s: first(toxics, |t| match *t {
            Toxic::Bandwidth {
                kib_per_s,
                direction,
            } if direction.covers(flow) => Some(kib_per_s.max(1).saturating_mul(1024)),
            _ => None,
        }),
        slicer: first(toxics, |t| match *t {
            Toxic::Slicer {
                avg_bytes,
                jitter_bytes,
                delay_us,
                direction,
            } if direction.covers(flow) => Some((avg_bytes, jitter_bytes, delay_us)),
            _ => None,
        }),
        loss_percent: first(toxics, |t| match *t {
            Toxic::Loss { percent, direction } if direction.covers(flow) => Some(percent),
            _ => None,
        }),
    }
}

/// The current plan, once no blackhole holds this direction.
async fn wait_open(toxics: &mut watch::Receiver<Arc<[Toxic]>>, flow: Direction) -> FlowPlan {
    loop {
        let p = plan(&toxics.borrow_and_update(), flow);
        if !p.blackhole {
            return p;
        }
        if toxics.changed().await.is_err() {
            return FlowPlan::default();
        }
    }
}

/// `base` ± up to `jitter`, uniformly, never below zero.
fn jittered(rng: &mut StdRng, base: u64, jitter: u64) -> u64 {
    if jitter == 0 {
        return base;
    }
    let delta = rng.random_range(0..=jitter.saturating_mul(2));
    base.saturating_add(delta).saturating_sub(jitter)
}

/// Copy one direction: a reader fills the fixed buffers, a writer applies
/// the toxics and delivers them in order. EOF is passed on as a write shutdown.
async fn pump(
    mut from: ReadHalf<'_>,
    mut to: WriteHalf<'_>,
    flow: Direction,
    mut rng: StdRng,
    mut toxics: watch::Receiver<Arc<[Toxic]>>,
    forwarded: &AtomicU64,
) -> io::Result<()> {
    let (full_tx, mut full_rx) = mpsc::channel::<(Vec<u8>, usize, Instant)>(CHUNKS_IN_FLIGHT);
    let (free_tx, mut free_rx) = mpsc::channel::<Vec<u8>>(CHUNKS_IN_FLIGHT);
    for _ in 0..CHUNKS_IN_FLIGHT {
        // Cannot fail: the channel holds exactly this many.
        let _ = free_tx.try_send(vec![0; CHUNK_BYTES]);
    }
    let read = async move {
        while let Some(mut buf) = free_rx.recv().await {
            let n = from.read(&mut buf).await?;
            if n == 0 || full_tx.send((buf, n, Instant::now())).await.is_err() {
                break;
            }
        }
        // Dropping `full_tx` lets the writer drain and shut down.
        Ok::<(), io::Error>(())
    };
    let write = async move {
        let mut next_send = Instant::now();
        while let Some((buf, n, read_at)) = full_rx.recv().await {
            let mut p = wait_open(&mut toxics, flow).await;
            if let Some((ms, jitter_ms)) = p.latency {
                let delay = Duration::from_millis(jittered(&mut rng, ms, jitter_ms));
                tokio::time::sleep_until(read_at + delay).await;
            }
            if let Some(percent) = p.loss_percent
                && roll_percent(&mut rng, percent)
            {
                tokio::time::sleep(RETRANSMISSION_TIMEOUT).await;
            }
            let mut rest = &buf[..n];
            while !rest.is_empty() {
                let mut take = rest.len();
                if let Some((avg, jitter, _)) = p.slicer {
                    take = take.min(jittered(&mut rng, avg as u64, jitter as u64).max(1) as usize);
                }
                if let Some(rate) = p.bandwidth_bytes_per_s {
                    take = take.min((rate / PACING_HZ).max(1) as usize);
                    tokio::time::sleep_until(next_send).await;
                    let cost = Duration::from_secs_f64(take as f64 / rate as f64);
                    next_send = next_send.max(Instant::now()) + cost;
                }
                to.write_all(&rest[..take]).await?;
                forwarded.fetch_add(take as u64, Ordering::Relaxed);
                rest = &rest[take..];
                if let Some((_, _, delay_us)) = p.slicer
                    && delay_us > 0
                    && !rest.is_empty()
                {
                    tokio::time::sleep(Duration::from_micros(delay_us)).await;
                }
                if !rest.is_empty() {
                    // Toxics changed mid-chunk apply to the rest of it.
                    p = wait_open(&mut toxics, flow).await;
                }
            }
            // The reader may be gone already; the buffer is then just freed.
            let _ = free_tx.try_send(buf);
        }
        to.shutdown().await
    };
    tokio::try_join!(read, write).map(|_| ())
}

#[cfg(test)]
pub(crate) mod tests {
    use std::time::Instant as StdInstant;

    use super::*;

    /// A tokio echo server on a free loopback port (the lossy path's tests
    /// use it too).
    pub(crate) async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    async fn proxy(seed: u64) -> ProxyHandle {
        let upstream = echo_server().await;
        FaultProxy::start("127.0.0.1:0".parse().unwrap(), upstream, seed)
            .await
            .unwrap()
    }

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    /// Send `data` through a fresh connection and read the echo back.
    async fn round_trip(addr: SocketAddr, data: &[u8]) -> Vec<u8> {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let (mut r, mut w) = s.split();
        let send = async {
            w.write_all(data).await.unwrap();
            w.shutdown().await.unwrap();
        };
        let mut back = Vec::new();
        let recv = r.read_to_end(&mut back);
        let (_, n) = tokio::join!(send, recv);
        n.unwrap();
        back
    }

    #[tokio::test]
    async fn forwards_unchanged_without_toxics_and_counts() {
        let p = proxy(1).await;
        let data = pattern(100_000);
        assert_eq!(round_trip(p.local_addr(), &data).await, data);
        let stats = p.stats();
        assert_eq!(stats.connections, 1);
        assert_eq!(stats.refused, 0);
        assert_eq!(stats.bytes_up, data.len() as u64);
        assert_eq!(stats.bytes_down, data.len() as u64);
    }

    #[tokio::test]
    async fn content_is_preserved_under_every_forwarding_toxic() {
        let p = proxy(7).await;
        let data = pattern(40_000);
        let cases = [
            vec![Toxic::latency(5, 5)],
            vec![Toxic::bandwidth(512)],
            vec![Toxic::slicer(100, 90, 50)],
            vec![Toxic::loss(30)],
            vec![Toxic::Drop { percent: 0 }],
            vec![Toxic::ResetPeer { after_ms: 60_000 }],
            vec![
                Toxic::latency(2, 1).only(Direction::Downstream),
                Toxic::bandwidth(1024).only(Direction::Upstream),
                Toxic::slicer(1000, 500, 10),
                Toxic::loss(10),
            ],
        ];
        for toxics in cases {
            p.set(toxics.clone());
            assert_eq!(
                round_trip(p.local_addr(), &data).await,
                data,
                "content changed under {toxics:?}"
            );
        }
    }

    #[tokio::test]
    async fn latency_adds_at_least_its_delay_each_way() {
        let p = proxy(3).await;
        p.set(vec![Toxic::latency(150, 0)]);
        let started = StdInstant::now();
        assert_eq!(round_trip(p.local_addr(), b"ping").await, b"ping");
        // 150 ms up, 150 ms back.
        assert!(started.elapsed() >= Duration::from_millis(300));

        p.set(vec![Toxic::latency(150, 0).only(Direction::Upstream)]);
        let started = StdInstant::now();
        assert_eq!(round_trip(p.local_addr(), b"ping").await, b"ping");
        assert!(started.elapsed() >= Duration::from_millis(150));
    }

    #[tokio::test]
    async fn toxics_apply_to_connections_already_open() {
        let p = proxy(4).await;
        let mut s = TcpStream::connect(p.local_addr()).await.unwrap();
        let mut buf = [0u8; 4];
        s.write_all(b"one!").await.unwrap();
        s.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"one!");

        p.set(vec![Toxic::latency(200, 0).only(Direction::Downstream)]);
        let started = StdInstant::now();
        s.write_all(b"two!").await.unwrap();
        s.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"two!");
        assert!(started.elapsed() >= Duration::from_millis(200));
    }

    #[tokio::test]
    async fn bandwidth_limits_throughput() {
        let p = proxy(5).await;
        // 32 KiB at 64 KiB/s each way takes at least ~0.5 s each way; allow
        // for the first pacing piece going out at once.
        p.set(vec![Toxic::bandwidth(64).only(Direction::Upstream)]);
        let data = pattern(32 * 1024);
        let started = StdInstant::now();
        assert_eq!(round_trip(p.local_addr(), &data).await, data);
        assert!(started.elapsed() >= Duration::from_millis(450));
    }

    #[tokio::test]
    async fn drop_of_100_percent_refuses_every_connection() {
        let p = proxy(6).await;
        p.set(vec![Toxic::Drop { percent: 100 }]);
        for _ in 0..3 {
            let mut s = TcpStream::connect(p.local_addr()).await.unwrap();
            let mut buf = [0u8; 8];
            // Closed by the proxy: EOF, or a reset if our write got there first.
            let _ = s.write_all(b"hello").await;
            assert!(matches!(s.read(&mut buf).await, Ok(0) | Err(_)));
        }
        let stats = p.stats();
        assert_eq!(stats.connections, 3);
        assert_eq!(stats.refused, 3);
        assert_eq!(stats.bytes_up, 0);
    }

    #[tokio::test]
    async fn drop_decisions_replay_with_the_same_seed() {
        async fn refusals(seed: u64) -> Vec<bool> {
            let p = proxy(seed).await;
            p.set(vec![Toxic::Drop { percent: 50 }]);
            let mut out = Vec::new();
            for _ in 0..24 {
                let before = p.stats().refused;
                let mut s = TcpStream::connect(p.local_addr()).await.unwrap();
                let _ = s.write_all(b"x").await;
                let mut buf = [0u8; 1];
                let echoed = matches!(s.read(&mut buf).await, Ok(1));
                out.push(!echoed);
                drop(s);
                // A forwarded connection echoes; a refused one is counted
                // before the client sees it closed.
                assert_eq!(p.stats().refused - before, u64::from(!echoed));
            }
            out
        }
        let a = refusals(42).await;
        assert_eq!(a, refusals(42).await);
        assert!(a.contains(&true) && a.contains(&false), "{a:?}");
    }

    #[tokio::test]
    async fn timeout_stops_data_and_clear_restores_it() {
        let p = proxy(8).await;
        let mut s = TcpStream::connect(p.local_addr()).await.unwrap();
        let mut buf = [0u8; 5];
        s.write_all(b"first").await.unwrap();
        s.read_exact(&mut buf).await.unwrap();

        p.set(vec![Toxic::Timeout { ms: 0 }]);
        let up_before = p.stats().bytes_up;
        s.write_all(b"held!").await.unwrap();
        // Nothing comes back while the blackhole holds.
        let waited = tokio::time::timeout(Duration::from_millis(300), s.read(&mut buf)).await;
        assert!(waited.is_err(), "data passed a blackhole: {waited:?}");
        assert_eq!(p.stats().bytes_up, up_before);

        p.clear();
        s.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"held!");
    }

    #[tokio::test]
    async fn timeout_with_ms_closes_connections() {
        let p = proxy(9).await;
        let mut open = TcpStream::connect(p.local_addr()).await.unwrap();
        let mut buf = [0u8; 4];
        open.write_all(b"ping").await.unwrap();
        open.read_exact(&mut buf).await.unwrap();

        p.set(vec![Toxic::Timeout { ms: 100 }]);
        // An open connection and a new one are both closed, nothing echoed.
        let mut fresh = TcpStream::connect(p.local_addr()).await.unwrap();
        for s in [&mut open, &mut fresh] {
            // The write may meet a connection closed already; the read tells.
            let _ = s.write_all(b"lost").await;
            assert!(matches!(s.read(&mut buf).await, Ok(0) | Err(_)));
        }
    }

    #[tokio::test]
    async fn reset_peer_resets_the_connection() {
        let p = proxy(10).await;
        let mut s = TcpStream::connect(p.local_addr()).await.unwrap();
        let mut buf = [0u8; 4];
        s.write_all(b"ping").await.unwrap();
        s.read_exact(&mut buf).await.unwrap();

        p.set(vec![Toxic::ResetPeer { after_ms: 50 }]);
        let err = s.read(&mut buf).await.expect_err("reset expected");
        assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
    }

    /// A running `control` over a toxics channel, on paused time.
    fn spawn_control() -> (watch::Sender<Arc<[Toxic]>>, JoinHandle<End>) {
        let (tx, rx) = watch::channel(Arc::<[Toxic]>::from(Vec::new()));
        (tx, tokio::spawn(control(rx)))
    }

    #[tokio::test(start_paused = true)]
    async fn a_reset_or_close_cleared_before_it_fires_never_happens() {
        for toxic in [
            Toxic::ResetPeer { after_ms: 200 },
            Toxic::Timeout { ms: 200 },
        ] {
            let (tx, task) = spawn_control();
            tx.send_replace(vec![toxic].into());
            tokio::time::sleep(Duration::from_millis(150)).await;
            tx.send_replace(Vec::new().into());
            tokio::time::sleep(Duration::from_secs(3600)).await;
            assert!(!task.is_finished(), "{toxic:?} fired after clear");
            task.abort();
        }
    }

    #[tokio::test(start_paused = true)]
    async fn control_resets_or_closes_when_the_toxic_says() {
        let (tx, task) = spawn_control();
        let started = Instant::now();
        tx.send_replace(vec![Toxic::Timeout { ms: 500 }, Toxic::latency(1, 0)].into());
        tokio::time::sleep(Duration::from_millis(100)).await;
        // Setting the same toxic again does not restart its clock.
        tx.send_replace(vec![Toxic::Timeout { ms: 500 }].into());
        assert_eq!(task.await.unwrap(), End::Close);
        assert_eq!(started.elapsed(), Duration::from_millis(500));

        let (tx, task) = spawn_control();
        tx.send_replace(vec![Toxic::Timeout { ms: 0 }, Toxic::ResetPeer { after_ms: 50 }].into());
        assert_eq!(task.await.unwrap(), End::Reset);
    }

    #[tokio::test]
    async fn unreachable_upstream_is_refused() {
        // A port that was free a moment ago.
        let gone = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        let p = FaultProxy::start("127.0.0.1:0".parse().unwrap(), gone, 1)
            .await
            .unwrap();
        let mut s = TcpStream::connect(p.local_addr()).await.unwrap();
        let mut buf = [0u8; 1];
        assert!(matches!(s.read(&mut buf).await, Ok(0) | Err(_)));
        assert_eq!(p.stats().refused, 1);
    }

    #[tokio::test]
    async fn shutdown_closes_open_connections() {
        let p = proxy(11).await;
        let addr = p.local_addr();
        let mut s = TcpStream::connect(addr).await.unwrap();
        let mut buf = [0u8; 4];
        s.write_all(b"ping").await.unwrap();
        s.read_exact(&mut buf).await.unwrap();
        p.shutdown().await;
        assert!(matches!(s.read(&mut buf).await, Ok(0) | Err(_)));
        assert!(TcpStream::connect(addr).await.is_err());
    }

    #[test]
    fn jitter_stays_in_range_and_never_goes_negative() {
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..1000 {
            let d = jittered(&mut rng, 10, 30);
            assert!(d <= 40);
            let d = jittered(&mut rng, 100, 20);
            assert!((80..=120).contains(&d));
        }
    }

    #[test]
    fn plans_honour_direction_and_first_of_a_kind() {
        let toxics = [
            Toxic::latency(10, 0).only(Direction::Upstream),
            Toxic::latency(99, 0),
            Toxic::loss(5).only(Direction::Downstream),
        ];
        let up = plan(&toxics, Direction::Upstream);
        let down = plan(&toxics, Direction::Downstream);
        assert_eq!(up.latency, Some((10, 0)));
        assert_eq!(down.latency, Some((99, 0)));
        assert_eq!(up.loss_percent, None);
        assert_eq!(down.loss_percent, Some(5));
        assert!(!up.blackhole);
        assert!(plan(&[Toxic::Timeout { ms: 0 }], Direction::Upstream).blackhole);
    }
}
