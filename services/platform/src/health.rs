//! Readiness checks behind `/readyz`. Liveness (`/healthz`) is the process
//! answering at all; readiness is every registered dependency answering.

use std::{future::Future, pin::Pin, sync::Arc, time::Duration};

use serde::Serialize;

type CheckFn = dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync;

/// Bound on one readiness check.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Named readiness checks, run concurrently on every `/readyz`.
#[derive(Clone, Default)]
pub struct Readiness {
    checks: Vec<(String, Arc<CheckFn>)>,
}

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.checks.iter().map(|(n, _)| n))
            .finish()
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CheckResult {
    pub name: String,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Readiness {
    pub fn new() -> Readiness {
        Readiness::default()
    }

    /// Register a check; it must answer within [`CHECK_TIMEOUT`].
    pub fn with_check<F, Fut>(mut self, name: impl Into<String>, check: F) -> Readiness
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        self.checks
            .push((name.into(), Arc::new(move || Box::pin(check()))));
        self
    }

    /// A check that a Postgres pool answers `SELECT 1`.
    pub fn with_postgres(self, name: &str, pool: sqlx::PgPool) -> Readiness {
        self.with_check(name.to_string(), move || {
            let pool = pool.clone();
            async move {
                sqlx::query("SELECT 1")
                    .execute(&pool)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
        })
    }

    /// Run every check; the overall result is ready only if all pass.
    pub async fn run(&self) -> (bool, Vec<CheckResult>) {
        let futs = self.checks.iter().map(|(name, check)| {
            let name = name.clone();
            let fut = check();
            async move {
                let res = match tokio::time::timeout(CHECK_TIMEOUT, fut).await {
                    Ok(r) => r,
                    Err(_) => Err(format!("timed out after {CHECK_TIMEOUT:?}")),
                };
                CheckResult {
                    name,
                    ok: res.is_ok(),
                    error: res.err(),
                }
            }
        });
        let results = futures::future::join_all(futs).await;
        (results.iter().all(|r| r.ok), results)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ready_only_when_every_check_passes() {
        let r = Readiness::new()
            .with_check("a", || async { Ok(()) })
            .with_check("b", || async { Err("down".to_string()) });
        let (ok, results) = r.run().await;
        assert!(!ok);
        assert_eq!(results[1].error.as_deref(), Some("down"));
        let (ok, _) = Readiness::new()
            .with_check("a", || async { Ok(()) })
            .run()
            .await;
        assert!(ok);
    }

    #[tokio::test(start_paused = true)]
    async fn a_hanging_check_times_out() {
        let r = Readiness::new().with_check("slow", || async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok(())
        });
        let (ok, results) = r.run().await;
        assert!(!ok);
        assert!(results[0].error.as_deref().unwrap().contains("timed out"));
    }
}
