//! Graceful shutdown: one [`CancellationToken`] cancelled on SIGINT or SIGTERM.
//! Servers take the token and stop accepting, then drain.

pub use tokio_util::sync::CancellationToken;

/// A token cancelled when the process receives SIGINT or SIGTERM.
pub fn on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown signal received");
        t.cancel();
    });
    token
}

/// Sleep for `period` unless `stop` fires first: `true` when the full period
/// passed, `false` when it is time to stop. The one "sleep or stop" of every
/// periodic worker:
///
/// ```text
/// while shutdown::sleep_or_stop(&stop, every).await { tick().await; }
/// ```
pub async fn sleep_or_stop(stop: &CancellationToken, period: std::time::Duration) -> bool {
    tokio::select! {
        _ = stop.cancelled() => false,
        _ = tokio::time::sleep(period) => true,
    }
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {},
                    _ = term.recv() => {},
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn sleep_or_stop_sleeps_until_stopped() {
        let stop = CancellationToken::new();
        assert!(sleep_or_stop(&stop, Duration::from_secs(5)).await);
        stop.cancel();
        assert!(!sleep_or_stop(&stop, Duration::from_secs(3600)).await);
    }
}
