//! The HTTP endpoints on the metrics port: health (liveness, readiness), `/metrics`, `/config`
//! and `POST /reload`.
//!
//! A few lines on a raw `TcpListener` (a handful of endpoints, no keep-alive): pulling in an
//! HTTP server framework for that would cost more build time than it saves. Each connection
//! is one request and one response: [`read_head`] reads the request, [`route`] maps its method
//! and path to a [`Response`] (a new endpoint is one line there), and the connection closes.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::ops::exposition::Exposition;
use crate::state::Shared;

/// Serves /health/liveness, /health/readiness, /metrics, /config (the live settings, no
/// secrets) and POST /reload (200 with the new settings, or 400 with why nothing changed)
/// until the process ends. The metrics port is the proxy's admin port: bind it to a private
/// address (`metrics_address`, default localhost).
pub async fn serve_http(shared: Arc<Shared>, listener: TcpListener) {
    loop {
        let Ok((sock, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(answer(shared.clone(), sock));
    }
}

/// One connection: reads its request, writes the response and closes.
async fn answer(shared: Arc<Shared>, mut sock: TcpStream) {
    let head = read_head(&mut sock).await;
    let (method, path) = method_and_path(&head);
    let response = route(&shared, method, path).await;
    let _ = sock.write_all(response.to_http().as_bytes()).await;
    let _ = sock.shutdown().await;
}

/// The request head, as far as it came: reading stops at the blank line that ends it, at 4 KiB,
/// at end of stream or after 5 s without data. The body, if any, is ignored.
async fn read_head(sock: &mut TcpStream) -> String {
    let mut buf = vec![0u8; 4096];
    let mut n = 0;
    while n < buf.len() {
        match tokio::time::timeout(Duration::from_secs(5), sock.read(&mut buf[n..])).await {
            Ok(Ok(0)) | Err(_) | Ok(Err(_)) => break,
            Ok(Ok(k)) => n += k,
        }
        if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// The request line's method and path (without its query string); a head too short to have
/// them reads as `GET /`.
fn method_and_path(head: &str) -> (&str, &str) {
    let method = head.split_whitespace().next().unwrap_or("GET");
    let path = head.split_whitespace().nth(1).unwrap_or("/");
    let path = path.split('?').next().unwrap_or(path);
    (method, path)
}

/// The route table: one line per endpoint.
async fn route(shared: &Shared, method: &str, path: &str) -> Response {
    match path {
        "/config" => config(shared),
        "/reload" if method == "POST" => reload(shared).await,
        "/reload" => Response::text(405, "use POST /reload\n".to_string()),
        "/health/liveness" => Response::text(200, "OK".to_string()),
        "/health/readiness" => readiness(shared),
        "/metrics" if shared.config.metrics_enabled => metrics(shared),
        _ => Response::text(404, "not found\n".to_string()),
    }
}

/// `/config`: the live settings, no secrets.
fn config(shared: &Shared) -> Response {
    Response::json(
        200,
        crate::ops::reload::report(&shared.live(), &shared.reloader).to_string(),
    )
}

/// `POST /reload`: the new settings, or 400 with why nothing changed.
async fn reload(shared: &Shared) -> Response {
    match shared.reload().await {
        Ok(live) => Response::json(
            200,
            crate::ops::reload::report(&live, &shared.reloader).to_string(),
        ),
        Err(e) => {
            tracing::warn!("POST /reload: {e}");
            Response::text(400, format!("{e}\n"))
        }
    }
}

/// `/health/readiness`: 200 when both clusters are up, else 503; the report either way.
fn readiness(shared: &Shared) -> Response {
    let code = if shared.health.both_up() { 200 } else { 503 };
    Response::json(code, shared.health.report().to_string())
}

/// `/metrics`: the proxy's metrics and, after them, the readiness gauges.
fn metrics(shared: &Shared) -> Response {
    let mut body = shared.metrics.render();
    let prefix = shared.metrics.prefix();
    let mut readiness = Exposition::new(&mut body, prefix);
    shared.health.render_metrics(&mut readiness);
    Response {
        status: 200,
        content_type: "text/plain; version=0.0.4",
        body,
    }
}

/// What one endpoint answers.
struct Response {
    status: u16,
    content_type: &'static str,
    body: String,
}

impl Response {
    fn text(status: u16, body: String) -> Response {
        Response {
            status,
            content_type: "text/plain",
            body,
        }
    }

    fn json(status: u16, body: String) -> Response {
        Response {
            status,
            content_type: "application/json",
            body,
        }
    }

    /// The whole HTTP/1.1 response, closing the connection after it.
    fn to_http(&self) -> String {
        let Response {
            status,
            content_type,
            body,
        } = self;
        let reason = match status {
            200 => "OK",
            400 => "Bad Request",
            405 => "Method Not Allowed",
            503 => "Service Unavailable",
            _ => "Not Found",
        };
        format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    }
}
