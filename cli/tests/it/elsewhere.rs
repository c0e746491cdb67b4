//! The runtimes that need Docker and the AWS deployment, on a machine with
//! neither a Docker engine nor an AWS account: each refuses in one line that
//! names the cause and the fix, and changes nothing. `deploy aws` is driven
//! with a stand-in `terraform` that records its arguments, so the order of
//! layers and the variables they get are checked without a cloud.

use std::{os::unix::fs::PermissionsExt, path::Path, process::Output};

use super::{BIN, NOTHING_UP, cli_command, temp_dir, text};

/// The one error line, with nothing else on stderr.
fn one_error_line(o: &Output) -> String {
    let stderr = String::from_utf8_lossy(&o.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "exactly one line on stderr:\n{stderr}");
    assert!(lines[0].starts_with("error: "), "{}", lines[0]);
    lines[0].to_string()
}

/// `up --runtime RUNTIME` with `bin` first on PATH and the engine at `socket`.
fn up_with_docker(state: &Path, runtime: &str, bin: &Path, socket: &Path) -> Output {
    cli_command(state, &NOTHING_UP)
        .args(["up", "--runtime", runtime])
        .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
        .env("DOCKER_HOST", format!("unix://{}", socket.display()))
        .env(
            "SHOPSTREAM_COMPOSE_FILE",
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../compose/compose.yaml"),
        )
        .output()
        .unwrap()
}

#[test]
fn up_with_a_docker_runtime_and_no_engine_exits_3_in_one_line() {
    let state = temp_dir("no-engine");
    // An engine address where nothing listens: the same answer on any machine.
    let socket = state.join("docker.sock");
    // A docker CLI, so compose gets as far as the engine on any machine;
    // it is never run (the engine is asked first).
    let bin = temp_dir("docker-cli");
    write_script(
        &bin.join("docker"),
        "#!/bin/sh\necho \"docker ran: $*\" >&2\nexit 9\n",
    );
    for runtime in ["compose", "testcontainers"] {
        let out = up_with_docker(&state, runtime, &bin, &socket);
        assert_eq!(out.status.code(), Some(3), "{runtime}: {}", text(&out));
        let line = one_error_line(&out);
        assert!(
            line.contains("the Docker engine is not running"),
            "{runtime}: {line}"
        );
        assert!(
            line.contains(&socket.display().to_string()),
            "{runtime}: {line}"
        );
        assert!(line.contains("systemctl start docker"), "{runtime}: {line}");
        assert!(
            !state.join("runtime.json").exists(),
            "{runtime}: a refused `up` records nothing"
        );
    }
}

#[test]
fn up_with_compose_and_no_docker_at_all_says_how_to_install_it() {
    let state = temp_dir("no-docker");
    // A PATH with no docker on it.
    let bin = temp_dir("empty-path");
    let out = cli_command(&state, &NOTHING_UP)
        .args(["up", "--runtime", "compose"])
        .env("PATH", &bin)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let line = one_error_line(&out);
    assert!(line.contains("Docker is not installed"), "{line}");
    assert!(
        line.contains("shopstream up"),
        "names the native alternative: {line}"
    );
}

#[test]
fn up_with_compose_and_a_taken_port_names_the_port() {
    let state = temp_dir("port-taken");
    // A stand-in docker: an engine that answers, Compose 2.40, no containers.
    let bin = temp_dir("fake-docker");
    let socket = state.join("docker.sock");
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for s in listener.incoming().flatten() {
            let mut s = s;
            let mut buf = [0u8; 512];
            let _ = s.read(&mut buf);
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK");
        }
    });
    write_script(
        &bin.join("docker"),
        "#!/bin/sh\ncase \"$*\" in\n  *'compose version'*) echo 2.40.3 ;;\n  *' ps '*) ;;\n  *) echo \"unexpected: $*\" >&2; exit 9 ;;\nesac\n",
    );
    // The gateway's published port, held.
    let held = std::net::TcpListener::bind(("127.0.0.1", 18080));
    if held.is_err() {
        // Someone else (a dev stack) holds it already: that is the case under test too.
        assert!(!shopstream_runtime::docker::port_free(18080));
    }
    let out = up_with_docker(&state, "compose", &bin, &socket);
    drop(held);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let line = one_error_line(&out);
    assert!(
        line.contains("port 18080 (the gateway) is already in use"),
        "{line}"
    );
    assert!(!state.join("runtime.json").exists());
}

fn write_script(path: &Path, body: &str) {
    std::fs::write(path, body).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A stand-in terraform that appends its arguments to `$TF_LOG_FILE` and
/// answers `output -json` like 00-bootstrap would.
fn fake_terraform(dir: &Path) -> std::path::PathBuf {
    write_script(
        &dir.join("terraform"),
        r#"#!/bin/sh
echo "$*" >> "$TF_LOG_FILE"
case "$*" in
  *' output -json'*) echo '{"state_bucket":{"value":"b-123"},"state_kms_key_arn":{"value":"arn:aws:kms:k"}}' ;;
esac
"#,
    );
    dir.join("terraform")
}

/// A copy of infra/'s layer folders (only their names matter to the stand-in).
fn infra_copy(root: &Path) -> std::path::PathBuf {
    let infra = root.join("infra");
    for layer in [
        "00-bootstrap",
        "10-network",
        "20-data",
        "30-compute",
        "40-guardrails",
    ] {
        std::fs::create_dir_all(infra.join(layer)).unwrap();
    }
    infra
}

/// A folder with a stand-in terraform, a copy of infra/'s layers and the
/// log the stand-in writes; `creds` are fake AWS keys (nothing reaches AWS).
struct Rig {
    root: std::path::PathBuf,
    path: String,
    log: std::path::PathBuf,
    infra: String,
    base: Vec<(&'static str, String)>,
    creds: Vec<(&'static str, String)>,
}

fn rig(name: &str) -> Rig {
    let root = temp_dir(name);
    let bin = root.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    fake_terraform(&bin);
    let infra = infra_copy(&root).display().to_string();
    let log = root.join("tf.log");
    let base = vec![("TF_LOG_FILE", log.display().to_string())];
    let mut creds = base.clone();
    creds.push(("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE".to_string()));
    creds.push(("AWS_SECRET_ACCESS_KEY", "secret".to_string()));
    Rig {
        path: format!("{}:/usr/bin:/bin", bin.display()),
        root,
        log,
        infra,
        base,
        creds,
    }
}

fn deploy(home: &Path, path: &str, env: &[(&str, String)], args: &[&str]) -> Output {
    let mut c = std::process::Command::new(BIN);
    c.arg("deploy")
        .arg("aws")
        .args(args)
        .env_clear()
        .env("HOME", home)
        .env("PATH", path);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

#[test]
fn deploy_aws_refuses_without_credentials_budget_or_yes_and_runs_nothing() {
    let Rig {
        root,
        path,
        log,
        infra: infra_arg,
        base,
        creds,
        ..
    } = rig("deploy-refuse");
    // No credentials (empty HOME, no AWS_* variables): exit 3.
    let out = deploy(
        &root,
        &path,
        &base,
        &["--plan", "--infra-dir", &infra_arg, "--layer", "10-network"],
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(text(&out).contains("no AWS credentials"), "{}", text(&out));

    // No terraform: exit 3, said beside the credentials.
    let out = deploy(
        &root,
        "/nonexistent",
        &base,
        &["--plan", "--infra-dir", &infra_arg],
    );
    assert_eq!(out.status.code(), Some(3));
    assert!(
        text(&out).contains("terraform is not on PATH"),
        "{}",
        text(&out)
    );

    // --apply without --yes or a budget: exit 2, every missing flag named.
    let out = deploy(
        &root,
        &path,
        &creds,
        &["--apply", "--infra-dir", &infra_arg],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let said = text(&out);
    for needed in [
        "--yes",
        "--budget-usd",
        "--alert-email",
        "--image-tag",
        "--certificate-arn",
    ] {
        assert!(said.contains(needed), "names {needed}: {said}");
    }
    // --destroy without --yes.
    let out = deploy(
        &root,
        &path,
        &creds,
        &[
            "--destroy",
            "--layer",
            "10-network",
            "--infra-dir",
            &infra_arg,
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--yes"));
    // No action at all is a usage error from clap.
    let out = deploy(&root, &path, &creds, &["--infra-dir", &infra_arg]);
    assert_eq!(out.status.code(), Some(2));

    assert!(
        !log.exists(),
        "terraform never ran: {:?}",
        std::fs::read_to_string(&log)
    );
}

#[test]
fn deploy_aws_runs_the_layers_in_order_with_their_variables() {
    let Rig {
        root,
        path,
        log,
        infra: infra_arg,
        creds: env,
        ..
    } = rig("deploy-run");
    let infra = Path::new(&infra_arg);
    let out = deploy(
        &root,
        &path,
        &env,
        &[
            "--apply",
            "--yes",
            "--budget-usd",
            "50",
            "--alert-email",
            "ops@example.com",
            "--image-tag",
            "v1",
            "--certificate-arn",
            "arn:aws:acm:c",
            "--infra-dir",
            &infra_arg,
            "--json",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let calls: Vec<String> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    let layer_of = |c: &str| {
        [
            "00-bootstrap",
            "10-network",
            "20-data",
            "30-compute",
            "40-guardrails",
        ]
        .into_iter()
        .find(|l| c.contains(&format!("/{l} ")))
        .unwrap_or("?")
    };
    let applies: Vec<&str> = calls
        .iter()
        .filter(|c| c.contains(" apply "))
        .map(|c| layer_of(c))
        .collect();
    assert_eq!(
        applies,
        [
            "00-bootstrap",
            "10-network",
            "20-data",
            "30-compute",
            "40-guardrails"
        ]
    );
    // The bootstrap's outputs became backend.hcl, and the later layers use it.
    let backend = std::fs::read_to_string(infra.join("backend.hcl")).unwrap();
    assert!(backend.contains("bucket       = \"b-123\""), "{backend}");
    assert!(
        calls
            .iter()
            .any(|c| c.contains("/10-network init") && c.contains("-backend-config="))
    );
    assert!(
        !calls
            .iter()
            .any(|c| c.contains("/00-bootstrap init") && c.contains("-backend-config="))
    );
    let guard = calls
        .iter()
        .find(|c| layer_of(c) == "40-guardrails" && c.contains(" apply "))
        .unwrap();
    for v in [
        "monthly_budget_usd=50",
        "alert_emails=[\"ops@example.com\"]",
        "state_bucket=b-123",
        "-auto-approve",
        "-input=false",
    ] {
        assert!(guard.contains(v), "{v} in {guard}");
    }
    let compute = calls
        .iter()
        .find(|c| layer_of(c) == "30-compute" && c.contains(" apply "))
        .unwrap();
    assert!(
        compute.contains("image_tag=v1") && compute.contains("certificate_arn=arn:aws:acm:c"),
        "{compute}"
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["action"], "apply");
    assert_eq!(summary["layers"].as_array().unwrap().len(), 5);

    // --destroy: reverse order, never the state bucket, protection lifted first.
    std::fs::remove_file(&log).unwrap();
    let out = deploy(
        &root,
        &path,
        &env,
        &[
            "--destroy",
            "--yes",
            "--alert-email",
            "ops@example.com",
            "--image-tag",
            "v1",
            "--certificate-arn",
            "arn:aws:acm:c",
            "--infra-dir",
            &infra_arg,
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let calls: Vec<String> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    let destroys: Vec<&str> = calls
        .iter()
        .filter(|c| c.contains(" destroy "))
        .map(|c| layer_of(c))
        .collect();
    assert_eq!(
        destroys,
        ["40-guardrails", "30-compute", "20-data", "10-network"]
    );
    let data: Vec<&String> = calls.iter().filter(|c| layer_of(c) == "20-data").collect();
    assert!(
        data[1].contains(" apply ") && data[1].contains("deletion_protection=false"),
        "{data:?}"
    );
}
