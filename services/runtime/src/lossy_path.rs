//! Real packet loss on one link, on a private network the caller makes
//! itself — never on the machine's shared loopback.
//!
//! A [`LossyPath`] is a network namespace and a veth pair: the host end gets
//! `10.213.K.1/30`, the namespace end `10.213.K.2/30`. A relay (this
//! binary's [`FaultProxy`] with no toxics) runs on a thread that has entered
//! the namespace, listens on the namespace end and forwards to an upstream
//! on the host end. A client pointed at the relay therefore sends every
//! segment over the veth into the namespace, and every answer comes back
//! over it: an nftables rule on the namespace's `input` hook that drops a
//! random share of what arrives on the veth loses real packets, once per
//! direction, and the kernels' TCP retransmits them as on a lossy network.
//!
//! Why nftables and not `tc netem`: the kernels this project is developed
//! on have no `netem` qdisc ("Specified qdisc kind is unknown"), while
//! nftables' `numgen random` drop works in a namespace. Delay and
//! reordering need netem, so they stay with the fault proxy's toxics.
//!
//! Needs root (or CAP_NET_ADMIN) and the `ip` and `nft` commands
//! (`apt-get install -y iproute2 nftables`): [`preflight`] says what is
//! missing. Namespaces are named `ssn-<pid>-<k>`; [`remove_stale`] deletes
//! the ones whose process has died.

use std::{
    io,
    net::{Ipv4Addr, SocketAddr},
    path::Path,
    process::Command,
    time::Duration,
};

use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::fault_proxy::FaultProxy;

/// The nftables table each namespace's loss rule lives in.
const TABLE: &str = "shopstream_loss";
/// Bound on one `ip`/`nft` command.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// What is missing for a [`LossyPath`] on this machine, with the fix.
pub fn preflight() -> Result<(), String> {
    if !nix::unistd::geteuid().is_root() {
        return Err(
            "packet loss needs root (it makes a network namespace and a veth pair); \
             run as root, or use the fault proxy's `loss:` model instead"
                .into(),
        );
    }
    let missing: Vec<&str> = ["ip", "nft"]
        .into_iter()
        .filter(|c| program(c).is_none())
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "packet loss needs {}: apt-get install -y iproute2 nftables",
            missing.join(" and ")
        ));
    }
    Ok(())
}

/// `cmd` in /usr/sbin or /sbin (where Debian puts `ip` and `nft`, often
/// off a user's PATH), else where PATH has it.
fn program(cmd: &str) -> Option<std::path::PathBuf> {
    ["/usr/sbin", "/sbin"]
        .iter()
        .map(|d| Path::new(d).join(cmd))
        .find(|p| p.is_file())
        .or_else(|| crate::prereq::which(cmd))
}

/// Run a command and fail with its stderr; bounded by [`COMMAND_TIMEOUT`].
fn run(cmd: &str, args: &[&str]) -> io::Result<()> {
    let program = program(cmd).ok_or_else(|| io::Error::other(format!("{cmd} not found")))?;
    let mut child = Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let deadline = std::time::Instant::now() + COMMAND_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait()? {
            if status.success() {
                return Ok(());
            }
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = io::Read::read_to_string(&mut e, &mut err);
            }
            return Err(io::Error::other(format!(
                "{cmd} {}: {}",
                args.join(" "),
                err.trim()
            )));
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            return Err(io::Error::other(format!(
                "{cmd} {} did not finish within {COMMAND_TIMEOUT:?}",
                args.join(" ")
            )));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// One link's private network: see the module docs.
#[derive(Debug)]
pub struct LossyPath {
    netns: String,
    ns_if: String,
    host_ip: Ipv4Addr,
    ns_ip: Ipv4Addr,
    relay: Option<Relay>,
}

#[derive(Debug)]
struct Relay {
    addr: SocketAddr,
    stop: CancellationToken,
    thread: std::thread::JoinHandle<()>,
}

impl LossyPath {
    /// Make namespace number `k` (0..=255) of this process, its veth pair
    /// and addresses. Nothing listens yet: bind the host side's upstream to
    /// [`LossyPath::host_ip`], then [`LossyPath::start_relay`] to it.
    pub fn create(k: u8) -> io::Result<LossyPath> {
        let pid = std::process::id();
        let p = LossyPath {
            netns: format!("ssn-{pid}-{k}"),
            ns_if: format!("sn{pid}-{k}"),
            host_ip: Ipv4Addr::new(10, 213, k, 1),
            ns_ip: Ipv4Addr::new(10, 213, k, 2),
            relay: None,
        };
        let host_if = format!("sh{pid}-{k}");
        let host_cidr = format!("{}/30", p.host_ip);
        let ns_cidr = format!("{}/30", p.ns_ip);
        // One wire-sized packet per skb (no segmentation offload), so that
        // a dropped packet is one segment, as on a real network, not up to
        // 64 KiB of them at once.
        let steps: [(&str, Vec<&str>); 8] = [
            ("ip", vec!["netns", "add", &p.netns]),
            (
                "ip",
                vec![
                    "link",
                    "add",
                    &host_if,
                    "gso_max_segs",
                    "1",
                    "type",
                    "veth",
                    "peer",
                    "name",
                    &p.ns_if,
                    "gso_max_segs",
                    "1",
                ],
            ),
            ("ip", vec!["link", "set", &p.ns_if, "netns", &p.netns]),
            ("ip", vec!["addr", "add", &host_cidr, "dev", &host_if]),
            ("ip", vec!["link", "set", &host_if, "up"]),
            (
                "ip",
                vec![
                    "netns", "exec", &p.netns, "ip", "addr", "add", &ns_cidr, "dev", &p.ns_if,
                ],
            ),
            (
                "ip",
                vec![
                    "netns", "exec", &p.netns, "ip", "link", "set", &p.ns_if, "up",
                ],
            ),
            (
                "ip",
                vec!["netns", "exec", &p.netns, "ip", "link", "set", "lo", "up"],
            ),
        ];
        for (cmd, args) in &steps {
            if let Err(e) = run(cmd, args) {
                // Deleting the namespace deletes the veth pair with it.
                let _ = run("ip", &["netns", "del", &p.netns]);
                let _ = run("ip", &["link", "del", &host_if]);
                return Err(e);
            }
        }
        Ok(p)
    }

    /// The host end's address: where the relay's upstream must listen.
    pub fn host_ip(&self) -> Ipv4Addr {
        self.host_ip
    }

    /// The namespace's name (`ip netns exec NAME …`).
    pub fn netns(&self) -> &str {
        &self.netns
    }

    /// Start the relay inside the namespace, forwarding to `upstream` (an
    /// address on [`LossyPath::host_ip`]); returns where clients connect.
    pub async fn start_relay(&mut self, upstream: SocketAddr, seed: u64) -> io::Result<SocketAddr> {
        if let Some(r) = &self.relay {
            return Ok(r.addr);
        }
        let ns_path = format!("/run/netns/{}", self.netns);
        let listen = SocketAddr::from((self.ns_ip, 0));
        let stop = CancellationToken::new();
        let (tx, rx) = oneshot::channel::<io::Result<SocketAddr>>();
        let thread_stop = stop.clone();
        let thread = std::thread::Builder::new()
            .name(format!("{}-relay", self.netns))
            .spawn(move || {
                // Every socket this thread makes belongs to the namespace
                // it is in; the rest of the process stays where it was.
                let entered = std::fs::File::open(&ns_path).and_then(|f| {
                    nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET)
                        .map_err(io::Error::from)
                });
                let rt = entered.and_then(|()| {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                });
                let rt = match rt {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                rt.block_on(async move {
                    match FaultProxy::start(listen, upstream, seed).await {
                        Ok(proxy) => {
                            let _ = tx.send(Ok(proxy.local_addr()));
                            thread_stop.cancelled().await;
                            proxy.shutdown().await;
                        }
                        Err(e) => {
                            let _ = tx.send(Err(e));
                        }
                    }
                });
            })?;
        let addr = rx
            .await
            .map_err(|_| io::Error::other("the relay thread ended before it listened"))??;
        self.relay = Some(Relay { addr, stop, thread });
        Ok(addr)
    }

    /// Drop `percent` (1..=100) of the packets that arrive in the namespace
    /// over the veth, at random; replaces any earlier rule.
    pub fn set_loss(&self, percent: u8) -> io::Result<()> {
        let percent = percent.clamp(1, 100);
        let rules = format!(
            "add table inet {TABLE}; flush table inet {TABLE}; \
             add chain inet {TABLE} input {{ type filter hook input priority 0; policy accept; }}; \
             add rule inet {TABLE} input iifname \"{}\" numgen random mod 100 < {percent} counter drop",
            self.ns_if
        );
        run("ip", &["netns", "exec", &self.netns, "nft", &rules])
    }

    /// Stop dropping (the rule goes; counted drops are lost with it).
    pub fn clear_loss(&self) -> io::Result<()> {
        let _ = run(
            "ip",
            &[
                "netns",
                "exec",
                &self.netns,
                "nft",
                &format!("delete table inet {TABLE}"),
            ],
        );
        Ok(())
    }

    /// Packets the current rule has dropped (0 without a rule).
    pub fn dropped(&self) -> u64 {
        let Some(ip) = program("ip") else { return 0 };
        let out = Command::new(ip)
            .args([
                "netns",
                "exec",
                &self.netns,
                "nft",
                "list",
                "table",
                "inet",
                TABLE,
            ])
            .output();
        let Ok(out) = out else { return 0 };
        let text = String::from_utf8_lossy(&out.stdout);
        text.split_whitespace()
            .skip_while(|w| *w != "packets")
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }

    /// Stop the relay and delete the namespace (and with it the veth pair);
    /// dropping the path does the same.
    fn teardown(&mut self) {
        if let Some(r) = self.relay.take() {
            r.stop.cancel();
            let _ = r.thread.join();
        }
        let _ = run("ip", &["netns", "del", &self.netns]);
    }
}

impl Drop for LossyPath {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// Delete the namespaces of earlier runs whose process is gone (a run killed
/// before it could clean up); returns their names.
pub fn remove_stale() -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/run/netns") else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("ssn-")
            .and_then(|r| r.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists()
            && run("ip", &["netns", "del", &name]).is_ok()
        {
            removed.push(name);
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::TcpStream,
    };

    use super::*;
    use crate::fault_proxy::tests::echo_server;

    /// Through the namespace with 10 % of packets dropped: every byte comes
    /// back intact (TCP retransmitted what the kernel dropped), the rule
    /// counted its drops, and dropping the path removes the namespace.
    #[tokio::test(flavor = "multi_thread")]
    async fn the_kernel_drops_real_packets_and_tcp_still_delivers_every_byte() {
        if let Err(why) = preflight() {
            // scripts/bootstrap.sh installs iproute2 and nftables, and CI runs
            // as root; a developer's unprivileged run cannot make a namespace.
            eprintln!("not run: {why}");
            return;
        }
        let echo = echo_server().await;
        let mut path = LossyPath::create(251).unwrap();
        let proxy = FaultProxy::start((path.host_ip(), 0).into(), echo, 1)
            .await
            .unwrap();
        let relay = path.start_relay(proxy.local_addr(), 1).await.unwrap();
        assert_eq!(
            relay.ip(),
            std::net::IpAddr::from(Ipv4Addr::new(10, 213, 251, 2))
        );
        path.set_loss(10).unwrap();

        let sent: Vec<u8> = (0..256 * 1024).map(|i| (i * 7 % 251) as u8).collect();
        let stream = TcpStream::connect(relay).await.unwrap();
        let (mut r, mut w) = stream.into_split();
        let to_send = sent.clone();
        let writer = tokio::spawn(async move {
            w.write_all(&to_send).await.unwrap();
            w
        });
        let mut got = vec![0u8; sent.len()];
        let started = std::time::Instant::now();
        tokio::time::timeout(Duration::from_secs(60), r.read_exact(&mut got))
            .await
            .expect("echoed within 60 s")
            .unwrap();
        let _w = writer.await.unwrap();
        let dropped = path.dropped();
        eprintln!(
            "256 KiB there and back through 10 % loss in {:?}; the kernel dropped {dropped} packets",
            started.elapsed()
        );
        assert!(got == sent, "the bytes came back changed");
        assert!(dropped > 0, "no packet was dropped");

        path.clear_loss().unwrap();
        assert_eq!(path.dropped(), 0, "the rule is gone");
        let netns = format!("/run/netns/{}", path.netns());
        assert!(Path::new(&netns).exists());
        drop(path);
        assert!(!Path::new(&netns).exists(), "{netns} left behind");
    }
}
