//! Detached processes with pid files: spawn in a new process group with output
//! to a log file, check liveness, stop the whole group with a grace period.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use nix::{
    sys::signal::{Signal, killpg},
    unistd::Pid,
};
use serde::{Deserialize, Serialize};

/// What a pid file records about a process we started.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PidRecord {
    pub pid: u32,
    pub started_at_ms: i64,
    pub command: String,
}

/// How to run one process.
#[derive(Debug, Clone)]
pub struct ProcessSpec {
    pub name: String,
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: PathBuf,
    /// Run as this user (uid, gid) — Postgres refuses to run as root.
    pub user: Option<(u32, u32)>,
    /// Signal for a fast, clean stop (Postgres: SIGINT = fast shutdown).
    pub stop_signal: Signal,
}

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("could not start {name} ({program}): {source}")]
    Spawn {
        name: String,
        program: String,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ProcessError + '_ {
    move |source| ProcessError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Start `spec` detached (own process group, stdin closed, output appended to
/// `log`), and record its pid in `pid_file`.
pub fn spawn(spec: &ProcessSpec, log: &Path, pid_file: &Path) -> Result<u32, ProcessError> {
    use std::os::unix::process::CommandExt;
    if let Some(dir) = log.parent() {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
    }
    let out = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(io_err(log))?;
    let err = out.try_clone().map_err(io_err(log))?;
    let mut cmd = Command::new(&spec.program);
    cmd.args(&spec.args)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&spec.cwd)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0);
    if let Some((uid, gid)) = spec.user {
        cmd.uid(uid).gid(gid);
    }
    let child = cmd.spawn().map_err(|source| ProcessError::Spawn {
        name: spec.name.clone(),
        program: spec.program.display().to_string(),
        source,
    })?;
    let pid = child.id();
    // The child is deliberately not waited on: it outlives this process.
    drop(child);
    let rec = PidRecord {
        pid,
        started_at_ms: shopstream_platform::clock::Clock::now_ms(
            &shopstream_platform::clock::SystemClock,
        ),
        command: format!("{} {}", spec.program.display(), spec.args.join(" ")),
    };
    if let Some(dir) = pid_file.parent() {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
    }
    fs::write(
        pid_file,
        serde_json::to_vec_pretty(&rec).unwrap_or_default(),
    )
    .map_err(io_err(pid_file))?;
    Ok(pid)
}

/// The pid record in `pid_file`, if there is a readable one.
pub fn read_pid(pid_file: &Path) -> Option<PidRecord> {
    serde_json::from_slice(&fs::read(pid_file).ok()?).ok()
}

/// True if `pid` is a live process (zombies count as dead).
pub fn is_alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            // state is the field after the parenthesised command name
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next());
            match state {
                // A killed multi-threaded process: its leader turns zombie
                // first while the other threads are still exiting, and its
                // sockets stay open until the last one is gone. Only then is
                // the process gone (a restart can bind its port again).
                Some("Z") | Some("X") => fs::read_dir(format!("/proc/{pid}/task"))
                    .map(|tasks| tasks.count() > 1)
                    .unwrap_or(false),
                None => false,
                Some(_) => true,
            }
        }
        Err(_) => false,
    }
}

/// Pids of `pid` and all its descendants.
pub fn process_tree(pid: u32) -> Vec<u32> {
    let mut parent_of: Vec<(u32, u32)> = Vec::new();
    if let Ok(entries) = fs::read_dir("/proc") {
        for e in entries.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if let Ok(stat) = fs::read_to_string(format!("/proc/{p}/stat"))
                && let Some((_, rest)) = stat.rsplit_once(')')
                && let Some(ppid) = rest.split_whitespace().nth(1).and_then(|s| s.parse().ok())
            {
                parent_of.push((p, ppid));
            }
        }
    }
    let mut tree = vec![pid];
    let mut i = 0;
    while i < tree.len() {
        let cur = tree[i];
        tree.extend(
            parent_of
                .iter()
                .filter(|(_, pp)| *pp == cur)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    tree
}

/// One reading of every process's `/proc/<pid>/stat`: parents, CPU time,
/// resident memory and start time, so a caller watching many process trees
/// (`shopstream dash`) scans `/proc` once per refresh instead of once per tree.
#[derive(Debug, Clone, Default)]
pub struct ProcTable {
    procs: std::collections::HashMap<u32, ProcStat>,
    /// Seconds since boot when the table was read.
    uptime_s: f64,
    ticks_per_s: f64,
    page_kib: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ProcStat {
    ppid: u32,
    /// utime + stime, in clock ticks.
    cpu_ticks: u64,
    rss_pages: u64,
    /// Start time after boot, in clock ticks.
    start_ticks: u64,
}

/// The fields of one `/proc/<pid>/stat` line that [`ProcTable`] keeps.
fn parse_stat(text: &str) -> Option<ProcStat> {
    // `pid (comm) state ppid ...`: comm may hold spaces and parentheses.
    let (_, rest) = text.rsplit_once(')')?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // f[0] is field 3 (state); field n is f[n - 3].
    let num = |n: usize| f.get(n - 3)?.parse::<u64>().ok();
    Some(ProcStat {
        ppid: u32::try_from(num(4)?).ok()?,
        cpu_ticks: num(14)? + num(15)?,
        start_ticks: num(22)?,
        rss_pages: num(24)?,
    })
}

impl ProcTable {
    /// Read every process now.
    pub fn read() -> ProcTable {
        let mut procs = std::collections::HashMap::new();
        if let Ok(entries) = fs::read_dir("/proc") {
            for e in entries.flatten() {
                let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                    continue;
                };
                if let Some(st) = fs::read_to_string(format!("/proc/{p}/stat"))
                    .ok()
                    .as_deref()
                    .and_then(parse_stat)
                {
                    procs.insert(p, st);
                }
            }
        }
        let uptime_s = fs::read_to_string("/proc/uptime")
            .ok()
            .and_then(|t| t.split_whitespace().next()?.parse().ok())
            .unwrap_or(0.0);
        let sysconf = |v| nix::unistd::sysconf(v).ok().flatten().filter(|n| *n > 0);
        ProcTable {
            procs,
            uptime_s,
            ticks_per_s: sysconf(nix::unistd::SysconfVar::CLK_TCK).unwrap_or(100) as f64,
            page_kib: (sysconf(nix::unistd::SysconfVar::PAGE_SIZE).unwrap_or(4096) / 1024) as u64,
        }
    }

    /// `pid` and its descendants, as the table saw them.
    pub fn tree(&self, pid: u32) -> Vec<u32> {
        if !self.procs.contains_key(&pid) {
            return Vec::new();
        }
        let mut tree = vec![pid];
        let mut i = 0;
        while i < tree.len() {
            let cur = tree[i];
            tree.extend(
                self.procs
                    .iter()
                    .filter(|(_, st)| st.ppid == cur)
                    .map(|(p, _)| *p),
            );
            i += 1;
        }
        tree
    }

    /// CPU seconds (user + system) the tree of `pid` has used so far.
    pub fn tree_cpu_s(&self, pid: u32) -> f64 {
        let ticks: u64 = self.tree(pid).iter().map(|p| self.procs[p].cpu_ticks).sum();
        ticks as f64 / self.ticks_per_s
    }

    /// Resident memory of the tree of `pid`, in KiB (shared pages counted
    /// once per process, as in [`TreeMemory::rss_kib`]).
    pub fn tree_rss_kib(&self, pid: u32) -> u64 {
        self.tree(pid)
            .iter()
            .map(|p| self.procs[p].rss_pages * self.page_kib)
            .sum()
    }

    /// How long `pid` has been running.
    pub fn age(&self, pid: u32) -> Option<Duration> {
        let st = self.procs.get(&pid)?;
        let started_s = st.start_ticks as f64 / self.ticks_per_s;
        Some(Duration::from_secs_f64(
            (self.uptime_s - started_s).max(0.0),
        ))
    }
}

/// CPU seconds (user + system) that named process trees had used at one
/// moment: two readings give each tree's CPU between them.
#[derive(Debug, Clone)]
pub struct CpuReading {
    pub at: Instant,
    pub seconds: std::collections::BTreeMap<&'static str, f64>,
}

impl CpuReading {
    /// Read the trees of `pids` (name, root pid) now.
    pub fn of(pids: &[(&'static str, u32)]) -> CpuReading {
        let table = ProcTable::read();
        CpuReading {
            at: Instant::now(),
            seconds: pids
                .iter()
                .map(|&(name, pid)| (name, table.tree_cpu_s(pid)))
                .collect(),
        }
    }

    /// Each tree's CPU seconds since `earlier`, for the names in both. A
    /// tree whose process was replaced in between (a restart) counts 0
    /// rather than a negative.
    pub fn since(&self, earlier: &CpuReading) -> std::collections::BTreeMap<&'static str, f64> {
        self.seconds
            .iter()
            .filter_map(|(name, now)| {
                let then = earlier.seconds.get(name)?;
                Some((*name, (now - then).max(0.0)))
            })
            .collect()
    }

    /// Wall time since `earlier`.
    pub fn elapsed_since(&self, earlier: &CpuReading) -> Duration {
        self.at.saturating_duration_since(earlier.at)
    }
}

/// Memory of a process tree, in KiB.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TreeMemory {
    /// Resident set size: every page a process maps counts in full, so pages
    /// shared between processes (a binary's text, Postgres' shared buffers)
    /// count once per process.
    pub rss_kib: u64,
    /// Proportional set size: a shared page counts split between the
    /// processes that map it, so PSS adds up across processes. `None` when
    /// some live process's `smaps_rollup` could not be read (another user's
    /// process without the right to read it, or a kernel before 4.14).
    pub pss_kib: Option<u64>,
}

/// `Rss` and `Pss` (KiB) of one `/proc/<pid>/smaps_rollup`; `None` unless both
/// are there.
pub fn parse_smaps_rollup(text: &str) -> Option<(u64, u64)> {
    let field = |name: &str| {
        text.lines().find_map(|l| {
            let rest = l.strip_prefix(name)?.strip_prefix(':')?;
            let mut words = rest.split_whitespace();
            let kib = words.next()?.parse::<u64>().ok()?;
            // The kernel writes every size in kB; refuse anything else.
            (words.next() == Some("kB")).then_some(kib)
        })
    };
    Some((field("Rss")?, field("Pss")?))
}

/// `VmRSS` (KiB) of one `/proc/<pid>/status`.
fn parse_status_rss(text: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// RSS and PSS of `pid` and all its descendants (Postgres' backends, a
/// shell's children). A process that exits while it is being read is left
/// out.
pub fn tree_memory(pid: u32) -> TreeMemory {
    let mut total = TreeMemory {
        rss_kib: 0,
        pss_kib: Some(0),
    };
    for p in process_tree(pid) {
        let rollup = fs::read_to_string(format!("/proc/{p}/smaps_rollup")).ok();
        match rollup.as_deref().and_then(parse_smaps_rollup) {
            Some((rss, pss)) => {
                total.rss_kib += rss;
                total.pss_kib = total.pss_kib.map(|t| t + pss);
            }
            None => {
                // Kernel threads and zombies have an empty rollup and no VmRSS:
                // they use no memory of their own.
                let status = fs::read_to_string(format!("/proc/{p}/status")).ok();
                if let Some(rss) = status.as_deref().and_then(parse_status_rss) {
                    total.rss_kib += rss;
                    total.pss_kib = None;
                }
            }
        }
    }
    total
}

/// Resident memory of `pid` and its descendants, in KiB (shared pages counted
/// once per process; see [`tree_memory`] for PSS).
pub fn tree_rss_kib(pid: u32) -> u64 {
    tree_memory(pid).rss_kib
}

/// Stop the process group led by `pid`: `signal`, then SIGKILL after `grace`.
/// Returns once the leader and every descendant seen at the start are gone
/// (bounded); true if the leader stopped within the grace period.
pub async fn stop(pid: u32, signal: Signal, grace: Duration) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return true;
    };
    let group = Pid::from_raw(raw);
    if !is_alive(pid) {
        return true;
    }
    let tree = process_tree(pid);
    let _ = killpg(group, signal);
    let graceful = wait_gone(&[pid], grace).await;
    // Whatever of the group is left (children of a stopped leader, or all of
    // it after the grace period) goes now.
    let _ = killpg(group, Signal::SIGKILL);
    wait_gone(&tree, Duration::from_secs(5)).await;
    graceful
}

/// Wait until none of `pids` is alive, at most `limit`; true if they all went.
async fn wait_gone(pids: &[u32], limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if pids.iter().all(|p| !is_alive(*p)) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real rollup (Linux 6.x), trimmed of nothing.
    const ROLLUP: &str = "\
555821733000-7ffeac5b2000 ---p 00000000 00:00 0                          [rollup]
Rss:                1672 kB
Pss:                 250 kB
Pss_Dirty:           112 kB
Pss_Anon:            112 kB
Pss_File:            138 kB
Pss_Shmem:             0 kB
Shared_Clean:       1520 kB
Shared_Dirty:          0 kB
Private_Clean:        40 kB
Private_Dirty:       112 kB
Referenced:         1672 kB
Anonymous:           112 kB
Swap:                  0 kB
SwapPss:               0 kB
Locked:                0 kB
";

    #[test]
    fn smaps_rollup_gives_rss_and_pss_not_their_look_alikes() {
        // `Pss_Dirty`, `Pss_Anon`, `SwapPss` must not be taken for `Pss`.
        assert_eq!(parse_smaps_rollup(ROLLUP), Some((1672, 250)));
        let reordered = "SwapPss: 7 kB\nPss_Anon: 5 kB\nPss: 3 kB\nRss: 9 kB\n";
        assert_eq!(parse_smaps_rollup(reordered), Some((9, 3)));
    }

    #[test]
    fn smaps_rollup_without_both_sizes_is_none() {
        // A kernel thread's or a zombie's rollup is empty.
        assert_eq!(parse_smaps_rollup(""), None);
        assert_eq!(parse_smaps_rollup("Rss: 12 kB\n"), None);
        assert_eq!(parse_smaps_rollup("Rss: 12 kB\nPss: x kB\n"), None);
        assert_eq!(parse_smaps_rollup("Rss: 12 kB\nPss: 3 MB\n"), None);
    }

    #[test]
    fn status_gives_vm_rss() {
        let status = "Name:\tsleep\nVmPeak:\t  8 kB\nVmRSS:\t    1024 kB\nRssAnon:\t 96 kB\n";
        assert_eq!(parse_status_rss(status), Some(1024));
        assert_eq!(parse_status_rss("Name:\tkthreadd\n"), None);
    }

    #[test]
    fn own_process_has_pss_no_larger_than_rss() {
        let mem = tree_memory(std::process::id());
        let pss = mem.pss_kib.expect("own smaps_rollup is readable");
        assert!(pss > 0 && pss <= mem.rss_kib, "{mem:?}");
    }

    #[tokio::test]
    async fn spawn_record_and_stop_a_process_group() {
        let dir = std::env::temp_dir().join(format!("ss-proc-{}", std::process::id()));
        let spec = ProcessSpec {
            name: "sleeper".into(),
            program: "sh".into(),
            // a parent with a child: both must go
            args: vec!["-c".into(), "sleep 300 & sleep 300".into()],
            env: vec![],
            cwd: std::env::temp_dir(),
            user: None,
            stop_signal: Signal::SIGTERM,
        };
        let pid = spawn(&spec, &dir.join("s.log"), &dir.join("s.pid")).unwrap();
        assert_eq!(read_pid(&dir.join("s.pid")).unwrap().pid, pid);
        let deadline = Instant::now() + Duration::from_secs(5);
        while process_tree(pid).len() < 2 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let tree = process_tree(pid);
        assert!(tree.len() >= 2, "{tree:?}");
        assert!(tree_rss_kib(pid) > 0);
        let mem = tree_memory(pid);
        let pss = mem
            .pss_kib
            .expect("own processes' smaps_rollup is readable");
        assert!(pss > 0 && pss <= mem.rss_kib, "{mem:?}");
        assert!(stop(pid, Signal::SIGTERM, Duration::from_secs(5)).await);
        for p in tree {
            assert!(!is_alive(p), "pid {p} survived");
        }
        let _ = fs::remove_dir_all(dir);
    }
    #[test]
    fn the_proc_table_reads_this_process_and_parses_stat_lines() {
        let st = parse_stat(
            "42 (a (weird) name) S 7 42 42 0 -1 4194304 100 0 0 0 250 50 0 0 20 0 4 0 12345 999 321 18446744073709551615",
        )
        .unwrap();
        assert_eq!(
            (st.ppid, st.cpu_ticks, st.start_ticks, st.rss_pages),
            (7, 300, 12345, 321)
        );
        let me = std::process::id();
        let t = ProcTable::read();
        assert_eq!(t.tree(me).first(), Some(&me));
        assert!(t.tree_rss_kib(me) > 0);
        assert!(t.age(me).is_some());
        assert!(t.tree(u32::MAX).is_empty());
    }
}
