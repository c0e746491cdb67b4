//! `shopstream test` end to end: the cheap refusals, then a short slice of
//! `flash-sale` with one `kill:orders` and one wire latency fault against a
//! fresh stack of its own, which must pass every invariant; then the same
//! slice while an operator's mistake corrupts a SKU's stock, which the
//! verdict must catch (exit 1, the stock invariant failed).

use shopstream_platform::config::Ports;

use super::{Cleanup, NOTHING_UP, cli, temp_dir, text};

/// This module's stack: 21xxx (see [`super::ports`]).
const PORTS: Ports = super::ports(21);

#[test]
fn test_refuses_unknown_scenarios_bad_chaos_and_a_stack_that_is_not_up() {
    let state = temp_dir("scenario-refusals");
    // Nothing is up there, whatever the other test of this module is doing.
    let run = |args: &[&str]| cli(&state, &NOTHING_UP, args);
    let out = run(&["test", "--list"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    for name in ["flash-sale", "checkout-spike", "browse", "cold-start"] {
        assert!(text(&out).contains(name), "{}", text(&out));
    }
    let out = run(&["test", "--scenario", "stampede"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("flash-sale"),
        "names the valid ones: {}",
        text(&out)
    );
    let out = run(&[
        "test",
        "--scenario",
        "flash-sale",
        "--duration",
        "10",
        "--chaos",
        "kill:orders@20s",
    ]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "beyond the duration: {}",
        text(&out)
    );
    let out = run(&[
        "test",
        "--scenario",
        "flash-sale",
        "--chaos",
        "melt:orders@1s",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let out = run(&["test", "--scenario", "flash-sale", "--duration", "5"]);
    assert_eq!(out.status.code(), Some(4), "nothing is up: {}", text(&out));
    assert!(text(&out).contains("shopstream up"), "{}", text(&out));
    let out = run(&["test", "--scenario", "cold-start"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "cold-start needs --yes: {}",
        text(&out)
    );
}

#[test]
fn a_flash_sale_slice_with_a_kill_and_wire_latency_passes_and_corruption_fails_it() {
    let state = temp_dir("scenario-flash-sale");
    let _cleanup = Cleanup(state.clone());
    let run = |args: &[&str]| cli(&state, &PORTS, args);
    let out = run(&["up", "--no-install"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // No pictures: the media pipeline is not what this test is about.
    let out = run(&["seed", "--images", "0"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // A hold an earlier run (or a shopper) left on the first product's SKU:
    // the sale must not take that SKU, whose stock could change under it
    // when the hold lapses.
    let held = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(hold_first_sku());

    let dir = state.join("report");
    let out = run(&[
        "test",
        "--scenario",
        "flash-sale",
        "--duration",
        "30",
        "--users",
        "400",
        "--rate",
        "40",
        "--stock",
        "60",
        "--orders",
        "12",
        "--chaos",
        // Both windows end inside the ten seconds it takes to start 400
        // buyers at 40/s: a window the load outlives is not reported, and
        // an idle machine finished this load at 11.7 s (a window to 12 s
        // went missing).
        "kill:orders@3s, latency:orders->inventory=150ms±50@5s+4s",
        "--json",
        "--out",
        dir.to_str().unwrap(),
    ]);
    let all = text(&out);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}):\n{all}"));
    let invariants = report["invariants"].as_array().expect("invariants");
    assert!(invariants.len() >= 7, "{report:#}");
    for i in invariants {
        assert_eq!(i["pass"], true, "{}: {}\n\n{all}", i["name"], i["detail"]);
    }
    let sold = invariants
        .iter()
        .find(|i| i["name"].as_str().unwrap().starts_with("no SKU oversold"))
        .unwrap()["detail"]
        .as_str()
        .unwrap();
    assert!(
        !sold.contains(&held) && sold.matches(" units, ").count() == 3,
        "three SKUs sold, not the held {held}: {sold}"
    );
    assert_eq!(out.status.code(), Some(0), "{all}");
    // The faults ran: two windows, the kill and the latency.
    let faults = report["faults"].as_array().unwrap();
    assert_eq!(faults.len(), 2, "{report:#}");
    assert!(
        report["headline"]["count"].as_u64().unwrap() > 0,
        "{report:#}"
    );
    for f in ["report.json", "summary.md", "chart.svg"] {
        assert!(dir.join(f).exists(), "{f} written");
    }
    // Every fault is cleared and nothing stays stopped.
    let out = run(&["fault", "show", "--json"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "[]",
        "{}",
        text(&out)
    );
    let out = run(&["status", "--json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "everything ready again: {}",
        text(&out)
    );

    // An operator's mistake during the load: a sale SKU's stock raised by
    // hand (units appear from nowhere). The verdict must say so.
    // It lands once the load has begun (the line the scenario prints then),
    // after the verdict's "before" picture, however long the pre-flight took.
    let mut child = super::cli_command(&state, &PORTS)
        .args([
            "test",
            "--scenario",
            "flash-sale",
            "--duration",
            "20",
            "--users",
            "200",
            "--rate",
            "20",
            "--stock",
            "30",
            "--orders",
            "4",
            "--json",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let corrupt = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut lines = std::io::BufReader::new(stderr).lines();
        let mut seen = Vec::new();
        let mut raised = None;
        let mut sale = None;
        for line in lines.by_ref().map_while(Result::ok) {
            // "test: flash-sale: N units over the SKUs A, B, C (...)"
            if let Some(rest) = line.split(" units over the SKUs ").nth(1) {
                sale = rest.split([',', ' ']).next().map(str::to_string);
            }
            if raised.is_none()
                && line.contains("users for up to")
                && let Some(sku) = sale.clone()
            {
                tokio::runtime::Runtime::new()
                    .unwrap()
                    .block_on(raise_stock_by_hand(&sku, 5));
                raised = Some(sku);
            }
            seen.push(line);
        }
        (raised, seen.join("\n"))
    });
    let out = child.wait_with_output().unwrap();
    let (raised, stderr) = corrupt.join().unwrap();
    let all = format!("{}{stderr}", String::from_utf8_lossy(&out.stdout));
    let raised = raised.unwrap_or_else(|| panic!("the load never began: {all}"));
    assert_eq!(out.status.code(), Some(1), "the verdict fails: {all}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let stock = report["invariants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"].as_str().unwrap().starts_with("no SKU oversold"))
        .unwrap();
    assert_eq!(stock["pass"], false, "{report:#}");
    assert!(
        stock["detail"].as_str().unwrap().contains(&raised),
        "names the SKU {raised}: {report:#}"
    );
}

/// Hold one unit of the first product's first SKU for 600 s as a shopper
/// of its own, through the gateway; returns the SKU id.
async fn hold_first_sku() -> String {
    let (gateway, _) =
        shopstream_platform::config::service_addrs("gateway", PORTS.services).unwrap();
    let base = format!("http://{gateway}");
    let http = reqwest::Client::new();
    let creds = serde_json::json!({
        "email": "scenario-test-leftover@example.com",
        "password": "a shopper who left a hold behind",
    });
    http.post(format!("{base}/auth/signup"))
        .json(&creds)
        .send()
        .await
        .unwrap();
    let session: serde_json::Value = http
        .post(format!("{base}/auth/login"))
        .json(&creds)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = session["access_token"].as_str().expect("logged in");
    let page: serde_json::Value = http
        .get(format!("{base}/products?limit=1"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let sku = page["items"][0]["skus"][0]["id"].as_str().unwrap();
    let hold = http
        .post(format!("{base}/reservations"))
        .bearer_auth(token)
        .json(&serde_json::json!({"items": [{"sku_id": sku, "quantity": 1}], "ttl_s": 600}))
        .send()
        .await
        .unwrap();
    assert_eq!(hold.status().as_u16(), 201, "{:?}", hold.text().await);
    sku.to_string()
}

/// Raise the on-hand stock of `sku` (one the flash sale sells) by `units`,
/// straight through inventory's admin gRPC, as an operator would by mistake.
async fn raise_stock_by_hand(sku: &str, units: i64) {
    use shopstream_proto::inventory::v1::{
        GetStockRequest, SetStockRequest, inventory_service_client::InventoryServiceClient,
    };
    let (_, inventory) =
        shopstream_platform::config::service_addrs("inventory", PORTS.services).unwrap();
    let sku = sku.to_string();
    let mut inv = InventoryServiceClient::connect(format!("http://{inventory}"))
        .await
        .unwrap();
    let now = inv
        .get_stock(GetStockRequest {
            sku_id: sku.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .stock
        .unwrap();
    inv.set_stock(SetStockRequest {
        sku_id: sku.clone(),
        on_hand: now.on_hand + units,
    })
    .await
    .unwrap();
}
