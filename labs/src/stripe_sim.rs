//! A thin client of stripe-sim's admin routes (`/_sim/...`): read, add to and
//! clear the injected faults, and list payment intents with their status and
//! metadata. Labs use it to inject payment faults; `shopstream fault
//! stripe-sim` is the same client on the command line.

use serde_json::Value;

use crate::{
    kit::LabError,
    target::{HTTP_TIMEOUT, status_error, unreachable},
};

#[derive(Debug, Clone)]
pub struct StripeSim {
    http: reqwest::Client,
    base: String,
}

impl StripeSim {
    pub fn new(base: &str) -> Result<StripeSim, LabError> {
        let http = reqwest::Client::builder()
            .timeout(HTTP_TIMEOUT)
            .connect_timeout(std::time::Duration::from_secs(2))
            .build()
            .map_err(|e| LabError::Failed(format!("http client: {e}")))?;
        Ok(StripeSim {
            http,
            base: base.trim_end_matches('/').to_string(),
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, LabError> {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.request(method.clone(), &url);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| unreachable("stripe-sim", &self.base, &e))?;
        let status = resp.status();
        let text = resp
            .text()
            .await
            .map_err(|e| unreachable("stripe-sim", &self.base, &e))?;
        if !status.is_success() {
            return Err(status_error(
                &format!("stripe-sim {method} {path}"),
                status,
                &text,
            ));
        }
        serde_json::from_str(&text).map_err(|e| {
            LabError::Failed(format!(
                "stripe-sim {method} {path}: the answer is not JSON: {e}"
            ))
        })
    }

    /// `GET /_sim/faults`: the active faults.
    pub async fn faults(&self) -> Result<Value, LabError> {
        self.call(reqwest::Method::GET, "/_sim/faults", None).await
    }

    /// `POST /_sim/faults`: fields present replace the current value;
    /// `fail_next` rules are added (replacing one for the same operation).
    /// Returns the faults now active.
    pub async fn set_faults(&self, update: &Value) -> Result<Value, LabError> {
        self.call(reqwest::Method::POST, "/_sim/faults", Some(update))
            .await
    }

    /// `DELETE /_sim/faults`: no faults at all. Returns the (empty) faults.
    pub async fn clear_faults(&self) -> Result<Value, LabError> {
        self.call(reqwest::Method::DELETE, "/_sim/faults", None)
            .await
    }

    /// `GET /_sim/payment_intents`: every intent, oldest first.
    pub async fn payment_intents(&self) -> Result<Vec<Value>, LabError> {
        let list = self
            .call(reqwest::Method::GET, "/_sim/payment_intents", None)
            .await?;
        Ok(list["data"].as_array().cloned().unwrap_or_default())
    }
}

/// Whether `faults` (as `GET /_sim/faults` returns them) injects nothing.
pub fn is_clear(faults: &Value) -> bool {
    let zero = |k: &str| faults[k].as_u64().unwrap_or(0) == 0;
    zero("latency_ms")
        && zero("drop_webhooks")
        && zero("duplicate_webhooks")
        && zero("delay_webhooks_ms")
        && faults["fail_next"].as_array().is_none_or(|a| a.is_empty())
}

/// One line describing the active faults, e.g. `capture fails ×3 (HTTP 500)`.
pub fn describe(faults: &Value) -> String {
    if is_clear(faults) {
        return "none".into();
    }
    let mut parts = Vec::new();
    for r in faults["fail_next"].as_array().into_iter().flatten() {
        parts.push(format!(
            "{} fails ×{} (HTTP {}{})",
            r["operation"].as_str().unwrap_or("?"),
            r["count"].as_u64().unwrap_or(1),
            r["status"].as_u64().unwrap_or(500),
            if r["after_effect"].as_bool().unwrap_or(false) {
                ", after the effect"
            } else {
                ""
            }
        ));
    }
    for (key, what) in [
        ("latency_ms", "latency"),
        ("drop_webhooks", "webhooks dropped"),
        ("duplicate_webhooks", "webhooks duplicated"),
        ("delay_webhooks_ms", "webhook delay"),
    ] {
        if let Some(v) = faults[key].as_u64().filter(|v| *v > 0) {
            let unit = if key.ends_with("_ms") { " ms" } else { "" };
            parts.push(format!("{what} {v}{unit}"));
        }
    }
    parts.join(", ")
}

/// The intents whose metadata names `order_id` (or `payment_id`, if known).
pub fn intents_of<'a>(intents: &'a [Value], order_id: &str, payment_id: &str) -> Vec<&'a Value> {
    intents
        .iter()
        .filter(|pi| {
            pi["metadata"].as_object().is_some_and(|m| {
                m.values()
                    .filter_map(Value::as_str)
                    .any(|v| v == order_id || (!payment_id.is_empty() && v == payment_id))
            })
        })
        .collect()
}

/// Set `faults` in stripe-sim as the lab's fault `name`, with the cleanup
/// that clears them when the lab ends (also when it fails or is stopped).
pub async fn inject(
    lab: &crate::kit::Lab,
    sim: &StripeSim,
    name: &str,
    faults: &Value,
) -> Result<(), LabError> {
    let cleanup_sim = sim.clone();
    lab.fault(
        name,
        async {
            let now = sim.set_faults(faults).await?;
            Ok(format!("stripe-sim faults: {}", describe(&now)))
        },
        "clear stripe-sim's faults",
        move || async move {
            let now = cleanup_sim.clear_faults().await?;
            Ok(format!("stripe-sim faults: {}", describe(&now)))
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn faults_are_described_in_one_line() {
        assert_eq!(describe(&json!({"latency_ms": 0, "fail_next": []})), "none");
        let f = json!({
            "latency_ms": 2000,
            "fail_next": [{"operation": "capture", "status": 500, "count": 3, "after_effect": false}],
            "drop_webhooks": 0, "duplicate_webhooks": 1, "delay_webhooks_ms": 0
        });
        assert_eq!(
            describe(&f),
            "capture fails ×3 (HTTP 500), latency 2000 ms, webhooks duplicated 1"
        );
    }

    #[test]
    fn intents_are_matched_by_metadata() {
        let intents = vec![
            json!({"id": "pi_1", "metadata": {"order_id": "o-1"}}),
            json!({"id": "pi_2", "metadata": {"order_id": "o-2"}}),
            json!({"id": "pi_3", "metadata": {"payment_id": "p-1"}}),
            json!({"id": "pi_4", "metadata": {}}),
        ];
        let ids: Vec<_> = intents_of(&intents, "o-1", "p-1")
            .iter()
            .map(|p| p["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["pi_1", "pi_3"]);
        assert!(intents_of(&intents, "o-9", "").is_empty());
    }
}
