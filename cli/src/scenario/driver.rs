//! Runs a chaos schedule against the native stack: process faults (SIGKILL
//! and restart, SIGSTOP/SIGCONT), wire faults through this binary's fault
//! proxy, backend outages, and the catalog's named faults — and undoes all
//! of it, also when the schedule is cut short (Ctrl-C, the load ended).
//!
//! Wire faults need the link's `from` service to talk to a proxy: before the
//! load, each linked service gets an environment override pointing it at a
//! proxy of its own and is restarted once (no toxics yet); the toxics are
//! set and cleared at the scheduled times; at the end the overrides go and
//! the service is restarted on its direct address.
//!
//! A link with `packet-loss` items gets a private network as well
//! ([`LossyPath`]): the service talks to a relay inside a network namespace
//! of this run's own, the relay to the link's proxy on the host end of the
//! veth pair, and the kernel drops the scheduled share of the packets that
//! cross it.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, OnceLock},
    time::{Duration, Instant},
};

use shopstream_platform::{config::Ports, faults};
use shopstream_runtime::{
    Kind, Stack,
    fault_proxy::{FaultProxy, ProxyHandle, Toxic},
    links::Link,
    lossy_path::{self, LossyPath},
};

use super::{
    chaos::{Action, Item, Schedule},
    report::FaultWindow,
};

#[derive(Debug, Clone)]
pub struct Context {
    pub stack: Stack,
    pub ports: Ports,
    pub seed: u64,
}

/// What the driver changed and must undo.
#[derive(Default)]
struct Undo {
    paused: Vec<(Kind, u32)>,
    stopped: Vec<Kind>,
    killed: Vec<Kind>,
    proxies: BTreeMap<String, (Link, ProxyHandle)>,
    /// Links with packet loss: their private networks.
    paths: BTreeMap<String, LossyPath>,
    faults: Vec<String>,
}

fn undo() -> &'static Mutex<Undo> {
    static UNDO: OnceLock<Mutex<Undo>> = OnceLock::new();
    UNDO.get_or_init(|| Mutex::new(Undo::default()))
}

/// Put every link the schedule names behind a proxy (before the load).
/// Overrides left by a run that died without cleaning up (its proxies died
/// with it) are removed first.
pub async fn prepare(ctx: &Context, schedule: &Schedule) -> anyhow::Result<()> {
    for kind in Kind::ALL {
        if ctx.stack.overrides(kind).is_ok_and(|o| !o.is_empty()) {
            eprintln!(
                "test: {} still had the environment overrides of an earlier run; removing them",
                kind.name()
            );
            ctx.stack.clear_overrides(kind)?;
            if ctx.stack.running_pid(kind).is_some() {
                restart(ctx, kind).await?;
            }
        }
    }
    let mut links: Vec<Link> = Vec::new();
    let mut lossy: Vec<Link> = Vec::new();
    for item in &schedule.items {
        let link = match &item.action {
            Action::PacketLoss { link, .. } => {
                if !lossy.contains(link) {
                    lossy.push(*link);
                }
                Some(*link)
            }
            a => wire(a).map(|(link, _)| link),
        };
        if let Some(link) = link
            && !links.contains(&link)
        {
            links.push(link);
        }
    }
    if !lossy.is_empty() {
        for name in lossy_path::remove_stale() {
            eprintln!("test: removed the network namespace {name} of a run that died");
        }
    }
    for link in links {
        let upstream = link.upstream(&ctx.ports)?;
        // The service connects to the proxy, or (packet loss) to the relay
        // in the link's namespace, which forwards to the proxy.
        let (proxy, connect_to) = match lossy.iter().position(|l| *l == link) {
            Some(k) => {
                let mut path = LossyPath::create(k as u8)
                    .map_err(|e| anyhow::anyhow!("a private network for {link}: {e}"))?;
                let proxy =
                    FaultProxy::start((path.host_ip(), 0).into(), upstream, ctx.seed).await?;
                let relay = path.start_relay(proxy.local_addr(), ctx.seed).await?;
                eprintln!(
                    "test: {link} crosses the network namespace {} (relay {relay})",
                    path.netns()
                );
                if let Ok(mut u) = undo().lock() {
                    u.paths.insert(link.to_string(), path);
                }
                (proxy, relay)
            }
            None => {
                let proxy = FaultProxy::start("127.0.0.1:0".parse()?, upstream, ctx.seed).await?;
                let at = proxy.local_addr();
                (proxy, at)
            }
        };
        let var = link.env_var()?.to_string();
        let value = link.rewrite_url(&link.default_url(&ctx.ports)?, connect_to);
        // Merged: two links from one service each keep their variable.
        let mut overrides = ctx.stack.overrides(link.from)?;
        overrides.insert(var.clone(), value);
        ctx.stack.set_overrides(link.from, overrides)?;
        eprintln!("test: routing {link} through the fault proxy at {connect_to} ({var})");
        restart(ctx, link.from).await?;
        if let Ok(mut u) = undo().lock() {
            u.proxies.insert(link.to_string(), (link, proxy));
        }
    }
    Ok(())
}

async fn restart(ctx: &Context, kind: Kind) -> anyhow::Result<()> {
    ctx.stack.kill_component(kind).await;
    ctx.stack
        .start_component(kind)
        .await
        .map_err(|e| anyhow::anyhow!("{} did not start again: {e}", kind.name()))
}

/// The link and toxic of a wire fault.
fn wire(action: &Action) -> Option<(Link, Toxic)> {
    match action {
        Action::Latency {
            link,
            ms,
            jitter_ms,
        } => Some((*link, Toxic::latency(*ms, *jitter_ms))),
        Action::Loss { link, percent } => Some((*link, Toxic::loss(*percent))),
        Action::Bandwidth { link, kib_per_s } => Some((*link, Toxic::bandwidth(*kib_per_s))),
        Action::Reset { link } => Some((*link, Toxic::ResetPeer { after_ms: 0 })),
        Action::Blackhole { link } => Some((*link, Toxic::Timeout { ms: 0 })),
        _ => None,
    }
}

fn signal(pid: u32, sig: &str) {
    let _ = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status();
}

/// Run `schedule` from `t0`, recording each fault's window.
///
/// A window is recorded when its fault starts, marked cut short, and
/// completed when the fault ends (or a killed process is back); one still
/// open when the load ends and this future is dropped stays cut short, and
/// [`close_cut_short`] ends it when the driver has cleared everything.
pub async fn run_schedule(
    ctx: Context,
    schedule: Schedule,
    t0: Instant,
    windows: Arc<Mutex<Vec<FaultWindow>>>,
) {
    let mut items: Vec<Item> = schedule.items.clone();
    items.sort_by_key(|i| i.at);
    // Starts and ends, in time order.
    let mut events: Vec<(Duration, bool, usize)> = Vec::new();
    for (n, i) in items.iter().enumerate() {
        events.push((i.at, true, n));
        if let Some(d) = i.dur {
            events.push((i.at + d, false, n));
        }
    }
    events.sort_by_key(|e| (e.0, e.1));
    // Each start and end runs as a task of its own, so a slow one (a
    // restart after a kill) does not delay the next; dropping this future
    // (the schedule cut short) aborts them all.
    // Item → the index of its window in `windows`.
    let opened: Arc<Mutex<BTreeMap<usize, usize>>> = Arc::default();
    let mut running = tokio::task::JoinSet::new();
    for (at, start, n) in events {
        let wait = at.saturating_sub(t0.elapsed());
        tokio::time::sleep(wait).await;
        if super::cancelled() {
            return;
        }
        let (ctx, item, windows, opened) = (
            ctx.clone(),
            items[n].clone(),
            windows.clone(),
            opened.clone(),
        );
        running.spawn(async move {
            let label = item.to_string();
            // Complete the window of item `n`: it ends now (at least `min_s`).
            let close = |min_s: f64| {
                let Some(i) = opened.lock().ok().and_then(|o| o.get(&n).copied()) else {
                    return;
                };
                if let Ok(mut w) = windows.lock()
                    && let Some(w) = w.get_mut(i)
                {
                    w.end_s = super::since(t0).max(min_s);
                    w.cut_short = false;
                }
            };
            if start {
                let begun = super::since(t0);
                if let (Ok(mut w), Ok(mut o)) = (windows.lock(), opened.lock()) {
                    o.insert(n, w.len());
                    w.push(FaultWindow {
                        label: label.clone(),
                        start_s: begun,
                        end_s: begun,
                        cut_short: true,
                    });
                }
                if let Err(e) = apply(&ctx, &item.action).await {
                    eprintln!("test: chaos {label}: {e}");
                }
                if item.dur.is_none() {
                    // An instant fault (a kill): its window lasts until it has recovered.
                    close(begun + 0.5);
                }
            } else {
                if let Err(e) = revert(&ctx, &item.action).await {
                    eprintln!("test: chaos {label}: undo: {e}");
                }
                close(0.0);
            }
        });
    }
    while running.join_next().await.is_some() {}
}

/// End every window the load cut short at `end_s` (when the driver cleared
/// the faults); they stay marked, so the report says so.
pub fn close_cut_short(windows: &Mutex<Vec<FaultWindow>>, end_s: f64) {
    if let Ok(mut w) = windows.lock() {
        for w in w.iter_mut().filter(|w| w.cut_short) {
            w.end_s = end_s.max(w.start_s);
        }
    }
}

async fn apply(ctx: &Context, action: &Action) -> anyhow::Result<()> {
    if let Action::PacketLoss { link, percent } = action {
        let u = undo().lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
        let path = u
            .paths
            .get(&link.to_string())
            .ok_or_else(|| anyhow::anyhow!("{link} has no private network"))?;
        return Ok(path.set_loss(*percent)?);
    }
    if let Some((link, toxic)) = wire(action) {
        let u = undo().lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
        let (_, proxy) = u
            .proxies
            .get(&link.to_string())
            .ok_or_else(|| anyhow::anyhow!("{link} is not behind a proxy"))?;
        proxy.set(vec![toxic]);
        return Ok(());
    }
    match action {
        Action::Kill { target } => {
            ctx.stack.kill_component(*target).await;
            if let Ok(mut u) = undo().lock() {
                u.killed.push(*target);
            }
            // A killed process is started again at once, as a supervisor would.
            ctx.stack
                .start_component(*target)
                .await
                .map_err(|e| anyhow::anyhow!("{} did not start again: {e}", target.name()))?;
            if let Ok(mut u) = undo().lock() {
                u.killed.retain(|k| k != target);
            }
        }
        Action::Pause { target } => {
            let pid = ctx
                .stack
                .running_pid(*target)
                .ok_or_else(|| anyhow::anyhow!("{} is not running", target.name()))?;
            signal(pid, "-STOP");
            if let Ok(mut u) = undo().lock() {
                u.paused.push((*target, pid));
            }
        }
        Action::Outage { target } => {
            ctx.stack.stop_component(*target).await;
            if let Ok(mut u) = undo().lock() {
                u.stopped.push(*target);
            }
        }
        Action::Fault { name, value } => {
            let spec = faults::spec(name).ok_or_else(|| anyhow::anyhow!("no fault {name}"))?;
            let active = spec
                .activate(value.as_deref(), None, None, super::now_ms())
                .map_err(|e| anyhow::anyhow!(e))?;
            store(ctx)
                .await?
                .set(&active)
                .await
                .map_err(|e| anyhow::anyhow!(e))?;
            if let Ok(mut u) = undo().lock() {
                u.faults.push(name.clone());
            }
        }
        _ => {}
    }
    Ok(())
}

async fn revert(ctx: &Context, action: &Action) -> anyhow::Result<()> {
    if let Action::PacketLoss { link, .. } = action {
        if let Ok(u) = undo().lock()
            && let Some(path) = u.paths.get(&link.to_string())
        {
            let dropped = path.dropped();
            path.clear_loss()?;
            eprintln!("test: packet-loss:{link}: the kernel dropped {dropped} packets");
        }
        return Ok(());
    }
    if let Some((link, _)) = wire(action) {
        if let Ok(u) = undo().lock()
            && let Some((_, p)) = u.proxies.get(&link.to_string())
        {
            p.clear();
        }
        return Ok(());
    }
    match action {
        Action::Pause { target } => {
            let pid = undo().lock().ok().and_then(|mut u| {
                let i = u.paused.iter().position(|(k, _)| k == target)?;
                Some(u.paused.remove(i).1)
            });
            if let Some(pid) = pid {
                signal(pid, "-CONT");
            }
        }
        Action::Outage { target } => {
            ctx.stack
                .start_component(*target)
                .await
                .map_err(|e| anyhow::anyhow!("{} did not start again: {e}", target.name()))?;
            if let Ok(mut u) = undo().lock() {
                u.stopped.retain(|k| k != target);
            }
        }
        Action::Fault { name, .. } => {
            store(ctx)
                .await?
                .clear(name)
                .await
                .map_err(|e| anyhow::anyhow!(e))?;
            if let Ok(mut u) = undo().lock() {
                u.faults.retain(|f| f != name);
            }
        }
        _ => {}
    }
    Ok(())
}

async fn store(ctx: &Context) -> anyhow::Result<faults::Store> {
    let url = shopstream_platform::config::Endpoints::native(ctx.ports).redis_url;
    tokio::time::timeout(Duration::from_secs(3), faults::Store::connect(&url))
        .await
        .map_err(|_| anyhow::anyhow!("the fault store at {url} did not answer"))?
        .map_err(|e| anyhow::anyhow!(e))
}

/// Undo everything the driver did: resume paused processes, start stopped
/// or killed ones, clear faults, take links off their proxies.
pub async fn clear_all(ctx: &Context) {
    let u = match undo().lock() {
        Ok(mut u) => std::mem::take(&mut *u),
        Err(_) => return,
    };
    for (_, pid) in &u.paused {
        signal(*pid, "-CONT");
    }
    for kind in u.stopped.iter().chain(u.killed.iter()) {
        if let Err(e) = ctx.stack.start_component(*kind).await {
            eprintln!(
                "test: {} did not start again: {e}; run `shopstream up`",
                kind.name()
            );
        }
    }
    if !u.faults.is_empty() {
        match store(ctx).await {
            Ok(s) => {
                for f in &u.faults {
                    let _ = s.clear(f).await;
                }
            }
            Err(e) => eprintln!(
                "test: could not clear faults {:?}: {e}; run `shopstream fault clear --all`",
                u.faults
            ),
        }
    }
    // Direct addresses back, then restarts, then the proxies go.
    let mut restart_after: Vec<Kind> = Vec::new();
    let mut proxies = Vec::new();
    for (_, (link, proxy)) in u.proxies {
        proxy.clear();
        let _ = ctx.stack.clear_overrides(link.from);
        if !restart_after.contains(&link.from) {
            restart_after.push(link.from);
        }
        proxies.push(proxy);
    }
    for kind in restart_after {
        if let Err(e) = restart(ctx, kind).await {
            eprintln!("test: {e}; run `shopstream up`");
        }
    }
    for p in proxies {
        p.shutdown().await;
    }
    // Last, the private networks (deleting a namespace deletes its veth pair).
    drop(u.paths);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A context whose stack was never started: applying a fault fails at
    /// once (no fault store answers), which the driver reports and goes on.
    fn idle_context() -> Context {
        let ports = Ports {
            postgres: 13432,
            redis: 13379,
            kafka: 13092,
            temporal: 13233,
            temporal_http: 13243,
            temporal_metrics: 13263,
            s3: 13000,
            services: 13100,
        };
        let dir = std::env::temp_dir().join(format!("cut-short-{:x}", rand::random::<u64>()));
        Context {
            stack: Stack::new(dir, ports, "/bin/true"),
            ports,
            seed: 1,
        }
    }

    async fn windows_after(spec: &str, until: impl Fn(&[FaultWindow]) -> bool) -> Vec<FaultWindow> {
        let schedule = super::super::chaos::parse(spec, Duration::from_secs(60), &|n| {
            faults::spec(n).is_some()
        })
        .expect("a valid schedule");
        let windows = Arc::new(Mutex::new(Vec::new()));
        let t0 = Instant::now();
        let task = tokio::spawn(run_schedule(idle_context(), schedule, t0, windows.clone()));
        let deadline = Instant::now() + Duration::from_secs(20);
        while !until(&windows.lock().unwrap()) {
            assert!(Instant::now() < deadline, "{:?}", windows.lock().unwrap());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The load ends: the schedule is dropped, the driver clears up.
        task.abort();
        let _ = task.await;
        close_cut_short(&windows, t0.elapsed().as_secs_f64());
        windows.lock().unwrap().clone()
    }

    #[tokio::test]
    async fn a_fault_the_load_ends_during_is_reported_cut_short() {
        let w = windows_after("fault:catalog-slow@0s+30s", |w| !w.is_empty()).await;
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].label.starts_with("fault:catalog-slow"), "{w:?}");
        assert!(w[0].cut_short, "{w:?}");
        assert!(w[0].end_s >= w[0].start_s && w[0].end_s < 30.0, "{w:?}");
    }

    #[tokio::test]
    async fn a_fault_that_ended_on_time_is_not_cut_short() {
        let w = windows_after("fault:catalog-slow@0s+1s", |w| {
            w.first().is_some_and(|w| !w.cut_short)
        })
        .await;
        assert_eq!(w.len(), 1);
        assert!(!w[0].cut_short);
        assert!(w[0].end_s >= 1.0, "{w:?}");
    }
}
