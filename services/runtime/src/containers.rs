//! The testcontainers runtime: the infrastructure in containers, the
//! services native (ADR 0016).
//!
//! `shopstream up --runtime testcontainers` (and the test kit with
//! `SHOPSTREAM_TEST_RUNTIME=testcontainers`) starts PostgreSQL, Redis, a
//! Kafka broker and the Temporal dev server as containers, each published on
//! the port the native runtime would give it ([`Ports`]), so every URL,
//! table and test is unchanged; then [`Stack`](crate::Stack) runs the S3
//! server, the trace collector and the services natively beside them and
//! probes all of it with the same readiness checks. `--full` adds OpenSearch
//! and ScyllaDB and points search and the feed at them.
//!
//! Images are the ones `compose/compose.yaml` pins (a test holds them
//! equal). PostgreSQL, Redis and ScyllaDB use the testcontainers community
//! modules; Kafka, Temporal and OpenSearch are [`GenericImage`]s defined
//! here. Containers are *reusable* (they outlive the process that started
//! them, are found again by name and label, and `down` removes them), so a
//! CLI that exits after `up` leaves a running stack, as the native one does.

use std::{collections::BTreeMap, path::Path, time::Duration};

use shopstream_platform::config::Ports;
use testcontainers::{
    ContainerRequest, GenericImage, Image, ImageExt, ReuseDirective,
    bollard::{
        Docker,
        query_parameters::{ListContainersOptions, RemoveContainerOptions, StopContainerOptions},
    },
    core::{ContainerPort, Healthcheck, IntoContainerPort, WaitFor},
    runners::AsyncRunner,
};
use testcontainers_modules::{postgres::Postgres, redis::Redis, scylladb::ScyllaDB};

use crate::{Kind, components::temporal_dev_settings_args, docker};

/// Label every container of one stack carries: the stack's project name.
pub const STACK_LABEL: &str = "io.shopstream.stack";
/// Label naming the component a container is.
pub const COMPONENT_LABEL: &str = "io.shopstream.component";

/// The images, as `compose/compose.yaml` pins them.
pub const POSTGRES_TAG: &str = "16.9-bookworm";
pub const REDIS_TAG: &str = "7.4.4-bookworm";
pub const KAFKA_IMAGE: (&str, &str) = ("apache/kafka-native", "3.9.1");
pub const TEMPORAL_IMAGE: (&str, &str) = ("temporalio/temporal", "1.9.1");
pub const OPENSEARCH_IMAGE: (&str, &str) = ("opensearchproject/opensearch", "2.19.1");
pub const SCYLLA_TAG: &str = "6.2";

/// Lets replication connections in from outside the container: the official
/// image's `pg_hba.conf` admits `all` databases from anywhere, which does not
/// cover `replication` (cdc's logical replication). compose mounts the same file.
pub const PG_REPLICATION_SCRIPT: &str = include_str!("../assets/pg-replication.sh");

/// How long one container may take to start (pull excluded: an image is
/// pulled before its clock starts).
const START_TIMEOUT: Duration = Duration::from_secs(180);

/// OpenSearch's and Scylla's host ports in `--full`: beside the S3 port, on
/// the products' own last digits (19200 and 19042 in the dev scheme).
pub fn opensearch_port(ports: &Ports) -> u16 {
    ports.s3 + 200
}
pub fn scylla_port(ports: &Ports) -> u16 {
    ports.s3 + 42
}

/// One container as the runtime asks for it: what tests check and `status`
/// shows, whatever the image type.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Spec {
    pub component: &'static str,
    /// `image:tag`.
    pub image: String,
    pub container_name: String,
    /// `(host, container)` TCP ports.
    pub ports: Vec<(u16, u16)>,
    pub env: BTreeMap<String, String>,
    pub cmd: Vec<String>,
    /// How testcontainers decides the container has started, in words.
    pub wait: Vec<String>,
    /// Its memory limit, MiB.
    pub memory_mib: u64,
}

/// The containers of one stack.
#[derive(Debug, Clone)]
pub struct Containers {
    project: String,
    ports: Ports,
    full: bool,
}

/// What went wrong starting, listing or removing containers.
#[derive(Debug, thiserror::Error)]
pub enum ContainersError {
    #[error(transparent)]
    Docker(#[from] docker::Problem),
    #[error("{component}: {message}")]
    Start {
        component: &'static str,
        message: String,
    },
    #[error("the Docker engine: {0}")]
    Engine(String),
}

/// A container of this stack as the engine reports it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Running {
    pub component: String,
    pub name: String,
    pub image: String,
    /// `running`, `exited`, …
    pub state: String,
    /// The engine's words, with health when the image has a check.
    pub status: String,
}

impl Containers {
    /// The containers of the stack whose state lives in `root`: named after
    /// a hash of that directory, so a dev stack and the test stack differ.
    pub fn new(root: &Path, ports: Ports, full: bool) -> Containers {
        let root = std::path::absolute(root).unwrap_or_else(|_| root.to_path_buf());
        Containers {
            project: format!(
                "shopstream-{:08x}",
                fnv1a(root.as_os_str().as_encoded_bytes())
            ),
            ports,
            full,
        }
    }

    pub fn project(&self) -> &str {
        &self.project
    }

    /// The infrastructure kinds the containers stand in for.
    pub const KINDS: [Kind; 4] = [Kind::Postgres, Kind::Redis, Kind::Kafka, Kind::Temporal];

    fn name(&self, component: &str) -> String {
        format!("{}-{component}", self.project)
    }

    fn common<I: Image>(
        &self,
        req: ContainerRequest<I>,
        component: &'static str,
    ) -> ContainerRequest<I> {
        let memory_mib = memory_mib(component);
        req.with_container_name(self.name(component))
            .with_label(STACK_LABEL, self.project.clone())
            .with_label(COMPONENT_LABEL, component)
            .with_reuse(ReuseDirective::Always)
            .with_startup_timeout(START_TIMEOUT)
            .with_host_config_modifier(move |hc| {
                let bytes = (memory_mib * 1024 * 1024) as i64;
                hc.memory = Some(bytes);
                hc.memory_swap = Some(bytes);
            })
    }

    /// PostgreSQL 16 with logical decoding, trust auth (as native) and
    /// replication admitted from the host.
    pub fn postgres(&self) -> ContainerRequest<Postgres> {
        let req = Postgres::default()
            .with_user("shopstream")
            .with_db_name("postgres")
            .with_host_auth()
            .with_tag(POSTGRES_TAG)
            .with_copy_to(
                "/docker-entrypoint-initdb.d/10-replication.sh",
                PG_REPLICATION_SCRIPT.as_bytes().to_vec(),
            )
            .with_cmd([
                "-c",
                "wal_level=logical",
                "-c",
                "max_replication_slots=16",
                "-c",
                "max_wal_senders=16",
                "-c",
                "max_slot_wal_keep_size=1024MB",
                "-c",
                "max_connections=200",
                "-c",
                "shared_buffers=64MB",
            ])
            .with_mapped_port(self.ports.postgres, 5432.tcp());
        self.common(req, "postgres")
    }

    /// Redis 7 with the native runtime's settings.
    pub fn redis(&self) -> ContainerRequest<Redis> {
        let req = Redis::default()
            .with_tag(REDIS_TAG)
            .with_cmd([
                "redis-server",
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--save",
                "",
                "--maxmemory",
                "256mb",
                "--zset-max-listpack-entries",
                "256",
            ])
            .with_mapped_port(self.ports.redis, 6379.tcp());
        self.common(req, "redis")
    }

    /// Apache Kafka (KRaft, the GraalVM build compose uses), listening and
    /// advertising on the native broker port so clients on the host reach it.
    pub fn kafka(&self) -> ContainerRequest<GenericImage> {
        let p = self.ports.kafka;
        let req = GenericImage::new(KAFKA_IMAGE.0, KAFKA_IMAGE.1)
            .with_exposed_port(p.tcp())
            .with_wait_for(WaitFor::healthcheck())
            .with_env_var("KAFKA_NODE_ID", "1")
            .with_env_var("KAFKA_PROCESS_ROLES", "broker,controller")
            .with_env_var(
                "KAFKA_LISTENERS",
                format!("PLAINTEXT://0.0.0.0:{p},CONTROLLER://127.0.0.1:9093"),
            )
            .with_env_var(
                "KAFKA_ADVERTISED_LISTENERS",
                format!("PLAINTEXT://127.0.0.1:{p}"),
            )
            .with_env_var(
                "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP",
                "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            )
            .with_env_var("KAFKA_CONTROLLER_LISTENER_NAMES", "CONTROLLER")
            .with_env_var("KAFKA_CONTROLLER_QUORUM_VOTERS", "1@127.0.0.1:9093")
            .with_env_var("KAFKA_INTER_BROKER_LISTENER_NAME", "PLAINTEXT")
            .with_env_var("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "1")
            .with_env_var("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "1")
            .with_env_var("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "1")
            .with_env_var("KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS", "0")
            .with_env_var("KAFKA_NUM_PARTITIONS", "3")
            .with_health_check(
                Healthcheck::cmd(["bash", "-c", &format!("exec 3<>/dev/tcp/127.0.0.1/{p}")])
                    .with_interval(Duration::from_secs(1))
                    .with_retries(60),
            )
            .with_mapped_port(p, p.tcp());
        self.common(req, "kafka")
    }

    /// The Temporal CLI's dev server, with the native runtime's flags and
    /// ports; healthy when `temporal operator cluster health` says so.
    pub fn temporal(&self) -> ContainerRequest<GenericImage> {
        let Ports {
            temporal,
            temporal_http,
            temporal_metrics,
            ..
        } = self.ports;
        let req = GenericImage::new(TEMPORAL_IMAGE.0, TEMPORAL_IMAGE.1)
            .with_exposed_port(temporal.tcp())
            .with_wait_for(WaitFor::healthcheck())
            .with_cmd(
                [
                    "server",
                    "start-dev",
                    "--headless",
                    "--ip",
                    "0.0.0.0",
                    "--port",
                    &temporal.to_string(),
                    "--http-port",
                    &temporal_http.to_string(),
                    "--metrics-port",
                    &temporal_metrics.to_string(),
                    "--db-filename",
                    "/home/temporal/temporal.db",
                    "--log-level",
                    "warn",
                    "--sqlite-pragma",
                    "journal_mode=wal",
                    "--sqlite-pragma",
                    "synchronous=normal",
                ]
                .map(String::from)
                .into_iter()
                .chain(temporal_dev_settings_args()),
            )
            .with_health_check(
                Healthcheck::cmd([
                    "temporal",
                    "operator",
                    "cluster",
                    "health",
                    "--address",
                    &format!("127.0.0.1:{temporal}"),
                ])
                .with_interval(Duration::from_secs(1))
                .with_retries(60),
            )
            .with_mapped_port(temporal, temporal.tcp())
            .with_mapped_port(temporal_http, temporal_http.tcp())
            .with_mapped_port(temporal_metrics, temporal_metrics.tcp());
        self.common(req, "temporal")
    }

    /// OpenSearch 2, one node, security plugin off (local only), for `--full`.
    pub fn opensearch(&self) -> ContainerRequest<GenericImage> {
        let req = GenericImage::new(OPENSEARCH_IMAGE.0, OPENSEARCH_IMAGE.1)
            .with_exposed_port(9200.tcp())
            .with_wait_for(WaitFor::healthcheck())
            .with_env_var("discovery.type", "single-node")
            .with_env_var("DISABLE_SECURITY_PLUGIN", "true")
            .with_env_var("DISABLE_INSTALL_DEMO_CONFIG", "true")
            .with_env_var("OPENSEARCH_JAVA_OPTS", "-Xms512m -Xmx512m")
            .with_health_check(
                Healthcheck::cmd_shell(
                    "curl -fsS 'http://127.0.0.1:9200/_cluster/health?wait_for_status=yellow&timeout=2s' >/dev/null",
                )
                .with_interval(Duration::from_secs(2))
                .with_retries(90),
            )
            .with_mapped_port(opensearch_port(&self.ports), 9200.tcp());
        self.common(req, "opensearch")
    }

    /// ScyllaDB in developer mode with one small shard, for `--full`.
    pub fn scylla(&self) -> ContainerRequest<ScyllaDB> {
        let req = ScyllaDB::default()
            .with_tag(SCYLLA_TAG)
            .with_cmd([
                "--smp",
                "1",
                "--memory",
                "512M",
                "--overprovisioned",
                "1",
                "--developer-mode",
                "1",
            ])
            .with_mapped_port(scylla_port(&self.ports), 9042.tcp());
        self.common(req, "scylla")
    }

    /// Every container this stack runs, described.
    pub fn specs(&self) -> Vec<Spec> {
        let mut specs = vec![
            describe("postgres", &self.postgres()),
            describe("redis", &self.redis()),
            describe("kafka", &self.kafka()),
            describe("temporal", &self.temporal()),
        ];
        if self.full {
            specs.push(describe("opensearch", &self.opensearch()));
            specs.push(describe("scylla", &self.scylla()));
        }
        specs
    }

    /// The environment the services get in `--full`: search on OpenSearch,
    /// the feed's timeline on Scylla. Empty otherwise.
    pub fn service_overrides(&self) -> Vec<(Kind, BTreeMap<String, String>)> {
        if !self.full {
            return Vec::new();
        }
        vec![
            (
                Kind::Search,
                BTreeMap::from([
                    ("SHOPSTREAM_SEARCH_BACKEND".into(), "opensearch".into()),
                    (
                        "SHOPSTREAM_OPENSEARCH_URL".into(),
                        format!("http://127.0.0.1:{}", opensearch_port(&self.ports)),
                    ),
                ]),
            ),
            (
                Kind::Feed,
                BTreeMap::from([(
                    "SHOPSTREAM_SCYLLA_URL".into(),
                    format!("127.0.0.1:{}", scylla_port(&self.ports)),
                )]),
            ),
        ]
    }

    /// Start (or find again) every container and wait until each reports
    /// started. `progress(component, what)` hears about each step. Checks
    /// the engine and the host ports first, so nothing starts half-way.
    pub async fn up(&self, progress: &(dyn Fn(&str, &str) + Sync)) -> Result<(), ContainersError> {
        tokio::task::spawn_blocking(docker::check_engine)
            .await
            .map_err(|e| ContainersError::Engine(e.to_string()))??;
        let ours: Vec<String> = self
            .list()
            .await?
            .into_iter()
            .filter(|r| r.state == "running")
            .map(|r| r.component)
            .collect();
        let wanted: Vec<(u16, String)> = self
            .specs()
            .into_iter()
            .filter(|s| !ours.iter().any(|c| c == s.component))
            .flat_map(|s| {
                s.ports
                    .into_iter()
                    .map(move |(host, _)| (host, format!("{}'s container", s.component)))
            })
            .collect();
        docker::check_ports(&wanted, None)?;

        async fn start<I: Image>(
            component: &'static str,
            req: ContainerRequest<I>,
            progress: &(dyn Fn(&str, &str) + Sync),
        ) -> Result<(), ContainersError> {
            progress(component, "pulling the image if needed, then starting");
            let started = std::time::Instant::now();
            // Reusable: dropping the handle leaves the container running.
            req.start().await.map_err(|e| ContainersError::Start {
                component,
                message: e.to_string(),
            })?;
            progress(
                component,
                &format!(
                    "container started ({:.1}s)",
                    started.elapsed().as_secs_f64()
                ),
            );
            Ok(())
        }
        let (pg, redis, kafka, temporal) = tokio::join!(
            start("postgres", self.postgres(), progress),
            start("redis", self.redis(), progress),
            start("kafka", self.kafka(), progress),
            start("temporal", self.temporal(), progress),
        );
        pg?;
        redis?;
        kafka?;
        temporal?;
        if self.full {
            let (os, scylla) = tokio::join!(
                start("opensearch", self.opensearch(), progress),
                start("scylla", self.scylla(), progress),
            );
            os?;
            scylla?;
        }
        Ok(())
    }

    fn engine() -> Result<Docker, ContainersError> {
        Docker::connect_with_defaults().map_err(|e| ContainersError::Engine(e.to_string()))
    }

    /// This stack's containers, running or not.
    pub async fn list(&self) -> Result<Vec<Running>, ContainersError> {
        let docker = Self::engine()?;
        let options = ListContainersOptions {
            all: true,
            filters: Some(std::collections::HashMap::from([(
                "label".to_string(),
                vec![format!("{STACK_LABEL}={}", self.project)],
            )])),
            ..Default::default()
        };
        let found = docker
            .list_containers(Some(options))
            .await
            .map_err(|e| ContainersError::Engine(e.to_string()))?;
        Ok(found
            .into_iter()
            .map(|c| Running {
                component: c
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(COMPONENT_LABEL).cloned())
                    .unwrap_or_default(),
                name: c
                    .names
                    .unwrap_or_default()
                    .first()
                    .map(|n| n.trim_start_matches('/').to_string())
                    .unwrap_or_default(),
                image: c.image.unwrap_or_default(),
                state: c.state.map(|s| s.to_string()).unwrap_or_default(),
                status: c.status.unwrap_or_default(),
            })
            .collect())
    }

    /// Stop this stack's containers; with `purge`, remove them and their
    /// volumes. Returns the names it acted on.
    pub async fn down(&self, purge: bool) -> Result<Vec<String>, ContainersError> {
        let docker = Self::engine()?;
        let mut done = Vec::new();
        for c in self.list().await? {
            let result = if purge {
                docker
                    .remove_container(
                        &c.name,
                        Some(RemoveContainerOptions {
                            force: true,
                            v: true,
                            ..Default::default()
                        }),
                    )
                    .await
            } else if c.state == "running" {
                docker
                    .stop_container(
                        &c.name,
                        Some(StopContainerOptions {
                            t: Some(20),
                            ..Default::default()
                        }),
                    )
                    .await
            } else {
                continue;
            };
            result.map_err(|e| ContainersError::Engine(format!("{}: {e}", c.name)))?;
            done.push(c.name);
        }
        Ok(done)
    }
}

/// A request in words, for tests and `status`.
fn describe<I: Image>(component: &'static str, req: &ContainerRequest<I>) -> Spec {
    Spec {
        component,
        image: req.descriptor(),
        container_name: req.container_name().clone().unwrap_or_default(),
        ports: req
            .ports()
            .map(|ps| {
                ps.iter()
                    .map(|m| (m.host_port(), container_port_number(m.container_port())))
                    .collect()
            })
            .unwrap_or_default(),
        env: req
            .env_vars()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        cmd: req.cmd().map(|c| c.to_string()).collect(),
        wait: req
            .ready_conditions()
            .iter()
            .map(|w| format!("{w:?}"))
            .collect(),
        memory_mib: memory_mib(component),
    }
}

/// Each container's memory limit, MiB: compose's limits, except Redis and
/// Kafka, which get the native runtime's headroom (Redis' maxmemory 256mb).
fn memory_mib(component: &str) -> u64 {
    match component {
        "postgres" => 288,
        "redis" => 320,
        "kafka" => 512,
        "temporal" => 256,
        "opensearch" => 1024,
        "scylla" => 768,
        _ => 256,
    }
}

fn container_port_number(p: ContainerPort) -> u16 {
    match p {
        ContainerPort::Tcp(n) | ContainerPort::Udp(n) | ContainerPort::Sctp(n) => n,
    }
}

/// FNV-1a, 32 bits: a short stable name from a path.
fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev() -> Containers {
        Containers::new(Path::new("/tmp/some-stack"), Ports::DEV, true)
    }

    fn spec(c: &Containers, component: &str) -> Spec {
        c.specs()
            .into_iter()
            .find(|s| s.component == component)
            .unwrap_or_else(|| panic!("no {component}"))
    }

    #[test]
    fn minimal_runs_what_the_native_runtime_runs_and_full_adds_two() {
        let minimal = Containers::new(Path::new("/x"), Ports::DEV, false);
        let names: Vec<_> = minimal.specs().iter().map(|s| s.component).collect();
        assert_eq!(names, ["postgres", "redis", "kafka", "temporal"]);
        assert_eq!(
            Containers::KINDS.map(|k| k.name()),
            ["postgres", "redis", "kafka", "temporal"]
        );
        assert!(minimal.service_overrides().is_empty());
        let full: Vec<_> = dev().specs().iter().map(|s| s.component).collect();
        assert_eq!(
            full,
            [
                "postgres",
                "redis",
                "kafka",
                "temporal",
                "opensearch",
                "scylla"
            ]
        );
    }

    #[test]
    fn containers_are_named_and_labelled_per_stack_directory() {
        let a = Containers::new(Path::new("/a/.shopstream"), Ports::DEV, false);
        let b = Containers::new(Path::new("/b/.shopstream"), Ports::DEV, false);
        assert_ne!(a.project(), b.project());
        assert_eq!(
            a.project(),
            Containers::new(Path::new("/a/.shopstream"), Ports::DEV, false).project()
        );
        for s in a.specs() {
            assert_eq!(s.container_name, format!("{}-{}", a.project(), s.component));
        }
        let req = a.postgres();
        assert_eq!(
            req.labels().get(STACK_LABEL),
            Some(&a.project().to_string())
        );
        assert_eq!(
            req.labels().get(COMPONENT_LABEL).map(String::as_str),
            Some("postgres")
        );
        assert_eq!(req.reuse(), ReuseDirective::Always, "must outlive `up`");
    }

    #[test]
    fn every_container_is_published_on_the_native_port_scheme() {
        for (ports, c) in [
            (
                Ports::DEV,
                Containers::new(Path::new("/d"), Ports::DEV, true),
            ),
            (
                Ports::TEST,
                Containers::new(Path::new("/t"), Ports::TEST, true),
            ),
        ] {
            assert_eq!(spec(&c, "postgres").ports, [(ports.postgres, 5432)]);
            assert_eq!(spec(&c, "redis").ports, [(ports.redis, 6379)]);
            assert_eq!(spec(&c, "kafka").ports, [(ports.kafka, ports.kafka)]);
            assert_eq!(
                spec(&c, "temporal").ports,
                [
                    (ports.temporal, ports.temporal),
                    (ports.temporal_http, ports.temporal_http),
                    (ports.temporal_metrics, ports.temporal_metrics)
                ]
            );
            assert_eq!(
                spec(&c, "opensearch").ports,
                [(opensearch_port(&ports), 9200)]
            );
            assert_eq!(spec(&c, "scylla").ports, [(scylla_port(&ports), 9042)]);
        }
        assert_eq!(opensearch_port(&Ports::DEV), 19200);
        assert_eq!(scylla_port(&Ports::DEV), 19042);
    }

    #[test]
    fn compose_runs_temporal_with_the_same_dev_settings() {
        let compose = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../compose/compose.yaml"),
        )
        .expect("compose/compose.yaml");
        let cmd = spec(&dev(), "temporal").cmd;
        for setting in crate::components::TEMPORAL_DEV_SETTINGS {
            assert!(
                cmd.windows(2)
                    .any(|w| w == ["--dynamic-config-value", *setting]),
                "{setting} missing from {cmd:?}"
            );
            // compose.yaml quotes a value with quotes in it: 'k="v"'.
            let line = if setting.contains('"') {
                format!("- '{setting}'\n")
            } else {
                format!("- {setting}\n")
            };
            assert!(
                compose.contains(&line),
                "compose/compose.yaml's temporal lacks {line:?}"
            );
        }
    }

    #[test]
    fn images_are_the_tags_compose_pins() {
        let compose = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../compose/compose.yaml"),
        )
        .expect("compose/compose.yaml");
        let c = dev();
        for component in [
            "postgres",
            "redis",
            "kafka",
            "temporal",
            "opensearch",
            "scylla",
        ] {
            let image = spec(&c, component).image;
            assert!(
                compose.contains(&format!("image: {image}\n")),
                "{component}: {image} is not what compose/compose.yaml pins"
            );
        }
    }

    #[test]
    fn postgres_has_logical_decoding_trust_and_replication_from_the_host() {
        let s = spec(&dev(), "postgres");
        assert_eq!(
            s.env.get("POSTGRES_USER").map(String::as_str),
            Some("shopstream")
        );
        assert_eq!(
            s.env.get("POSTGRES_HOST_AUTH_METHOD").map(String::as_str),
            Some("trust")
        );
        assert!(
            s.cmd.windows(2).any(|w| w == ["-c", "wal_level=logical"]),
            "{:?}",
            s.cmd
        );
        let req = dev().postgres();
        assert_eq!(req.copy_to_sources().count(), 1);
        assert!(PG_REPLICATION_SCRIPT.contains("host replication all all"));
        assert!(PG_REPLICATION_SCRIPT.contains("POSTGRES_HOST_AUTH_METHOD"));
        // The module waits for the server's own words, not for an open port.
        assert!(
            s.wait
                .iter()
                .any(|w| w.contains("ready to accept connections")),
            "{:?}",
            s.wait
        );
    }

    #[test]
    fn kafka_advertises_the_port_the_host_reaches_it_on() {
        let c = Containers::new(Path::new("/t"), Ports::TEST, false);
        let s = spec(&c, "kafka");
        assert_eq!(
            s.env.get("KAFKA_ADVERTISED_LISTENERS").map(String::as_str),
            Some("PLAINTEXT://127.0.0.1:29092")
        );
        assert!(s.env["KAFKA_LISTENERS"].contains("PLAINTEXT://0.0.0.0:29092"));
        assert!(
            s.wait.iter().any(|w| w.contains("Healthcheck")),
            "{:?}",
            s.wait
        );
        let hc = c.kafka().health_check().cloned().expect("a health check");
        assert!(hc.test().join(" ").contains("/dev/tcp/127.0.0.1/29092"));
    }

    #[test]
    fn temporal_runs_the_dev_server_with_native_flags_and_a_real_health_check() {
        let c = Containers::new(Path::new("/t"), Ports::TEST, false);
        let s = spec(&c, "temporal");
        assert_eq!(&s.cmd[..2], ["server", "start-dev"]);
        assert!(s.cmd.windows(2).any(|w| w == ["--port", "27233"]));
        assert!(
            s.cmd
                .contains(&"frontend.enableServerVersionCheck=false".to_string())
        );
        let hc = c
            .temporal()
            .health_check()
            .cloned()
            .expect("a health check");
        assert_eq!(
            hc.test(),
            [
                "CMD",
                "temporal",
                "operator",
                "cluster",
                "health",
                "--address",
                "127.0.0.1:27233"
            ]
        );
        assert!(s.wait.iter().any(|w| w.contains("Healthcheck")));
    }

    #[test]
    fn full_points_search_and_feed_at_their_containers() {
        let c = dev();
        let o = c.service_overrides();
        let search = &o.iter().find(|(k, _)| *k == Kind::Search).unwrap().1;
        assert_eq!(search["SHOPSTREAM_SEARCH_BACKEND"], "opensearch");
        assert_eq!(
            search["SHOPSTREAM_OPENSEARCH_URL"],
            "http://127.0.0.1:19200"
        );
        let feed = &o.iter().find(|(k, _)| *k == Kind::Feed).unwrap().1;
        assert_eq!(feed["SHOPSTREAM_SCYLLA_URL"], "127.0.0.1:19042");
        let os = spec(&c, "opensearch");
        assert_eq!(os.env["discovery.type"], "single-node");
        assert!(
            spec(&c, "scylla")
                .cmd
                .windows(2)
                .any(|w| w == ["--developer-mode", "1"])
        );
    }

    #[test]
    fn every_container_has_a_memory_limit_and_minimal_fits_in_two_gib() {
        let minimal: u64 = Containers::new(Path::new("/x"), Ports::DEV, false)
            .specs()
            .iter()
            .map(|s| s.memory_mib)
            .sum();
        assert!(minimal <= 2048, "{minimal} MiB");
        assert!(dev().specs().iter().all(|s| s.memory_mib > 0));
    }
}
