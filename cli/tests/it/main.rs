//! The `shopstream` binary end to end: `doctor` names what is missing, and
//! `up` → `status` → `up` again → `down` leaves no process behind; the labs
//! and `fault` in [`lab`].

mod checkout;
mod elsewhere;
mod faults;
mod lab;
mod live;
mod scenario;

use shopstream_platform::config::Ports;
use shopstream_runtime::Kind;
use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

const BIN: &str = env!("CARGO_BIN_EXE_shopstream");

/// Every stack these tests boot has ports of its own, all below Linux's
/// ephemeral range (32768+), where any outgoing connection could be holding
/// one for a moment, and clear of the dev stack (`Ports::DEV`) and the test
/// kit's shared stack (25xxx-29xxx). By leading digits: 13 never booted (the
/// "nothing is up" checks), 14 [`faults`], 19 the cdc-latency lab, 20
/// [`checkout`], 21 [`scenario`], 22 the other labs, 23 and 24 `up` here.
const fn ports(prefix: u16) -> Ports {
    let base = prefix * 1000;
    Ports {
        postgres: base + 432,
        redis: base + 379,
        kafka: base + 92,
        temporal: base + 233,
        temporal_http: base + 243,
        temporal_metrics: base + 263,
        s3: base,
        services: base + 100,
    }
}

/// Ports on which nothing is ever started.
const NOTHING_UP: Ports = ports(13);

/// This module's stacks: 23xxx, and 24xxx for the `--watch` one.
const PORTS: Ports = ports(23);

/// `shopstream ARGS` against the stack in `state` on `ports`.
fn cli(state: &Path, ports: &Ports, args: &[&str]) -> Output {
    cli_command(state, ports)
        .args(args)
        .output()
        .expect("run shopstream")
}

/// The `shopstream` command for the stack in `state` on `ports`, to be given
/// its arguments (and stdio) by the caller.
fn cli_command(state: &Path, ports: &Ports) -> Command {
    let mut c = Command::new(BIN);
    c.env("SHOPSTREAM_STATE_DIR", state).envs(ports.env_vars());
    c
}

fn run(state: &Path, args: &[&str]) -> Output {
    cli(state, &PORTS, args)
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn temp_dir(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "{name}-{}-{:x}",
        std::process::id(),
        rand_suffix()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// Pids of live processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == std::process::id() {
            continue;
        }
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if stat
            .rsplit_once(')')
            .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
        {
            continue;
        }
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
            .unwrap_or_default();
        if cmd.contains(needle) {
            out.push((pid, cmd));
        }
    }
    out
}

/// Stops and purges a stack when dropped, so a failing assertion leaves no
/// processes holding the test ports.
struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = Command::new(BIN)
            .args(["down", "--purge"])
            .env("SHOPSTREAM_STATE_DIR", &self.0)
            .output();
    }
}

/// Kills a child process when dropped.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn doctor_names_a_missing_redis_server_and_how_to_install_it() {
    // A PATH with everything the runtime needs except redis-server.
    let bin_dir = temp_dir("path-without-redis");
    for tool in ["sh", "sqlite3", "python3", "cargo", "tansu", "temporal"] {
        let found = std::env::var_os("PATH").and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(tool))
                .find(|c| c.exists())
        });
        if let Some(path) = found {
            std::os::unix::fs::symlink(path, bin_dir.join(tool)).unwrap();
        }
    }
    let out = Command::new(BIN)
        .arg("doctor")
        .env("PATH", &bin_dir)
        .output()
        .unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(3), "{t}");
    let line = t.lines().find(|l| l.starts_with("redis-server")).expect(&t);
    assert!(line.contains("MISSING"), "{line}");
    assert!(line.contains("apt-get install -y redis-server"), "{line}");

    let out = Command::new(BIN)
        .args(["doctor", "--json"])
        .env("PATH", &bin_dir)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], false);
    let redis = v["prerequisites"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "redis-server")
        .unwrap();
    assert!(redis["path"].is_null());

    // `up` fails fast, names the binary, and starts nothing.
    let state = temp_dir("up-without-redis");
    let out = cli_command(&state, &PORTS)
        .args(["up", "--no-install"])
        .env("PATH", &bin_dir)
        .output()
        .unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(3), "{t}");
    assert!(t.contains("redis-server not found"), "{t}");
    assert!(processes_mentioning(state.to_str().unwrap()).is_empty());

    // Without python3 (and no temporal in an empty cache), `up` names python3
    // and its install command instead of failing inside the installer.
    let doctor: serde_json::Value = serde_json::from_slice(
        &Command::new(BIN)
            .args(["doctor", "--json"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let path_of = |name: &str| {
        doctor["prerequisites"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .and_then(|p| p["path"].as_str())
            .map(PathBuf::from)
    };
    let no_python = temp_dir("path-without-python");
    for tool in ["redis-server", "sqlite3", "cargo", "tansu"] {
        if let Some(p) = path_of(tool) {
            std::os::unix::fs::symlink(p, no_python.join(tool)).unwrap();
        }
    }
    std::os::unix::fs::symlink("/bin/sh", no_python.join("sh")).unwrap();
    let empty_cache = temp_dir("empty-cache");
    let out = cli_command(&state, &PORTS)
        .args(["up"])
        .env("SHOPSTREAM_CACHE_DIR", &empty_cache)
        .env("PATH", &no_python)
        .output()
        .unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(3), "{t}");
    assert!(
        t.contains("needs python3") && t.contains("apt-get install -y python3"),
        "{t}"
    );
    for d in [bin_dir, state, no_python, empty_cache] {
        let _ = std::fs::remove_dir_all(d);
    }
}

#[test]
fn status_cpu_shows_which_component_burns_cpu() {
    // Two stand-ins recorded as components: a busy loop as the gateway, a
    // sleeper as the catalog. Nothing else runs.
    let state = temp_dir("status-cpu");
    std::fs::create_dir_all(state.join("run")).unwrap();
    let mut burner = Command::new("sh")
        .args(["-c", "while :; do :; done"])
        .spawn()
        .unwrap();
    let mut sleeper = Command::new("sleep").arg("120").spawn().unwrap();
    for (name, child) in [("gateway", &burner), ("catalog", &sleeper)] {
        let record = serde_json::json!({"pid": child.id(), "started_at_ms": 0, "command": name});
        std::fs::write(
            state.join("run").join(format!("{name}.pid")),
            record.to_string(),
        )
        .unwrap();
    }
    let out = cli(&state, &NOTHING_UP, &["status", "--cpu", "1", "--json"]);
    let table = cli(&state, &NOTHING_UP, &["status", "--cpu", "0.5"]);
    let _ = burner.kill();
    let _ = sleeper.kill();
    let _ = (burner.wait(), sleeper.wait());
    // Not ready (the stand-ins answer no probe), but measured.
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    let st: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let cpu = |name: &str| {
        st["components"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap()["cpu_percent"]
            .as_f64()
    };
    let (gateway, catalog) = (cpu("gateway").unwrap(), cpu("catalog").unwrap());
    assert!(gateway > catalog, "the busy loop used more: {st:#}");
    assert_eq!(catalog, 0.0, "a sleeper uses none: {st:#}");
    assert_eq!(cpu("postgres"), None, "not running, not measured: {st:#}");
    let total = st["cpu_percent_total"].as_f64().unwrap();
    assert!((total - gateway - catalog).abs() < 0.2, "{st:#}");
    assert_eq!(st["cpu_window_s"], 1.0);
    let shown = text(&table);
    assert!(shown.contains("cpu"), "{shown}");
    assert!(shown.contains("the most gateway"), "{shown}");
    // A window out of range is a usage error.
    let bad = cli(&state, &NOTHING_UP, &["status", "--cpu", "0"]);
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad));
}

#[test]
fn up_status_up_again_down_leaves_no_process_behind() {
    // Inside a directory only root can enter (as a checkout under /root is):
    // Postgres, which runs unprivileged, must still come up.
    let private = temp_dir("private");
    std::fs::set_permissions(
        &private,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let state = private.join("stack");
    let _cleanup = Cleanup(state.clone());
    let state_s = state.to_str().unwrap().to_string();

    let out = run(&state, &["up", "--json", "--no-install"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let up: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let comps = up.as_array().unwrap();
    assert_eq!(
        comps.len(),
        Kind::ALL.len(),
        "five infrastructure components and nine services"
    );
    assert!(comps.iter().all(|c| c["ready"] == true), "{up:#}");
    let pids: Vec<u32> = comps
        .iter()
        .map(|c| c["pid"].as_u64().unwrap() as u32)
        .collect();

    let out = run(&state, &["status", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let st: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(st["ready"], true);
    assert_eq!(st["components"][0]["port"], 23432);

    // Up again: nothing restarts.
    let out = run(&state, &["up", "--no-install"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        text(&out).matches("already running").count(),
        Kind::ALL.len(),
        "{}",
        text(&out)
    );

    // Something is running under the state dir now...
    assert!(!processes_mentioning(&state_s).is_empty());

    let out = run(&state, &["down", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let down: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        down["stopped"].as_array().unwrap().len(),
        Kind::ALL.len(),
        "{down}"
    );
    // Every component stops on its own signal within the grace period.
    assert_eq!(down["killed_after_grace"], serde_json::json!([]), "{down}");
    // ...and nothing after down: not the recorded pids, not their children.
    let left = processes_mentioning(&state_s);
    assert!(left.is_empty(), "left behind: {left:?}");
    for pid in pids {
        assert!(
            !Path::new(&format!("/proc/{pid}/cmdline")).exists() || {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                stat.rsplit_once(')')
                    .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
            },
            "pid {pid} survived down"
        );
    }

    let out = run(&state, &["status"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));

    let out = run(&state, &["down", "--purge"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(!state.exists());
    let fallback = shopstream_runtime::components::postgres_fallback_dir(&state);
    assert!(!fallback.exists(), "{} left behind", fallback.display());
    let _ = std::fs::remove_dir_all(private);
}

#[test]
fn up_watch_restarts_a_component_killed_with_sigkill() {
    let state = temp_dir("watch");
    let _cleanup = Cleanup(state.clone());
    // Declared after `_cleanup`, so dropped first: on a failed assertion the
    // watcher stops before `down`, instead of restarting what `down` stops.
    let mut watch = KillOnDrop(
        cli_command(&state, &ports(24))
            .args(["up", "--watch", "--no-install"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let redis_pid = || -> Option<u32> {
        let rec: serde_json::Value =
            serde_json::from_slice(&std::fs::read(state.join("run/redis.pid")).ok()?).ok()?;
        let pid = rec["pid"].as_u64()? as u32;
        Path::new(&format!("/proc/{pid}")).exists().then_some(pid)
    };
    let ready = |deadline_s: u64| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(deadline_s);
        while std::time::Instant::now() < deadline {
            let out = Command::new(BIN)
                .args(["status", "--json"])
                .env("SHOPSTREAM_STATE_DIR", &state)
                .output()
                .unwrap();
            if out.status.success() {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        false
    };
    assert!(ready(60), "stack did not come up under --watch");
    let first = redis_pid().expect("redis pid");
    Command::new("kill")
        .args(["-9", &first.to_string()])
        .status()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut second = None;
    while std::time::Instant::now() < deadline {
        if let Some(p) = redis_pid().filter(|p| *p != first) {
            second = Some(p);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(second.is_some(), "redis was not restarted after kill -9");
    assert!(ready(30), "stack not ready again after the restart");

    Command::new("kill")
        .args(["-INT", &watch.0.id().to_string()])
        .status()
        .unwrap();
    let _ = watch.0.wait();
    let out = Command::new(BIN)
        .args(["down", "--purge"])
        .env("SHOPSTREAM_STATE_DIR", &state)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(processes_mentioning(state.to_str().unwrap()).is_empty());
}

/// With nothing running, `dash --once` draws every component as down with
/// the way to start the stack and exits 4; `trace` exits 4 naming the
/// collector and how to start it; a malformed size is a usage error.
#[test]
fn dash_and_trace_without_a_stack_say_how_to_start_it() {
    let state = temp_dir("dash-nothing-up");
    let _cleanup = Cleanup(state.clone());
    let out = cli(&state, &NOTHING_UP, &["dash", "--once", "--size", "120x30"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    let frame = String::from_utf8_lossy(&out.stdout);
    assert!(frame.contains("components 0/21 ready"), "{frame}");
    assert!(frame.contains("start it with `shopstream up`"), "{frame}");
    let out = cli(&state, &NOTHING_UP, &["dash", "--once", "--json"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    let snapshot: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(snapshot["all_down"], true, "{snapshot:#}");
    assert!(
        snapshot["components"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["state"] == "down"),
        "{snapshot:#}"
    );
    let out = cli(&state, &NOTHING_UP, &["dash", "--once", "--size", "wide"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let out = cli(
        &state,
        &NOTHING_UP,
        &["trace", "0af7651916cd43dd8448eb211c80319c"],
    );
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(
        text(&out).contains("trace collector is not reachable")
            && text(&out).contains("shopstream up"),
        "{}",
        text(&out)
    );
}
