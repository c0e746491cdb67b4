//! Live order updates over three transports, all fed by the fan-out hub
//! ([`crate::live`]) and resumed from orders' step log, which is the record:
//!
//! - SSE `GET /orders/{id}/stream`: each saga step is an event whose `id` is
//!   the step's sequence number; `Last-Event-ID` resumes; a comment heartbeat
//!   every [`SSE_HEARTBEAT`].
//! - WebSocket `GET /ws`: JSON messages ([`ClientMessage`], [`ServerMessage`])
//!   to subscribe to `order:<id>`, `product:<id>` and `room:<name>` (a chat
//!   room, [`crate::rooms`]), with `resume`, and to `say` something in a room.
//! - Long-poll `GET /orders/{id}/events?after=SEQ&wait_ms=N` (in
//!   [`crate::orders`]), answered as soon as a newer step exists.
//!
//! A live event is only a hint. Each order or room a connection follows keeps
//! the last sequence number it delivered; an event at or below it is skipped,
//! the next one is sent, and a gap (an event lost on the way) makes the
//! gateway re-read the record (orders' steps, the room's kept messages), as it
//! does after the fan-out was re-established. So a client sees every step and
//! message once, in order.

use std::{collections::BTreeMap, convert::Infallible, time::Duration};

use axum::{
    extract::{
        Path, State,
        ws::{
            CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade,
            rejection::WebSocketUpgradeRejection,
        },
    },
    http::HeaderMap,
    response::{
        IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
};
use futures::{SinkExt, StreamExt};
use shopstream_platform::{
    ErrorCode, Problem,
    auth::{Claims, access_token},
    realtime::{ClientMessage, LiveEvent, ServerMessage, Topic, WS_BEARER_PREFIX, WS_SUBPROTOCOL},
};
use shopstream_proto::orders::v1::ListOrderStepsRequest;
use tokio::sync::mpsc;

use crate::{
    AppState,
    auth::User,
    live::{Conn, LiveError, SSE_HEARTBEAT},
    orders::{OrderStepView, visible_order},
    rooms,
    upstream::{problem_of, request},
};

/// `kind` of an order step event.
pub const ORDER_STEP: &str = "order.step";

/// WebSocket close codes (RFC 6455 §7.4.1).
pub mod close {
    pub const NORMAL: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    pub const POLICY: u16 = 1008;
    pub const TOO_BIG: u16 = 1009;
    pub const TRY_AGAIN_LATER: u16 = 1013;
}

/// How long one frame may take to reach a client before it counts as too slow.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);
/// Each WebSocket's read buffer (it grows for a larger frame, up to the limit).
const WS_READ_BUFFER: usize = 4 * 1024;

/// What to do with a live event on an order topic whose last delivered
/// sequence number is `last`.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Already delivered (a replay, or it came with a re-read).
    Skip,
    /// The very next step: send it.
    Send,
    /// Steps are missing before it: re-read the steps after `last`.
    Reread,
}

pub fn next(last: u64, seq: u64) -> Next {
    if seq <= last {
        Next::Skip
    } else if seq == last + 1 {
        Next::Send
    } else {
        Next::Reread
    }
}

/// A step as a live event (what a re-read produces; the fan-out sends the same).
pub fn step_event(order_id: &str, s: &OrderStepView) -> LiveEvent {
    LiveEvent {
        topic: Topic::Order(uuid::Uuid::parse_str(order_id).unwrap_or_default()).to_string(),
        seq: u64::from(s.seq),
        kind: ORDER_STEP.into(),
        data: serde_json::to_value(s).unwrap_or_default(),
        committed_ms: s.at_ms,
    }
}

/// The order's steps after `after`, oldest first.
pub async fn steps_after(
    state: &AppState,
    tenant: &str,
    order_id: &str,
    after: u64,
) -> Result<Vec<OrderStepView>, Problem> {
    let steps = state
        .orders
        .clone()
        .list_order_steps(request(
            ListOrderStepsRequest {
                order_id: order_id.to_string(),
            },
            tenant,
            state.upstream_timeout,
        ))
        .await
        .map_err(|s| problem_of("orders", s))?
        .into_inner()
        .steps;
    Ok(steps
        .into_iter()
        .filter(|s| u64::from(s.seq) > after)
        .map(OrderStepView::from)
        .collect())
}

/// One followed topic with a record to re-read (an order's steps, a room's
/// kept messages): where its delivery stands.
struct Cursor {
    topic: Topic,
    last: u64,
}

impl Cursor {
    /// The events to send for live event `ev` (none, it, or a re-read).
    async fn on_event(
        &mut self,
        state: &AppState,
        tenant: &str,
        ev: LiveEvent,
    ) -> Result<Vec<LiveEvent>, Problem> {
        match next(self.last, ev.seq) {
            Next::Skip => Ok(vec![]),
            Next::Send => {
                self.last = ev.seq;
                Ok(vec![ev])
            }
            Next::Reread => self.reread(state, tenant).await,
        }
    }

    async fn reread(&mut self, state: &AppState, tenant: &str) -> Result<Vec<LiveEvent>, Problem> {
        let events = match &self.topic {
            Topic::Order(id) => {
                let id = id.to_string();
                let steps = steps_after(state, tenant, &id, self.last).await?;
                steps.iter().map(|s| step_event(&id, s)).collect()
            }
            Topic::Room(room) => rooms::after(&state.redis, tenant, room, self.last)
                .await
                .map_err(|e| Problem::new(ErrorCode::Unavailable, e.to_string()))?,
            // State, not history: nothing to re-read.
            Topic::Product(_) => vec![],
        };
        let events: Vec<LiveEvent> = events.into_iter().filter(|e| e.seq > self.last).collect();
        if let Some(e) = events.last() {
            self.last = e.seq;
        }
        Ok(events)
    }
}

pub(crate) fn live_problem(e: LiveError) -> Problem {
    let code = match e {
        LiveError::Unavailable => ErrorCode::Unavailable,
        _ => ErrorCode::RateLimited,
    };
    Problem::new(code, e.to_string())
}

/// A parsed order id, or the same 404 an unknown order gets.
pub(crate) fn order_topic(id: &str) -> Result<Topic, Problem> {
    Topic::parse(&format!("order:{id}"))
        .map_err(|_| Problem::new(ErrorCode::NotFound, "no such order"))
}

/// Milliseconds until the token expires (never negative).
fn until_expiry(state: &AppState, claims: &Claims) -> Duration {
    let ms = claims.exp.saturating_mul(1000) - state.clock.now_ms();
    Duration::from_millis(ms.max(0) as u64)
}

/// The steps of one order as Server-Sent Events, live. Each event's `id` is
/// the step's sequence number (`event: step`, `data`: the step as JSON); send
/// it back as `Last-Event-ID` to resume after it. A comment line every 15 s
/// keeps proxies from closing the stream; a client that reads too slowly is
/// disconnected and resumes; the stream ends when the access token expires.
#[utoipa::path(get, path = "/orders/{id}/stream", tag = "checkout", security(("bearer" = [])),
    params(("id" = String, Path, description = "order id"),
        ("Last-Event-ID" = Option<u64>, Header, description = "the last step seen: only later steps are sent")),
    responses(
        (status = 200, content_type = "text/event-stream", description = "the order's steps, then each new one as it happens"),
        (status = 400, description = "Last-Event-ID is not a sequence number"),
        (status = 401, description = "no or invalid access token"),
        (status = 404, description = "absent or not yours"),
        (status = 429, description = "too many live connections for this user or gateway"),
        (status = 503, description = "orders or the realtime fan-out is unavailable")))]
pub async fn order_stream(
    State(state): State<AppState>,
    User(claims): User,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let after = match headers.get("last-event-id") {
        None => 0,
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .ok_or_else(|| {
                Problem::new(
                    ErrorCode::BadRequest,
                    "Last-Event-ID must be a step's sequence number",
                )
            })?,
    };
    let topic = order_topic(&id)?;
    visible_order(&state, &claims, id.clone()).await?;
    let mut conn = state.live.connect(&claims.sub).map_err(live_problem)?;
    conn.subscribe(&claims.tid, &topic)
        .await
        .map_err(live_problem)?;
    let mut cursor = Cursor { topic, last: after };
    let backlog = cursor.reread(&state, &claims.tid).await?;
    let (tx, rx) = mpsc::channel::<Event>(state.live.limits().queue);
    let ttl = until_expiry(&state, &claims);
    tokio::spawn(pump_sse(state, claims.tid, conn, cursor, backlog, tx, ttl));
    let events = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|e| (Ok::<_, Infallible>(e), rx))
    });
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::new().interval(SSE_HEARTBEAT).text("heartbeat"))
        .into_response())
}

fn sse_event(ev: &LiveEvent) -> Event {
    Event::default()
        .id(ev.seq.to_string())
        .event("step")
        .data(ev.data.to_string())
}

/// Feed one SSE response until the client leaves, lags, or its token expires.
async fn pump_sse(
    state: AppState,
    tenant: String,
    mut conn: Conn,
    mut cursor: Cursor,
    backlog: Vec<LiveEvent>,
    tx: mpsc::Sender<Event>,
    ttl: Duration,
) {
    let lagged = conn.lagged();
    let mut resyncs = conn.resyncs();
    let stop = state.shutdown.clone();
    let expiry = tokio::time::sleep(ttl);
    tokio::pin!(expiry);
    let mut pending = backlog;
    loop {
        for ev in pending.drain(..) {
            // A full response queue means a slow reader: end the stream;
            // the client reconnects with Last-Event-ID and loses nothing.
            if tx.try_send(sse_event(&ev)).is_err() {
                return;
            }
        }
        let step = tokio::select! {
            _ = tx.closed() => return,
            _ = lagged.cancelled() => return,
            _ = stop.cancelled() => return,
            _ = &mut expiry => return,
            _ = resyncs.next() => cursor.reread(&state, &tenant).await,
            ev = conn.recv() => match ev {
                Some(ev) => cursor.on_event(&state, &tenant, ev).await,
                None => return,
            },
        };
        match step {
            Ok(evs) => pending = evs,
            Err(p) => {
                tracing::warn!(error = ?p.detail, "live order stream ended: re-read failed");
                return;
            }
        }
    }
}

/// The access token of a WebSocket upgrade: the `Authorization` header or
/// the access cookie, else a `bearer.<token>` subprotocol entry.
pub(crate) fn ws_token(headers: &HeaderMap) -> Option<String> {
    access_token(headers).or_else(|| {
        headers
            .get_all("sec-websocket-protocol")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .find_map(|p| p.trim().strip_prefix(WS_BEARER_PREFIX).map(str::to_owned))
    })
}

/// A WebSocket of live updates. Authenticate with the access cookie or by
/// offering the subprotocols `shopstream.v1` and `bearer.<access token>`
/// (never a token in the URL). Then send JSON text frames:
/// `{"type":"subscribe","channel":"order:<id>","after":N}` (after optional),
/// `{"type":"resume","channel":...,"after":N}`, `{"type":"unsubscribe",...}`,
/// `{"type":"say","channel":"room:<name>","text":"..."}`, `{"type":"ping"}`.
/// Channels: `order:<id>` (yours), `product:<id>`, `room:<name>` (the last 50
/// messages are kept). The gateway answers `subscribed`, `said` (`seq`),
/// `event` (`channel`, `seq`, `kind`, `data`, `committed_ms`), `pong` and
/// `error` frames. A bad
/// message gets an error frame and the connection stays; a frame over 16 KiB
/// closes it with 1009, a reader too slow for its queue with 1013, an expired
/// token with 1008.
#[utoipa::path(get, path = "/ws", tag = "realtime", security(("bearer" = [])),
    params(("Sec-WebSocket-Protocol" = Option<String>, Header, description = "`shopstream.v1, bearer.<access token>` when no cookie carries the token")),
    responses(
        (status = 101, description = "switched to the WebSocket protocol"),
        (status = 400, description = "not a WebSocket upgrade request"),
        (status = 401, description = "no or invalid access token"),
        (status = 426, description = "the connection cannot be upgraded"),
        (status = 429, description = "too many live connections for this user or gateway")))]
pub async fn ws(
    State(state): State<AppState>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, Problem> {
    let token = ws_token(&headers).ok_or_else(|| {
        Problem::new(
            ErrorCode::Unauthenticated,
            "a live connection needs an access token (cookie, Authorization, or a bearer.<token> subprotocol)",
        )
    })?;
    let claims = state
        .verifier
        .verify(&token, state.clock.now_ms())
        .map_err(|e| Problem::new(ErrorCode::Unauthenticated, e.to_string()))?;
    shopstream_platform::http::record_tenant(&claims.tid);
    let upgrade = match upgrade {
        Ok(u) => u,
        Err(r) => {
            // 400 for a request that is no upgrade, 426 for a connection
            // that cannot be upgraded; a problem document either way.
            let mut p = Problem::new(
                ErrorCode::BadRequest,
                format!("not a WebSocket upgrade: {}", r.body_text()),
            );
            p.status = r.status().as_u16();
            let mut resp = p.into_response();
            *resp.status_mut() = r.status();
            return Ok(resp);
        }
    };
    let conn = state.live.connect(&claims.sub).map_err(live_problem)?;
    // The protocol limit only bounds memory; the frame limit is ours (1009).
    let max_frame = state.live.limits().max_frame;
    Ok(upgrade
        .protocols([WS_SUBPROTOCOL])
        .max_message_size(max_frame * 4)
        // Tungstenite's defaults are 128 KiB each way per socket, most of a
        // thousand connections' memory; our frames are small, and each event
        // is written at once (no batching to wait for).
        .read_buffer_size(WS_READ_BUFFER)
        .write_buffer_size(0)
        .on_upgrade(move |socket| Session::new(state, claims, conn).run(socket))
        .into_response())
}

/// One WebSocket's state.
struct Session {
    state: AppState,
    claims: Claims,
    conn: Conn,
    /// Followed topics with a record (orders, rooms), by channel.
    cursors: BTreeMap<String, Cursor>,
}

/// How a session ends: a close frame, or nothing (the client is gone).
type Ending = Option<(u16, &'static str)>;

impl Session {
    fn new(state: AppState, claims: Claims, conn: Conn) -> Session {
        Session {
            state,
            claims,
            conn,
            cursors: BTreeMap::new(),
        }
    }

    async fn run(mut self, socket: WebSocket) {
        let (mut sink, mut stream) = socket.split();
        let lagged = self.conn.lagged();
        let mut resyncs = self.conn.resyncs();
        let stop = self.state.shutdown.clone();
        let limits = self.state.live.limits().clone();
        let expiry = tokio::time::sleep(until_expiry(&self.state, &self.claims));
        tokio::pin!(expiry);
        let idle = tokio::time::sleep(limits.idle);
        tokio::pin!(idle);
        let ending: Ending = loop {
            let out: Vec<ServerMessage> = tokio::select! {
                _ = &mut expiry => break Some((close::POLICY, "access token expired: sign in again and resume")),
                _ = &mut idle => break Some((close::NORMAL, "idle timeout")),
                _ = lagged.cancelled() => break Some((close::TRY_AGAIN_LATER, "too slow: reconnect and resume")),
                _ = stop.cancelled() => break Some((close::GOING_AWAY, "gateway shutting down")),
                _ = resyncs.next() => self.reread_all().await,
                ev = self.conn.recv() => match ev {
                    Some(ev) => self.on_live(ev).await,
                    None => break None,
                },
                msg = stream.next() => {
                    idle.as_mut().reset(tokio::time::Instant::now() + limits.idle);
                    match msg {
                        None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break None,
                        Some(Ok(Message::Text(t))) if t.len() > limits.max_frame => {
                            break Some((close::TOO_BIG, "frame too large"));
                        }
                        Some(Ok(Message::Binary(b))) if b.len() > limits.max_frame => {
                            break Some((close::TOO_BIG, "frame too large"));
                        }
                        Some(Ok(Message::Text(t))) => self.on_client(t.as_str()).await,
                        Some(Ok(Message::Binary(_))) => vec![error("bad_message", "send JSON text frames", None)],
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => vec![],
                    }
                }
            };
            let mut gone = false;
            for m in out {
                let text = serde_json::to_string(&m).unwrap_or_default();
                let sent =
                    tokio::time::timeout(SEND_TIMEOUT, sink.send(Message::Text(text.into()))).await;
                if !matches!(sent, Ok(Ok(()))) {
                    gone = true;
                    break;
                }
            }
            if gone {
                break None;
            }
        };
        if let Some((code, reason)) = ending {
            let frame = CloseFrame {
                code,
                reason: Utf8Bytes::from_static(reason),
            };
            let _ =
                tokio::time::timeout(SEND_TIMEOUT, sink.send(Message::Close(Some(frame)))).await;
        }
    }

    async fn on_live(&mut self, ev: LiveEvent) -> Vec<ServerMessage> {
        let topic = ev.topic.clone();
        let Some(cursor) = self.cursors.get_mut(&topic) else {
            // Topics without a record (product likes) are sent as they come.
            return vec![ServerMessage::Event(ev)];
        };
        match cursor.on_event(&self.state, &self.claims.tid, ev).await {
            Ok(evs) => evs.into_iter().map(ServerMessage::Event).collect(),
            Err(p) => vec![error("unavailable", &detail(&p), Some(topic))],
        }
    }

    async fn reread_all(&mut self) -> Vec<ServerMessage> {
        let mut out = vec![];
        for (topic, cursor) in &mut self.cursors {
            match cursor.reread(&self.state, &self.claims.tid).await {
                Ok(evs) => out.extend(evs.into_iter().map(ServerMessage::Event)),
                Err(p) => out.push(error("unavailable", &detail(&p), Some(topic.clone()))),
            }
        }
        out
    }

    async fn on_client(&mut self, text: &str) -> Vec<ServerMessage> {
        let msg = match serde_json::from_str::<ClientMessage>(text) {
            Ok(m) => m,
            Err(e) => return vec![error("bad_message", &e.to_string(), None)],
        };
        match msg {
            ClientMessage::Ping {} => vec![ServerMessage::Pong],
            ClientMessage::Subscribe { channel, after } => {
                self.subscribe(channel, after.unwrap_or(0)).await
            }
            ClientMessage::Resume { channel, after } => self.subscribe(channel, after).await,
            ClientMessage::Say { channel, text } => self.say(channel, &text).await,
            ClientMessage::Unsubscribe { channel } => match Topic::parse(&channel) {
                Ok(topic) => {
                    self.conn.unsubscribe(&self.claims.tid, &topic);
                    self.cursors.remove(&topic.to_string());
                    vec![ServerMessage::Unsubscribed { channel }]
                }
                Err(e) => vec![error("unknown_channel", &e.to_string(), Some(channel))],
            },
        }
    }

    async fn subscribe(&mut self, channel: String, after: u64) -> Vec<ServerMessage> {
        let topic = match Topic::parse(&channel) {
            Ok(t) => t,
            Err(e) => return vec![error("unknown_channel", &e.to_string(), Some(channel))],
        };
        let tenant = self.claims.tid.clone();
        match &topic {
            Topic::Order(id) => {
                if let Err(p) = visible_order(&self.state, &self.claims, id.to_string()).await {
                    let code = if p.code == ErrorCode::NotFound {
                        "not_found"
                    } else {
                        "unavailable"
                    };
                    return vec![error(code, &detail(&p), Some(channel))];
                }
            }
            Topic::Product(_) | Topic::Room(_) => {}
        }
        if let Err(e) = self.conn.subscribe(&tenant, &topic).await {
            let code = match e {
                LiveError::Unavailable => "unavailable",
                _ => "too_many_subscriptions",
            };
            return vec![error(code, &e.to_string(), Some(channel))];
        }
        let mut out = vec![ServerMessage::Subscribed {
            channel: channel.clone(),
        }];
        if !matches!(topic, Topic::Product(_)) {
            let cursor = self
                .cursors
                .entry(channel.clone())
                .or_insert(Cursor { topic, last: after });
            cursor.last = after;
            match cursor.reread(&self.state, &tenant).await {
                Ok(evs) => out.extend(evs.into_iter().map(ServerMessage::Event)),
                Err(p) => out.push(error("unavailable", &detail(&p), Some(channel))),
            }
        }
        out
    }

    async fn say(&mut self, channel: String, text: &str) -> Vec<ServerMessage> {
        let room = match Topic::parse(&channel) {
            Ok(Topic::Room(room)) => room,
            Ok(_) => {
                return vec![error(
                    "bad_message",
                    "only rooms take messages",
                    Some(channel),
                )];
            }
            Err(e) => return vec![error("unknown_channel", &e.to_string(), Some(channel))],
        };
        let now = self.state.clock.now_ms();
        let said = rooms::say(
            &self.state.redis,
            &self.claims.tid,
            &room,
            &self.claims.sub,
            text,
            now,
        )
        .await;
        match said {
            Ok(seq) => vec![ServerMessage::Said { channel, seq }],
            Err(e @ rooms::RoomError::BadText) => {
                vec![error("bad_message", &e.to_string(), Some(channel))]
            }
            Err(e) => vec![error("unavailable", &e.to_string(), Some(channel))],
        }
    }
}

fn error(code: &str, message: &str, channel: Option<String>) -> ServerMessage {
    ServerMessage::Error {
        code: code.into(),
        message: message.into(),
        channel,
    }
}

fn detail(p: &Problem) -> String {
    p.detail.clone().unwrap_or_else(|| p.title.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_step_is_sent_replays_are_skipped_and_gaps_are_reread() {
        assert_eq!(next(0, 1), Next::Send);
        assert_eq!(next(3, 4), Next::Send);
        assert_eq!(next(3, 3), Next::Skip);
        assert_eq!(next(3, 1), Next::Skip);
        assert_eq!(next(3, 5), Next::Reread);
        assert_eq!(next(0, 2), Next::Reread);
    }

    #[test]
    fn a_bearer_subprotocol_entry_carries_the_token_when_no_cookie_does() {
        let mut h = HeaderMap::new();
        h.insert(
            "sec-websocket-protocol",
            "shopstream.v1, bearer.abc.def".parse().unwrap(),
        );
        assert_eq!(ws_token(&h).as_deref(), Some("abc.def"));
        h.insert("cookie", "ss_access=cookie-token".parse().unwrap());
        assert_eq!(ws_token(&h).as_deref(), Some("cookie-token"));
        assert_eq!(ws_token(&HeaderMap::new()), None);
    }
}
