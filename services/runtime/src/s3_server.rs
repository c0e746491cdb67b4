//! The embedded S3-compatible server (`shopstream serve s3`): s3s with a
//! file-system backend, SigV4 enforced (presigned URLs included).

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto::Builder as ConnBuilder,
};
use s3s::{auth::SimpleAuth, service::S3ServiceBuilder};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Bound on draining open connections at shutdown.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct S3Config {
    pub addr: SocketAddr,
    pub root: PathBuf,
    pub access_key: String,
    pub secret_key: String,
}

/// Serve on `listener` until `shutdown` is cancelled.
pub async fn run(
    listener: TcpListener,
    cfg: S3Config,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&cfg.root)?;
    let fs = s3s_fs::FileSystem::new(&cfg.root)
        .map_err(|e| anyhow::anyhow!("s3 root {}: {e:?}", cfg.root.display()))?;
    let mut b = S3ServiceBuilder::new(fs);
    b.set_auth(SimpleAuth::from_single(cfg.access_key, cfg.secret_key));
    let service = b.build();
    let http = ConnBuilder::new(TokioExecutor::new());
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tracing::info!(addr = %listener.local_addr()?, root = %cfg.root.display(), "s3 server listening");
    loop {
        let (socket, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        // Without this, small GETs wait on Nagle + delayed ACK (~40 ms).
        let _ = socket.set_nodelay(true);
        let conn = http.serve_connection(TokioIo::new(socket), service.clone());
        let conn = graceful.watch(conn.into_owned());
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown()).await;
    Ok(())
}
