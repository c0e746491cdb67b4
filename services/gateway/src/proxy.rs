//! Forwarding to a service's REST API (identity's auth routes, catalog's admin
//! writes): method, path, query, body and the headers that matter go through;
//! the client's address goes in `X-Forwarded-For`; the answer comes back as is.

use axum::{
    body::Bytes,
    extract::Request,
    http::{HeaderMap, HeaderName, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use shopstream_platform::{ErrorCode, Problem, telemetry};

/// Request headers passed upstream.
const FORWARDED_REQUEST_HEADERS: &[&str] = &[
    "content-type",
    "accept",
    "authorization",
    "cookie",
    "if-match",
    "idempotency-key",
    "x-request-id",
    "x-tenant-id",
];

/// Response headers passed back.
const FORWARDED_RESPONSE_HEADERS: &[&str] = &[
    "content-type",
    "set-cookie",
    "etag",
    "location",
    "retry-after",
];

/// Header a forwarded admin request carries after the gateway checked the role.
pub const ADMIN_HEADER: &str = "x-shopstream-admin";

/// Forward `req` to `base` + the same path and query. `extra` headers are set
/// after the client's (so a client can never supply them itself).
pub async fn forward(
    client: &reqwest::Client,
    base: &str,
    req: Request,
    extra: &[(&str, String)],
    body_limit: usize,
) -> Response {
    let (parts, body) = req.into_parts();
    let path_q = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let url = format!("{}{}", base.trim_end_matches('/'), path_q);
    let body: Bytes = match axum::body::to_bytes(body, body_limit).await {
        Ok(b) => b,
        Err(_) => {
            return Problem::new(ErrorCode::PayloadTooLarge, "request body too large")
                .into_response();
        }
    };
    let mut headers = HeaderMap::new();
    for name in FORWARDED_REQUEST_HEADERS {
        if let Some(v) = parts.headers.get(*name) {
            headers.insert(HeaderName::from_static(name), v.clone());
        }
    }
    let peer = parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip().to_string());
    if let Some(ip) = peer.and_then(|ip| HeaderValue::from_str(&ip).ok()) {
        headers.insert("x-forwarded-for", ip);
    }
    for (k, v) in extra {
        if let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            headers.insert(k, v);
        }
    }
    telemetry::inject(&mut telemetry::HeaderCarrier(&mut headers));
    let upstream = client
        .request(parts.method.clone(), &url)
        .headers(headers)
        .body(body)
        .send()
        .await;
    let resp = match upstream {
        Ok(r) => r,
        Err(e) if e.is_timeout() => {
            return Problem::new(ErrorCode::Timeout, "upstream timed out").into_response();
        }
        Err(e) => {
            tracing::warn!(error = %e, %url, "upstream unavailable");
            return Problem::new(ErrorCode::Unavailable, "upstream unavailable").into_response();
        }
    };
    let status = StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut out_headers = HeaderMap::new();
    for name in FORWARDED_RESPONSE_HEADERS {
        for v in resp.headers().get_all(*name) {
            out_headers.append(HeaderName::from_static(name), v.clone());
        }
    }
    let bytes = resp.bytes().await.unwrap_or_default();
    let mut out = (status, bytes).into_response();
    out.headers_mut().extend(out_headers);
    out
}
