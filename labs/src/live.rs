//! A client of the gateway's live updates, for labs and benchmarks: a
//! WebSocket opened with the `shopstream.v1` subprotocol and the access token
//! as a `bearer.` entry (never in the URL), and a parser of Server-Sent
//! Events as they arrive in chunks.

use serde_json::Value;
pub use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::kit::LabError;

/// A client WebSocket.
pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Open `GET {base}/ws` as the holder of `token`.
pub async fn ws_connect(base: &str, token: &str) -> Result<Ws, LabError> {
    let url = format!("{}/ws", base.replacen("http://", "ws://", 1));
    let failed = |e: String| LabError::Failed(format!("WebSocket {url}: {e}"));
    let mut req = url
        .as_str()
        .into_client_request()
        .map_err(|e| failed(e.to_string()))?;
    let protocols = format!("shopstream.v1, bearer.{token}")
        .parse()
        .map_err(|_| failed("the token is not a header value".into()))?;
    req.headers_mut()
        .insert("sec-websocket-protocol", protocols);
    tokio_tungstenite::connect_async(req)
        .await
        .map(|(ws, _)| ws)
        .map_err(|e| failed(e.to_string()))
}

/// `v` as a WebSocket text frame.
pub fn text(v: &Value) -> tungstenite::Message {
    tungstenite::Message::Text(v.to_string().into())
}

/// Server-Sent Events from a byte stream: feed it chunks, get whole events
/// (`id:` and JSON `data:`) back. Comments (heartbeats) are skipped.
#[derive(Debug, Default)]
pub struct SseParser {
    buf: String,
}

impl SseParser {
    /// The events completed by `chunk`: (id, data).
    pub fn push(&mut self, chunk: &[u8]) -> Vec<(u64, Value)> {
        self.buf.push_str(&String::from_utf8_lossy(chunk));
        let mut events = Vec::new();
        while let Some(end) = self.buf.find("\n\n") {
            let block: String = self.buf.drain(..end + 2).collect();
            let (mut id, mut data) = (None, None);
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    id = v.trim().parse::<u64>().ok();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data = serde_json::from_str::<Value>(v.trim()).ok();
                }
            }
            if let (Some(id), Some(data)) = (id, data) {
                events.push((id, data));
            }
        }
        events
    }
}

/// Whether an order state (as a step's `state` shows it) is final.
pub fn terminal(state: &Value) -> bool {
    matches!(state.as_str(), Some("completed" | "cancelled"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_across_chunks_come_out_whole_and_heartbeats_are_skipped() {
        let mut p = SseParser::default();
        assert!(p.push(b": heartbeat\n\nid: 1\nevent: step\nda").is_empty());
        let got = p.push(b"ta: {\"seq\":1}\n\nid: 2\ndata: {\"seq\":2}\n\n");
        assert_eq!(
            got,
            vec![
                (1, serde_json::json!({"seq": 1})),
                (2, serde_json::json!({"seq": 2}))
            ]
        );
    }
}
