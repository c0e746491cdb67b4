//! Can Docker be used here? The checks `up --runtime compose|testcontainers`
//! make before they touch anything, each failure one line with its fix.
//!
//! The engine is asked the way every client asks it: `GET /_ping` on the
//! socket `DOCKER_HOST` names (default `/var/run/docker.sock`), answered
//! `200 OK` by a running engine. No Docker library is needed for that, so the
//! check is plain std and testable against a fake socket.

use std::{
    io::{ErrorKind, Read, Write},
    net::{TcpListener, TcpStream, ToSocketAddrs},
    path::{Path, PathBuf},
    time::Duration,
};

use crate::prereq;

/// Where `DOCKER_HOST` unset means the engine is.
pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";

/// How long the ping may take before the engine counts as not answering.
const PING_TIMEOUT: Duration = Duration::from_secs(5);

/// The oldest Compose that understands the compose file (optional `depends_on`).
pub const MIN_COMPOSE: (u32, u32) = (2, 20);

const INSTALL: &str = "install Docker Engine and its Compose plugin (see the Docker docs' \"Install Docker Engine\" page), or use the default native runtime: `shopstream up`";

/// Why Docker cannot be used. Each message names the cause and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("Docker is not installed (no `docker` on PATH): {INSTALL}")]
    NoCli,
    #[error(
        "the Docker engine is not running (nothing answers at {0}): start it (`sudo systemctl start docker`), or point DOCKER_HOST at a running engine"
    )]
    NotRunning(String),
    #[error(
        "the Docker engine at {0} refuses this user: add the user to the docker group (`sudo usermod -aG docker $USER`, then log in again), or run as root"
    )]
    PermissionDenied(String),
    #[error(
        "the Docker engine at {addr} did not answer its ping ({why}): restart it (`sudo systemctl restart docker`)"
    )]
    NoAnswer { addr: String, why: String },
    #[error(
        "`docker compose` {found}: Compose {}.{} or newer is needed; {INSTALL}",
        MIN_COMPOSE.0,
        MIN_COMPOSE.1
    )]
    NoCompose { found: String },
    #[error(
        "port {port} ({what}) is already in use{holder}: stop what holds it (`ss -ltnp 'sport = :{port}'` names it), then run this again"
    )]
    PortTaken {
        port: u16,
        what: String,
        /// ", by the native stack in DIR (`shopstream down` stops it)" when known.
        holder: String,
    },
}

/// Where the engine is, from `DOCKER_HOST` (`unix://PATH` or `tcp://HOST:PORT`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    Unix(PathBuf),
    Tcp(String),
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Address::Unix(p) => write!(f, "unix://{}", p.display()),
            Address::Tcp(a) => write!(f, "tcp://{a}"),
        }
    }
}

impl Address {
    /// `DOCKER_HOST`'s value (None or empty: the default socket).
    pub fn parse(docker_host: Option<&str>) -> Address {
        match docker_host.map(str::trim).filter(|s| !s.is_empty()) {
            None => Address::Unix(PathBuf::from(DEFAULT_SOCKET)),
            Some(h) => match h.strip_prefix("unix://") {
                Some(p) => Address::Unix(PathBuf::from(p)),
                None => Address::Tcp(
                    h.trim_start_matches("tcp://")
                        .trim_end_matches('/')
                        .to_string(),
                ),
            },
        }
    }

    pub fn from_env() -> Address {
        Address::parse(std::env::var("DOCKER_HOST").ok().as_deref())
    }
}

/// Is an engine answering at `addr`? `Ok` only when `/_ping` said `200 OK`.
pub fn ping(addr: &Address) -> Result<(), Problem> {
    let shown = addr.to_string();
    let answer = match addr {
        Address::Unix(path) => {
            if !path.exists() {
                return Err(Problem::NotRunning(shown));
            }
            let mut s = std::os::unix::net::UnixStream::connect(path)
                .map_err(|e| connect_problem(&e, &shown))?;
            s.set_read_timeout(Some(PING_TIMEOUT)).ok();
            s.set_write_timeout(Some(PING_TIMEOUT)).ok();
            exchange(&mut s)
        }
        Address::Tcp(hostport) => {
            let sock = hostport
                .to_socket_addrs()
                .ok()
                .and_then(|mut a| a.next())
                .ok_or_else(|| Problem::NotRunning(shown.clone()))?;
            let mut s = TcpStream::connect_timeout(&sock, PING_TIMEOUT)
                .map_err(|e| connect_problem(&e, &shown))?;
            s.set_read_timeout(Some(PING_TIMEOUT)).ok();
            s.set_write_timeout(Some(PING_TIMEOUT)).ok();
            exchange(&mut s)
        }
    };
    match answer {
        Ok(status) if status.contains(" 200 ") => Ok(()),
        Ok(status) => Err(Problem::NoAnswer {
            addr: shown,
            why: format!("it answered {status:?}"),
        }),
        Err(e) => Err(Problem::NoAnswer {
            addr: shown,
            why: e.to_string(),
        }),
    }
}

fn connect_problem(e: &std::io::Error, shown: &str) -> Problem {
    match e.kind() {
        ErrorKind::PermissionDenied => Problem::PermissionDenied(shown.to_string()),
        ErrorKind::ConnectionRefused | ErrorKind::NotFound | ErrorKind::TimedOut => {
            Problem::NotRunning(shown.to_string())
        }
        _ => Problem::NoAnswer {
            addr: shown.to_string(),
            why: e.to_string(),
        },
    }
}

/// Send the ping; return the response's status line.
fn exchange(s: &mut (impl Read + Write)) -> std::io::Result<String> {
    s.write_all(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")?;
    let mut buf = Vec::new();
    s.take(4096).read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf);
    Ok(text.lines().next().unwrap_or("").trim().to_string())
}

/// The engine is reachable (the testcontainers runtime needs no CLI).
pub fn check_engine() -> Result<(), Problem> {
    ping(&Address::from_env())
}

/// The `docker` CLI with Compose ≥ 2.20 and a running engine: what the
/// compose runtime drives. Returns the CLI's path.
pub fn check_compose() -> Result<PathBuf, Problem> {
    let docker = prereq::which("docker").ok_or(Problem::NoCli)?;
    check_engine()?;
    let out = std::process::Command::new(&docker)
        .args(["compose", "version", "--short"])
        .stdin(std::process::Stdio::null())
        .output();
    let found = match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_string(),
        Ok(o) => {
            return Err(Problem::NoCompose {
                found: format!(
                    "is missing ({})",
                    String::from_utf8_lossy(&o.stderr)
                        .lines()
                        .next()
                        .unwrap_or("")
                        .trim()
                ),
            });
        }
        Err(e) => {
            return Err(Problem::NoCompose {
                found: format!("could not run ({e})"),
            });
        }
    };
    match compose_version(&found) {
        Some(v) if v >= MIN_COMPOSE => Ok(docker),
        _ => Err(Problem::NoCompose {
            found: format!("is version {found:?}"),
        }),
    }
}

/// `2.40.3`, `v2.20.0-desktop.1` → (major, minor).
pub fn compose_version(s: &str) -> Option<(u32, u32)> {
    let s = s.trim().trim_start_matches('v');
    let mut parts = s.split(['.', '-', '+']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// Can `port` be published? Docker binds the wildcard address, so both it
/// and loopback must be free.
pub fn port_free(port: u16) -> bool {
    TcpListener::bind(("0.0.0.0", port)).is_ok() && TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// The first of `ports` (`(port, what)`) already in use, as a [`Problem`].
/// `native_root` is the state directory of a native stack that may hold them.
pub fn check_ports(ports: &[(u16, String)], native_root: Option<&Path>) -> Result<(), Problem> {
    for (port, what) in ports {
        if !port_free(*port) {
            let holder = native_root
                .filter(|r| native_stack_running(r))
                .map(|r| {
                    format!(
                        ", probably by the native stack in {} (`shopstream down` stops it)",
                        r.display()
                    )
                })
                .unwrap_or_default();
            return Err(Problem::PortTaken {
                port: *port,
                what: what.clone(),
                holder,
            });
        }
    }
    Ok(())
}

/// Does a native stack under `root` have a live process?
fn native_stack_running(root: &Path) -> bool {
    let Ok(dir) = std::fs::read_dir(root.join("run")) else {
        return false;
    };
    dir.flatten().any(|f| {
        crate::process::read_pid(&f.path()).is_some_and(|r| crate::process::is_alive(r.pid))
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixListener;

    use super::*;

    #[test]
    fn docker_host_values_name_the_engine() {
        assert_eq!(
            Address::parse(None),
            Address::Unix(PathBuf::from("/var/run/docker.sock"))
        );
        assert_eq!(Address::parse(Some("")), Address::parse(None));
        assert_eq!(
            Address::parse(Some("unix:///run/user/1000/docker.sock")),
            Address::Unix(PathBuf::from("/run/user/1000/docker.sock"))
        );
        assert_eq!(
            Address::parse(Some("tcp://10.0.0.5:2375/")),
            Address::Tcp("10.0.0.5:2375".into())
        );
    }

    #[test]
    fn no_socket_means_not_running_and_says_how_to_start_it() {
        let dir = tempdir();
        let addr = Address::Unix(dir.join("docker.sock"));
        let err = ping(&addr).unwrap_err();
        assert!(matches!(err, Problem::NotRunning(_)), "{err:?}");
        let line = err.to_string();
        assert!(!line.contains('\n'), "one line: {line}");
        assert!(line.contains("systemctl start docker"), "{line}");
        assert!(line.contains(&dir.display().to_string()), "{line}");
    }

    #[test]
    fn a_socket_nobody_listens_on_is_not_running() {
        let dir = tempdir();
        let path = dir.join("docker.sock");
        drop(UnixListener::bind(&path).unwrap()); // the file stays, nobody accepts
        let err = ping(&Address::Unix(path)).unwrap_err();
        assert!(matches!(err, Problem::NotRunning(_)), "{err:?}");
    }

    #[test]
    fn an_engine_that_answers_its_ping_is_running_and_one_that_errs_is_not() {
        for (answer, ok) in [
            ("HTTP/1.1 200 OK\r\nApi-Version: 1.47\r\n\r\nOK", true),
            ("HTTP/1.1 500 Internal Server Error\r\n\r\n", false),
        ] {
            let dir = tempdir();
            let path = dir.join("docker.sock");
            let listener = UnixListener::bind(&path).unwrap();
            let server = std::thread::spawn(move || {
                let (mut s, _) = listener.accept().unwrap();
                let mut req = [0u8; 256];
                let n = s.read(&mut req).unwrap();
                s.write_all(answer.as_bytes()).unwrap();
                String::from_utf8_lossy(&req[..n]).to_string()
            });
            let got = ping(&Address::Unix(path));
            let request = server.join().unwrap();
            assert!(request.starts_with("GET /_ping "), "{request}");
            assert_eq!(got.is_ok(), ok, "{answer:?} → {got:?}");
            if let Err(e) = got {
                assert!(matches!(e, Problem::NoAnswer { .. }), "{e:?}");
            }
        }
    }

    #[test]
    fn compose_versions_are_compared_by_major_and_minor() {
        assert_eq!(compose_version("2.40.3"), Some((2, 40)));
        assert_eq!(compose_version("v2.20.0-desktop.1"), Some((2, 20)));
        assert!(compose_version("2.19.1").unwrap() < MIN_COMPOSE);
        assert_eq!(compose_version("garbage"), None);
    }

    #[test]
    fn a_taken_port_is_named_with_what_needs_it() {
        let held = TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let port = held.local_addr().unwrap().port();
        assert!(!port_free(port));
        let err = check_ports(&[(port, "the gateway".into())], None).unwrap_err();
        let line = err.to_string();
        assert!(
            line.contains(&format!("port {port} (the gateway)")),
            "{line}"
        );
        assert!(line.contains("ss -ltnp"), "{line}");
        drop(held);
        assert!(check_ports(&[(port, "the gateway".into())], None).is_ok());
    }

    fn tempdir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("docker-check-{:x}", rand::random::<u64>()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
