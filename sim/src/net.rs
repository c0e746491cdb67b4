//! turmoil plumbing: the services' real axum and tonic servers on turmoil
//! listeners, tonic channels and one-shot HTTP/1 requests over turmoil
//! streams. Every client call is bounded: a crashed host does not reset its
//! peers and a partition drops segments silently.

use std::{
    io,
    net::SocketAddr,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use futures::Stream;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::{Channel, Endpoint, Uri, server::Connected};

/// Port of every gRPC server in the simulation.
pub const GRPC_PORT: u16 = 50051;
/// Port of every HTTP server in the simulation.
pub const HTTP_PORT: u16 = 80;

/// An axum listener over turmoil.
pub struct Listener(pub turmoil::net::TcpListener);

impl axum::serve::Listener for Listener {
    type Io = turmoil::net::TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.0.accept().await {
                Ok(x) => return x,
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

/// Bind `port` on the current host for an axum server.
pub async fn http_listener(port: u16) -> io::Result<Listener> {
    Ok(Listener(
        turmoil::net::TcpListener::bind(("0.0.0.0", port)).await?,
    ))
}

/// A turmoil stream a tonic server accepts.
pub struct Conn(turmoil::net::TcpStream);

impl Connected for Conn {
    type ConnectInfo = ();
    fn connect_info(&self) -> Self::ConnectInfo {}
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// Connections accepted on `port` of the current host, for
/// `tonic::transport::Server::serve_with_incoming`.
pub async fn grpc_incoming(port: u16) -> io::Result<impl Stream<Item = io::Result<Conn>>> {
    let listener = turmoil::net::TcpListener::bind(("0.0.0.0", port)).await?;
    Ok(futures::stream::unfold(listener, |l| async move {
        loop {
            match l.accept().await {
                Ok((s, _)) => return Some((Ok(Conn(s)), l)),
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    }))
}

/// Serve `routes` on the current host's gRPC port, each request bounded
/// like the services' own servers (2 s).
pub async fn serve_grpc(routes: tonic::service::Routes) -> Result<(), Box<dyn std::error::Error>> {
    let incoming = grpc_incoming(GRPC_PORT).await?;
    tonic::transport::Server::builder()
        .timeout(Duration::from_secs(2))
        .add_routes(routes)
        .serve_with_incoming(incoming)
        .await?;
    Ok(())
}

/// A lazy tonic channel to `host:port` over turmoil; every request is
/// bounded by `timeout`. Callers build one per attempt, so a connection
/// wedged by a partition is never reused.
pub fn channel(host: &str, port: u16, timeout: Duration) -> Channel {
    Endpoint::from_shared(format!("http://{host}:{port}"))
        .expect("a host name and a port make a valid uri")
        .timeout(timeout)
        .connect_timeout(timeout)
        .connect_with_connector_lazy(tower::service_fn(|uri: Uri| async move {
            let host = uri.host().unwrap_or_default().to_string();
            let port = uri.port_u16().unwrap_or(80);
            let s = turmoil::net::TcpStream::connect((host.as_str(), port)).await?;
            Ok::<_, io::Error>(TokioIo::new(s))
        }))
}

/// One HTTP/1.1 request on a fresh connection, bounded by `timeout`.
pub async fn http(
    host: &str,
    port: u16,
    req: http::Request<Full<Bytes>>,
    timeout: Duration,
) -> Result<(http::StatusCode, Bytes), String> {
    let call = async {
        let s = turmoil::net::TcpStream::connect((host, port))
            .await
            .map_err(|e| format!("connect {host}: {e}"))?;
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s))
            .await
            .map_err(|e| format!("handshake {host}: {e}"))?;
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(30), conn).await;
        });
        let resp = send
            .send_request(req)
            .await
            .map_err(|e| format!("{host}: {e}"))?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("{host} body: {e}"))?
            .to_bytes();
        Ok((status, body))
    };
    tokio::time::timeout(timeout, call)
        .await
        .map_err(|_| format!("{host}: no answer within {} ms", timeout.as_millis()))?
}
