//! The HTTP endpoints on the metrics port: health (liveness, readiness), `/metrics`, `/config`
//! and `POST /reload`.
//!
//! A few lines on a raw `TcpListener` (a handful of endpoints, no keep-alive): pulling in an
//! HTTP server framework for that would cost more build time than it saves.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::ops::exposition::Exposition;
use crate::state::Shared;

/// Serves /health/liveness, /health/readiness, /metrics, /config (the live settings, no
/// secrets) and POST /reload (200 with the new settings, or 400 with why nothing changed)
/// until the process ends. The metrics port is the proxy's admin port: bind it to a private
/// address (`metrics_address`, default localhost).
pub async fn serve_http(shared: Arc<Shared>, listener: TcpListener) {
    loop {
        let Ok((mut sock, _)) = listener.accept().await else {
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            let mut n = 0;
            // Read the request head (bounded); the body, if any, is ignored.
            while n < buf.len() {
                match tokio::time::timeout(Duration::from_secs(5), sock.read(&mut buf[n..])).await {
                    Ok(Ok(0)) | Err(_) | Ok(Err(_)) => break,
                    Ok(Ok(k)) => n += k,
                }
                if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            let head = String::from_utf8_lossy(&buf[..n]);
            let method = head.split_whitespace().next().unwrap_or("GET");
            let path = head.split_whitespace().nth(1).unwrap_or("/");
            let path = path.split('?').next().unwrap_or(path);
            let (status, ctype, body) = match path {
                "/config" => (
                    200,
                    "application/json",
                    crate::ops::reload::report(&shared.live(), &shared.reloader).to_string(),
                ),
                "/reload" if method == "POST" => match shared.reload().await {
                    Ok(live) => (
                        200,
                        "application/json",
                        crate::ops::reload::report(&live, &shared.reloader).to_string(),
                    ),
                    Err(e) => {
                        tracing::warn!("POST /reload: {e}");
                        (400, "text/plain", format!("{e}\n"))
                    }
                },
                "/reload" => (405, "text/plain", "use POST /reload\n".to_string()),
                "/health/liveness" => (200, "text/plain", "OK".to_string()),
                "/health/readiness" => {
                    let code = if shared.health.both_up() { 200 } else { 503 };
                    (code, "application/json", shared.health.report().to_string())
                }
                "/metrics" if shared.config.metrics_enabled => {
                    let mut body = shared.metrics.render();
                    let prefix = shared.metrics.prefix();
                    let mut readiness = Exposition::new(&mut body, prefix);
                    shared.health.render_metrics(&mut readiness);
                    (200, "text/plain; version=0.0.4", body)
                }
                _ => (404, "text/plain", "not found\n".to_string()),
            };
            let reason = match status {
                200 => "OK",
                400 => "Bad Request",
                405 => "Method Not Allowed",
                503 => "Service Unavailable",
                _ => "Not Found",
            };
            let resp = format!(
                "HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(resp.as_bytes()).await;
            let _ = sock.shutdown().await;
        });
    }
}
