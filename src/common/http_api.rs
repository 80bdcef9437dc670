//! NSQ's HTTP response conventions ("V1", nsq-reference §1.9), shared by nsqd's API and
//! nsqlookupd's: plain-text and empty 200s, JSON bodies, `{"message": ...}` errors, the
//! `X-NSQ-Content-Type` header on everything, and query strings read the way Go reads them.

use std::collections::HashMap;

use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An error response: `{"message": "<TEXT>"}` with `status`.
pub fn err(status: u16, message: &str) -> Response {
    let body = json!({ "message": message }).to_string();
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body,
    )
        .into_response()
}

/// A 200 whose body is `text` as is (NSQ sends no JSON content type for strings).
pub fn ok_text(text: &'static str) -> Response {
    (StatusCode::OK, text).into_response()
}

/// The empty 200 that NSQ's admin actions answer with.
pub fn empty() -> Response {
    StatusCode::OK.into_response()
}

/// A 200 with `value` as JSON.
pub fn json_body(value: &impl serde::Serialize) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        serde_json::to_string(value).unwrap_or_default(),
    )
        .into_response()
}

/// Query parameters, first value wins; `None` when the query string is malformed.
pub fn params(query: &Option<String>) -> Option<HashMap<String, String>> {
    let mut out = HashMap::new();
    for pair in query
        .as_deref()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let k = percent_decode(k)?;
        let v = percent_decode(v)?;
        out.entry(k).or_insert(v);
    }
    Some(out)
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// Middleware: NSQ's 405 body in place of axum's, and `X-NSQ-Content-Type` on every response.
/// Every request of both APIs passes here, so this is also where a finished request is
/// reported to the memory reclaimer.
pub async fn nsq_headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    crate::common::reclaim::note_released();
    if resp.status() == StatusCode::METHOD_NOT_ALLOWED {
        resp = err(405, "METHOD_NOT_ALLOWED");
    }
    resp.headers_mut()
        .insert("X-NSQ-Content-Type", HeaderValue::from_static("nsq; version=1.0"));
    resp
}
