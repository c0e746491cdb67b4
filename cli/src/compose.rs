//! `up --runtime compose` and the `status`, `logs`, `down` that follow it:
//! `docker compose` driven with the native runtime's progress and tables.
//!
//! The compose file is `compose/compose.yaml` of the checkout (found from
//! the working directory upwards, or `--compose-file`); its project name is
//! its own (`shopstream`), so the CLI and a hand-typed `docker compose` in
//! `compose/` see the same containers.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use shopstream_runtime::docker;

use crate::{exit, table};

/// How long `up` waits for every container to be healthy after `docker
/// compose up -d` returned (images are built or pulled before this starts).
const HEALTHY_TIMEOUT: Duration = Duration::from_secs(600);

/// Ports compose publishes on the host, per profile.
pub fn published_ports(full: bool) -> Vec<(u16, String)> {
    let mut ports = vec![
        (18080, "the gateway".to_string()),
        (18090, "mail-sim's listing".to_string()),
        (19000, "MinIO's S3 API".to_string()),
    ];
    if full {
        ports.extend([
            (3000, "Grafana".to_string()),
            (9090, "Prometheus".to_string()),
            (16686, "Jaeger's UI".to_string()),
        ]);
    }
    ports
}

/// `compose/compose.yaml` in `start` or the nearest directory above it.
pub fn find_compose_file(start: &Path) -> Option<PathBuf> {
    start
        .ancestors()
        .map(|d| d.join("compose").join("compose.yaml"))
        .find(|p| p.is_file())
}

/// One container as `docker compose ps --format json` reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct PsRow {
    #[serde(rename = "Service")]
    pub service: String,
    #[serde(rename = "Name", default)]
    pub name: String,
    /// `running`, `exited`, `created`, `restarting`, …
    #[serde(rename = "State", default)]
    pub state: String,
    /// `healthy`, `starting`, `unhealthy`, or empty without a health check.
    #[serde(rename = "Health", default)]
    pub health: String,
    #[serde(rename = "ExitCode", default)]
    pub exit_code: i64,
    #[serde(rename = "Publishers", default)]
    pub publishers: Option<Vec<Publisher>>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct Publisher {
    #[serde(rename = "URL", default)]
    pub url: String,
    #[serde(rename = "TargetPort", default)]
    pub target_port: u16,
    #[serde(rename = "PublishedPort", default)]
    pub published_port: u16,
}

impl PsRow {
    /// Host addresses this container publishes (`127.0.0.1:18080`).
    pub fn endpoints(&self) -> String {
        let mut eps: Vec<String> = self
            .publishers
            .iter()
            .flatten()
            .filter(|p| p.published_port != 0)
            .map(|p| format!("{}:{}", p.url, p.published_port))
            .collect();
        eps.sort();
        eps.dedup();
        if eps.is_empty() {
            "-".into()
        } else {
            eps.join(" ")
        }
    }

    fn state_word(&self) -> String {
        match (self.state.as_str(), self.health.as_str()) {
            ("running", "") => "running".into(),
            ("running", h) => h.to_string(),
            ("exited", _) => format!("exited ({})", self.exit_code),
            (s, _) => s.to_string(),
        }
    }
}

/// `docker compose ps --format json`: one object per line (Compose ≥ 2.21)
/// or one array (older).
pub fn parse_ps(text: &str) -> Result<Vec<PsRow>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(Vec::new());
    }
    if text.starts_with('[') {
        return serde_json::from_str(text).map_err(|e| format!("docker compose ps: {e}"));
    }
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).map_err(|e| format!("docker compose ps: {e}: {l}")))
        .collect()
}

/// One-shot containers (they exit 0 when done): compose marks them with
/// `restart: "no"`; ours is the bucket creator.
const ONE_SHOT: &[&str] = &["minio-init"];

/// Where `up` stands after one look at `ps`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Ready,
    /// Services not yet healthy (or not yet created).
    Waiting(Vec<String>),
    Failed {
        service: String,
        why: String,
    },
}

/// Judge `rows` against the services the profile runs.
pub fn verdict(expected: &[String], rows: &[PsRow]) -> Verdict {
    let mut waiting = Vec::new();
    for service in expected {
        let Some(row) = rows.iter().find(|r| &r.service == service) else {
            waiting.push(service.clone());
            continue;
        };
        let one_shot = ONE_SHOT.contains(&service.as_str());
        match (row.state.as_str(), row.health.as_str()) {
            ("exited", _) if one_shot && row.exit_code == 0 => {}
            ("exited" | "dead", _) => {
                return Verdict::Failed {
                    service: service.clone(),
                    why: format!("exited with code {}", row.exit_code),
                };
            }
            ("running", "unhealthy") => {
                return Verdict::Failed {
                    service: service.clone(),
                    why: "its health check fails".into(),
                };
            }
            ("running", "healthy") => {}
            ("running", "") if !one_shot => {}
            _ => waiting.push(service.clone()),
        }
    }
    if waiting.is_empty() {
        Verdict::Ready
    } else {
        Verdict::Waiting(waiting)
    }
}

/// `docker compose -f FILE [--env-file full.env] …`.
pub struct Compose {
    docker: PathBuf,
    file: PathBuf,
    full: bool,
}

impl Compose {
    /// Check Docker and find the file; `Err((exit code, one line))`.
    pub fn locate(file: Option<PathBuf>, full: bool) -> Result<Compose, (u8, String)> {
        let docker = docker::check_compose().map_err(|p| (exit::MISSING_PREREQ, p.to_string()))?;
        let file = match file {
            Some(f) if f.is_file() => f,
            Some(f) => {
                return Err((
                    exit::MISSING_PREREQ,
                    format!(
                        "no compose file at {}: pass the path of compose/compose.yaml in a Shopstream checkout",
                        f.display()
                    ),
                ));
            }
            None => {
                let here = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
                find_compose_file(&here).ok_or((
                    exit::MISSING_PREREQ,
                    format!(
                        "no compose/compose.yaml in {} or above: run this in a Shopstream checkout, or pass --compose-file",
                        here.display()
                    ),
                ))?
            }
        };
        let file = std::path::absolute(&file).unwrap_or(file);
        Ok(Compose { docker, file, full })
    }

    /// The compose file and profile `up` recorded.
    pub fn recorded(record: &shopstream_runtime::RuntimeRecord) -> Result<Compose, (u8, String)> {
        Compose::locate(
            Some(record.compose_file.clone().unwrap_or_default()),
            record.full,
        )
    }

    pub fn file(&self) -> &Path {
        &self.file
    }

    fn command(&self) -> Command {
        let mut c = Command::new(&self.docker);
        c.arg("compose").arg("-f").arg(&self.file);
        if self.full
            && let Some(dir) = self.file.parent()
        {
            c.arg("--env-file").arg(dir.join("full.env"));
        }
        c.stdin(Stdio::null());
        c
    }

    fn output(&self, args: &[&str]) -> Result<String, String> {
        let out = self
            .command()
            .args(args)
            .output()
            .map_err(|e| format!("docker compose {}: {e}", args.join(" ")))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "docker compose {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// Run with docker's own output on stderr (builds and pulls show their progress).
    fn run_visible(&self, args: &[&str]) -> Result<(), String> {
        let status = self
            .command()
            .args(args)
            .stdout(Stdio::from(std::io::stderr()))
            .status()
            .map_err(|e| format!("docker compose {}: {e}", args.join(" ")))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!(
                "docker compose {} exited with {status}",
                args.join(" ")
            ))
        }
    }

    /// The services the active profile runs.
    pub fn services(&self) -> Result<Vec<String>, String> {
        Ok(self
            .output(&["config", "--services"])?
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect())
    }

    pub fn ps(&self) -> Result<Vec<PsRow>, String> {
        parse_ps(&self.output(&["ps", "--all", "--format", "json"])?)
    }
}

fn fail(code: u8, msg: impl std::fmt::Display) -> anyhow::Result<u8> {
    eprintln!("error: {msg}");
    Ok(code)
}

/// `up --runtime compose`.
pub fn up(state_dir: &Path, file: Option<PathBuf>, full: bool, json: bool) -> anyhow::Result<u8> {
    let compose = match Compose::locate(file, full) {
        Ok(c) => c,
        Err((code, msg)) => return fail(code, msg),
    };
    let before = compose.ps().unwrap_or_default();
    if !before.iter().any(|r| r.state == "running")
        && let Err(p) = docker::check_ports(&published_ports(full), Some(state_dir))
    {
        return fail(exit::MISSING_PREREQ, p);
    }
    shopstream_runtime::RuntimeRecord {
        runtime: "compose".into(),
        full,
        compose_file: Some(compose.file().to_path_buf()),
    }
    .write(state_dir)?;
    eprintln!(
        "compose: building the Shopstream image and starting the {} profile from {}",
        if full { "full" } else { "minimal" },
        compose.file().display()
    );
    let started = Instant::now();
    if let Err(e) = compose.run_visible(&["up", "--detach", "--build", "--remove-orphans"]) {
        return fail(exit::NOT_READY, e);
    }
    let expected = match compose.services() {
        Ok(s) => s,
        Err(e) => return fail(exit::NOT_READY, e),
    };
    let mut last_waiting = Vec::new();
    let rows = loop {
        let rows = match compose.ps() {
            Ok(r) => r,
            Err(e) => return fail(exit::NOT_READY, e),
        };
        match verdict(&expected, &rows) {
            Verdict::Ready => break rows,
            Verdict::Failed { service, why } => {
                return fail(
                    exit::NOT_READY,
                    format!(
                        "{service} {why}: see `shopstream logs {service}` (or `docker compose -f {} logs {service}`)",
                        compose.file().display()
                    ),
                );
            }
            Verdict::Waiting(waiting) => {
                for done in last_waiting.iter().filter(|s| !waiting.contains(s)) {
                    eprintln!("{done:<13} ready ({:.0?})", started.elapsed());
                }
                if waiting.len() != last_waiting.len() {
                    eprintln!(
                        "waiting for {} to be healthy: {}",
                        waiting.len(),
                        waiting.join(", ")
                    );
                }
                last_waiting = waiting;
            }
        }
        if started.elapsed() > HEALTHY_TIMEOUT {
            return fail(
                exit::NOT_READY,
                format!(
                    "not healthy after {HEALTHY_TIMEOUT:?}: {}; `docker compose ps` shows why",
                    last_waiting.join(", ")
                ),
            );
        }
        std::thread::sleep(Duration::from_secs(2));
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        print!("{}", ps_table(&rows));
        println!(
            "\nall {} containers ready in {:.1}s (compose, {} profile)",
            rows.len(),
            started.elapsed().as_secs_f64(),
            if full { "full" } else { "minimal" }
        );
        println!("stop with `shopstream down` (add --purge to delete the volumes)");
    }
    Ok(exit::OK)
}

fn ps_table(rows: &[PsRow]) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.service.clone(),
                r.state_word(),
                r.name.clone(),
                r.endpoints(),
            ]
        })
        .collect();
    table::render(&["component", "state", "container", "published"], &rows)
}

/// `status` of a compose stack.
pub fn status(record: &shopstream_runtime::RuntimeRecord, json: bool) -> anyhow::Result<u8> {
    let compose = match Compose::recorded(record) {
        Ok(c) => c,
        Err((code, msg)) => return fail(code, msg),
    };
    let (expected, rows) = match (compose.services(), compose.ps()) {
        (Ok(e), Ok(r)) => (e, r),
        (Err(e), _) | (_, Err(e)) => return fail(exit::NOT_READY, e),
    };
    let ready = verdict(&expected, &rows) == Verdict::Ready;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "runtime": "compose",
                "compose_file": compose.file(),
                "ready": ready,
                "containers": rows,
            }))?
        );
    } else if rows.is_empty() {
        println!("nothing is running (compose): start it with `shopstream up --runtime compose`");
    } else {
        print!("{}", ps_table(&rows));
        println!(
            "\n{} of {} containers running (compose: {})",
            rows.iter().filter(|r| r.state == "running").count(),
            expected.len(),
            compose.file().display()
        );
    }
    Ok(if ready { exit::OK } else { exit::NOT_READY })
}

/// `logs NAME` of a compose stack.
pub fn logs(
    record: &shopstream_runtime::RuntimeRecord,
    name: &str,
    follow: bool,
    lines: usize,
) -> anyhow::Result<u8> {
    let compose = match Compose::recorded(record) {
        Ok(c) => c,
        Err((code, msg)) => return fail(code, msg),
    };
    let services = compose.services().unwrap_or_default();
    if !services.iter().any(|s| s == name) {
        eprintln!(
            "error: no compose service {name:?}; one of: {}",
            services.join(", ")
        );
        return Ok(2);
    }
    let tail = lines.to_string();
    let mut args = vec!["logs", "--no-log-prefix", "--tail", &tail];
    if follow {
        args.push("--follow");
    }
    args.push(name);
    let status = compose
        .command()
        .args(&args)
        .stdin(Stdio::null())
        .status()?;
    Ok(if status.success() {
        exit::OK
    } else {
        exit::FAILED
    })
}

/// `down [--purge]` of a compose stack.
pub fn down(
    state_dir: &Path,
    record: &shopstream_runtime::RuntimeRecord,
    purge: bool,
    json: bool,
) -> anyhow::Result<u8> {
    let compose = match Compose::recorded(record) {
        Ok(c) => c,
        Err((code, msg)) => return fail(code, msg),
    };
    let before: Vec<String> = compose
        .ps()
        .unwrap_or_default()
        .into_iter()
        .map(|r| r.service)
        .collect();
    let mut args = vec!["down", "--remove-orphans"];
    if purge {
        args.push("--volumes");
    }
    if let Err(e) = compose.run_visible(&args) {
        return fail(exit::FAILED, e);
    }
    if purge {
        shopstream_runtime::RuntimeRecord::clear(state_dir);
    }
    if json {
        println!(
            "{}",
            serde_json::json!({"runtime": "compose", "stopped": before, "purged": purge})
        );
    } else {
        println!(
            "compose: {} containers removed{}",
            before.len(),
            if purge {
                ", volumes deleted"
            } else {
                "; volumes kept (add --purge to delete them)"
            }
        );
    }
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PS_LINES: &str = r#"{"Command":"\"docker-entrypoint.s…\"","ExitCode":0,"Health":"healthy","Name":"shopstream-postgres-1","Publishers":[{"URL":"","TargetPort":5432,"PublishedPort":0,"Protocol":"tcp"}],"Service":"postgres","State":"running"}
{"ExitCode":0,"Health":"","Name":"shopstream-minio-init-1","Publishers":null,"Service":"minio-init","State":"exited"}
{"ExitCode":0,"Health":"starting","Name":"shopstream-gateway-1","Publishers":[{"URL":"127.0.0.1","TargetPort":18080,"PublishedPort":18080,"Protocol":"tcp"}],"Service":"gateway","State":"running"}
"#;

    fn expected(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn ps_is_read_as_lines_or_as_an_array() {
        let rows = parse_ps(PS_LINES).unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[2].endpoints(), "127.0.0.1:18080");
        assert_eq!(
            rows[0].endpoints(),
            "-",
            "unpublished ports are not endpoints"
        );
        let array = format!(
            "[{}]",
            PS_LINES.trim().lines().collect::<Vec<_>>().join(",")
        );
        assert_eq!(parse_ps(&array).unwrap(), rows);
        assert!(parse_ps("").unwrap().is_empty());
        assert!(parse_ps("not json").is_err());
    }

    #[test]
    fn up_waits_for_health_and_counts_a_finished_one_shot_as_done() {
        let rows = parse_ps(PS_LINES).unwrap();
        assert_eq!(
            verdict(&expected(&["postgres", "minio-init", "gateway"]), &rows),
            Verdict::Waiting(vec!["gateway".into()])
        );
        let mut healthy = rows.clone();
        healthy[2].health = "healthy".into();
        assert_eq!(
            verdict(&expected(&["postgres", "minio-init", "gateway"]), &healthy),
            Verdict::Ready
        );
        assert_eq!(
            verdict(&expected(&["postgres", "redis"]), &healthy),
            Verdict::Waiting(vec!["redis".into()]),
            "a service not created yet is waited for"
        );
    }

    #[test]
    fn a_crashed_or_unhealthy_container_fails_up_at_once() {
        let mut rows = parse_ps(PS_LINES).unwrap();
        rows[1].exit_code = 1;
        assert_eq!(
            verdict(&expected(&["minio-init"]), &rows),
            Verdict::Failed {
                service: "minio-init".into(),
                why: "exited with code 1".into()
            }
        );
        rows[2].health = "unhealthy".into();
        assert!(matches!(
            verdict(&expected(&["gateway"]), &rows),
            Verdict::Failed { service, .. } if service == "gateway"
        ));
    }

    #[test]
    fn the_compose_file_is_found_from_any_folder_of_the_checkout() {
        let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let found = find_compose_file(&here).expect("the checkout's compose file");
        assert!(found.ends_with("compose/compose.yaml"));
        assert_eq!(find_compose_file(Path::new("/")), None);
    }

    #[test]
    fn published_ports_are_the_ones_compose_publishes() {
        let compose = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../compose/compose.yaml"),
        )
        .unwrap();
        for (port, _) in published_ports(true) {
            if port == 19000 {
                assert!(
                    compose.contains("127.0.0.1:19000:9000"),
                    "S3 published on 19000"
                );
            } else {
                assert!(
                    compose.contains(&format!("\"127.0.0.1:{port}:{port}\"")),
                    "{port} is published"
                );
            }
        }
    }
}
