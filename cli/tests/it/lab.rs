//! `shopstream lab` and `shopstream fault` end to end: the cheap paths (list,
//! unknown lab, nothing reachable) on their own, and the labs
//! `checkout-failure` and `cdc-latency`, each against a fresh stack of its own.

use std::process::Command;

use shopstream_platform::config::Ports;

use super::{BIN, Cleanup, NOTHING_UP, cli, temp_dir, text};

/// This module's stacks: 22xxx, and [`CDC_PORTS`] (see [`super::ports`]).
const PORTS: Ports = super::ports(22);

fn json(stdout: &[u8], all: &str) -> serde_json::Value {
    serde_json::from_slice(stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}):\n{all}"))
}

/// A reader that stops early (`shopstream lab list --json | head -c 1`) ends
/// the command by SIGPIPE, as it ends other Unix tools, not by a panic on
/// the failed write (Rust ignores SIGPIPE unless told otherwise).
#[test]
fn a_reader_that_goes_away_ends_the_command_by_sigpipe_not_a_panic() {
    use std::os::unix::process::ExitStatusExt;
    // The read end is closed before the command starts: its first write fails.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = Command::new(BIN)
        .args(["lab", "list", "--json"])
        .stdout(writer)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.signal(), Some(13), "{:?}: {stderr}", out.status);
}

#[test]
fn lab_list_unknown_labs_and_an_unreachable_system_answer_fast() {
    let out = Command::new(BIN)
        .args(["lab", "list", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let labs = json(&out.stdout, &text(&out));
    assert!(
        labs.as_array()
            .unwrap()
            .iter()
            .any(|l| l["name"] == "checkout-failure"),
        "{labs}"
    );

    let out = Command::new(BIN)
        .args(["lab", "run", "no-such-lab"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("checkout-failure"), "{}", text(&out));

    // Nothing listens on these ports: exit 4 with one report on stdout.
    let state = temp_dir("lab-nothing-up");
    let out = cli(
        &state,
        &NOTHING_UP,
        &["lab", "run", "checkout-failure", "--json", "--no-boot"],
    );
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    let report = json(&out.stdout, &text(&out));
    assert_eq!(report["passed"], false);
    assert_eq!(report["outcome"], "not_ready");
    assert!(
        report["error"]
            .as_str()
            .unwrap()
            .contains("cannot reach the gateway"),
        "{report:#}"
    );

    let out = Command::new(BIN)
        .args([
            "fault",
            "stripe-sim",
            "--url",
            "http://127.0.0.1:13099",
            "--show",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(
        text(&out).contains("cannot reach stripe-sim"),
        "{}",
        text(&out)
    );

    let out = Command::new(BIN)
        .args(["fault", "stripe-sim", "--set", "{not json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let _ = std::fs::remove_dir_all(state);
}

#[test]
fn the_checkout_failure_and_order_live_labs_pass_against_a_fresh_stack() {
    let state = temp_dir("lab-checkout-failure");
    let _cleanup = Cleanup(state.clone());
    let run = |args: &[&str]| cli(&state, &PORTS, args);

    // Boots (as `up`) and seeds (as `seed`) the stack first, then runs the lab.
    let out = run(&["lab", "run", "checkout-failure", "--json", "--no-install"]);
    let report = json(&out.stdout, &text(&out));
    assert_eq!(report["lab"], "checkout-failure");
    assert_eq!(
        report["passed"],
        true,
        "report:\n{report:#}\n\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let steps = report["steps"].as_array().unwrap();
    let kinds: Vec<&str> = steps.iter().map(|s| s["kind"].as_str().unwrap()).collect();
    for kind in ["action", "fault", "checkpoint", "assertion", "cleanup"] {
        assert!(kinds.contains(&kind), "no {kind} step: {kinds:?}");
    }
    assert!(steps.iter().all(|s| s["passed"] == true), "{report:#}");
    assert!(
        !report["measurements"].as_array().unwrap().is_empty(),
        "{report:#}"
    );

    // The lab cleared its fault; `fault stripe-sim` sets, shows and clears.
    let out = run(&["fault", "stripe-sim", "--show", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let faults = json(&out.stdout, &text(&out));
    assert_eq!(faults["fail_next"], serde_json::json!([]), "{faults}");
    let out = run(&["fault", "stripe-sim", "--set", r#"{"latency_ms": 5}"#]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("latency 5 ms"), "{}", text(&out));
    let out = run(&[
        "fault",
        "stripe-sim",
        "--set",
        r#"{"latency_ms": 99999999}"#,
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let out = run(&["fault", "stripe-sim", "--clear", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(json(&out.stdout, &text(&out))["latency_ms"], 0);

    // Running it again on the same stack passes too (nothing left behind).
    let out = run(&["lab", "run", "checkout-failure", "--json", "--no-boot"]);
    let again = json(&out.stdout, &text(&out));
    assert_eq!(again["passed"], true, "{again:#}\n{}", text(&out));

    // order-live on the same stack: SSE and a dropped-and-resumed WebSocket
    // see every step, the refund e-mail arrives, a 550 lands in the DLQ.
    let out = run(&["lab", "run", "order-live", "--json", "--no-boot"]);
    let live = json(&out.stdout, &text(&out));
    assert_eq!(
        live["passed"],
        true,
        "report:\n{live:#}\n\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let live_steps = live["steps"].as_array().unwrap();
    assert!(live_steps.iter().all(|s| s["passed"] == true), "{live:#}");
    assert!(
        live_steps
            .iter()
            .any(|s| s["kind"] == "cleanup" && s["name"] == "clear mail-sim's faults"),
        "{live:#}"
    );

    // media-pipeline on the same stack: a photo to ready without its GPS
    // tag, thumbnail retried and recovered, then failed; a near-duplicate
    // of a blocked picture rejected. Its faults are cleared at the end.
    let out = run(&["lab", "run", "media-pipeline", "--json", "--no-boot"]);
    let media = json(&out.stdout, &text(&out));
    assert_eq!(
        media["passed"],
        true,
        "report:\n{media:#}\n\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&["fault", "media", "--show", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(json(&out.stdout, &text(&out)), serde_json::json!({}));
    let out = run(&["fault", "media", "--set", r#"{"ingest": {"nope": 1}}"#]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));

    // feed-cache on the same stack: a new reader's first page, warm hits,
    // a Redis flush served from Postgres and recovered, a like that lifts a
    // product in a follower's feed.
    let out = run(&["lab", "run", "feed-cache", "--json", "--no-boot"]);
    let feed = json(&out.stdout, &text(&out));
    assert_eq!(
        feed["passed"],
        true,
        "report:\n{feed:#}\n\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&["feed", "backfill", "--all", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let backfilled = json(&out.stdout, &text(&out));
    assert!(backfilled["users"].as_u64() >= Some(2), "{backfilled}");
    let out = run(&["feed", "backfill"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "neither --user nor --all: {}",
        text(&out)
    );
    let newcomer = "0190a0a0-0000-7000-8000-000000000001";
    let out = run(&["feed", "explain", newcomer, "--top", "3", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let explained = json(&out.stdout, &text(&out));
    assert_eq!(
        explained["cards"].as_array().unwrap().len(),
        3,
        "{explained}"
    );
    assert!(
        explained["cards"][0]["title"]
            .as_str()
            .is_some_and(|t| !t.is_empty())
    );
    let out = run(&["feed", "explain", "not-a-user"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));

    // dsar on the same stack: a shopper's data found, exported, erased and
    // certified; planted residue fails the next sweep.
    let out = run(&["lab", "run", "dsar", "--json", "--no-boot"]);
    let dsar = json(&out.stdout, &text(&out));
    assert_eq!(
        dsar["passed"],
        true,
        "report:\n{dsar:#}\n\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The CLI: an unknown subject completes with nothing found, and its
    // certificate verifies online and offline; a tampered one does not.
    let nobody = "0190a0a0-0000-7000-8000-0000000000d5";
    let out = run(&["dsar", "start", nobody, "--kind", "erase", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let started = json(&out.stdout, &text(&out));
    assert_eq!(started["state"], "completed", "{started}");
    let id = started["dsar_id"].as_str().unwrap().to_string();
    let cert = state.join("cert.jws");
    let out = run(&[
        "dsar",
        "status",
        &id,
        "--certificate",
        cert.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = run(&[
        "dsar",
        "verify",
        cert.to_str().unwrap(),
        "--subject",
        nobody,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("VALID"), "{}", text(&out));
    let chain = state.join("chain");
    let out = run(&["dsar", "chain", "--out", chain.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let jwks = chain.join("jwks.json");
    let offline = [
        "dsar",
        "verify",
        cert.to_str().unwrap(),
        "--jwks",
        jwks.to_str().unwrap(),
        "--chain",
        chain.to_str().unwrap(),
        "--json",
    ];
    let out = run(&offline);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(json(&out.stdout, &text(&out))["valid"], true);
    // One character of the signature changed: the signature check fails.
    let mut jws = std::fs::read_to_string(&cert).unwrap();
    let last = jws.pop().unwrap();
    jws.push(if last == 'A' { 'B' } else { 'A' });
    std::fs::write(&cert, jws).unwrap();
    let out = run(&offline);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let checks = json(&out.stdout, &text(&out));
    assert_eq!(
        checks["checks"][0]["name"], "certificate signature",
        "{checks}"
    );
    assert_eq!(checks["checks"][0]["ok"], false, "{checks}");
    let out = run(&["dsar", "start", "not-a-user", "--kind", "erase"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let out = run(&["dsar", "status", "0190a0a0-0000-7000-8000-00000000dead"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));

    let out = run(&["down", "--purge"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

/// Ports of the `cdc-latency` stack: 19xxx, clear of the dev stack's 19092
/// (Kafka) and 19000 (S3) and of the other tests' stacks; services
/// 19500..19518.
const CDC_PORTS: Ports = Ports {
    kafka: 19192,
    s3: 19300,
    services: 19500,
    ..super::ports(19)
};

#[test]
fn the_cdc_latency_lab_passes_against_a_fresh_stack() {
    let state = temp_dir("lab-cdc-latency");
    let _cleanup = Cleanup(state.clone());
    let run = |args: &[&str]| cli(&state, &CDC_PORTS, args);

    let out = run(&["lab", "run", "cdc-latency", "--json", "--no-install"]);
    let report = json(&out.stdout, &text(&out));
    assert_eq!(report["lab"], "cdc-latency");
    assert_eq!(
        report["passed"],
        true,
        "report:\n{report:#}\n\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let steps = report["steps"].as_array().unwrap();
    let names: Vec<&str> = steps.iter().map(|s| s["name"].as_str().unwrap()).collect();
    for step in [
        "SIGKILL the cdc process",
        "no edit was lost on product.events",
        "no version arrived out of order",
        "every edited product's indexed version equals the catalog's",
    ] {
        assert!(names.contains(&step), "no step {step:?}: {names:?}");
    }
    let measured: Vec<&str> = report["measurements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    // Sample counts are always reported; percentiles only when there were
    // samples (a search lagging behind the edit rate skips versions).
    for m in [
        "commit→kafka samples",
        "kafka→indexed samples",
        "commit→searchable samples",
    ] {
        assert!(measured.contains(&m), "no measurement {m:?}: {measured:?}");
    }

    let out = run(&["down", "--purge"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}
