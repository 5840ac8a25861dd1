//! A raw native-protocol client for tests that must see frames a driver hides (events,
//! errors to malformed input, protocol versions): blocking sockets, v3+ frame layout.
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::sandbox::Sandbox;

/// Encodes one frame (flags 0).
pub fn frame(version: u8, stream: i16, op: u8, body: &[u8]) -> Vec<u8> {
    let mut f = vec![version, 0];
    f.extend_from_slice(&stream.to_be_bytes());
    f.push(op);
    f.extend_from_slice(&(body.len() as u32).to_be_bytes());
    f.extend_from_slice(body);
    f
}

pub fn startup_body() -> Vec<u8> {
    let mut b = vec![0, 1];
    for s in ["CQL_VERSION", "3.0.0"] {
        b.extend_from_slice(&(s.len() as u16).to_be_bytes());
        b.extend_from_slice(s.as_bytes());
    }
    b
}

/// Reads one response frame (v3+ layout); None when the proxy closed the connection.
pub fn read_frame(sock: &mut TcpStream) -> Option<(u8, i16, u8, Vec<u8>)> {
    let mut h = [0u8; 9];
    sock.read_exact(&mut h).ok()?;
    let len = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) as usize;
    let mut body = vec![0; len];
    sock.read_exact(&mut body).ok()?;
    Some((h[0], i16::from_be_bytes([h[2], h[3]]), h[4], body))
}

pub fn connect(addr: &str) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s
}

/// Opens a raw connection and completes the handshake with the target's credentials.
pub fn authenticated(addr: &str, sb: &Sandbox) -> TcpStream {
    try_authenticated(addr, sb).unwrap_or_else(|e| panic!("{e}"))
}

/// `authenticated`, with a refusal (e.g. a cluster too busy to authenticate in time) as an
/// error for callers that may retry.
pub fn try_authenticated(addr: &str, sb: &Sandbox) -> Result<TcpStream, String> {
    let mut sock = connect(addr);
    sock.write_all(&frame(4, 0, 0x01, &startup_body())).unwrap();
    let (_, _, op, body) = read_frame(&mut sock).ok_or("no answer to STARTUP")?;
    if op != 0x03 {
        return Err(format!(
            "AUTHENTICATE expected (the sandbox's clusters ask for authentication), got opcode \
             {op:#x}: {}",
            String::from_utf8_lossy(&body)
        ));
    }
    let (u, p) = sb.creds("target");
    let token = format!("\0{u}\0{p}");
    let mut body = (token.len() as i32).to_be_bytes().to_vec();
    body.extend_from_slice(token.as_bytes());
    sock.write_all(&frame(4, 0, 0x0F, &body)).unwrap();
    let (_, _, op, body) = read_frame(&mut sock).ok_or("no answer to AUTH_RESPONSE")?;
    if op != 0x10 {
        return Err(format!(
            "AUTH_SUCCESS expected, got opcode {op:#x}: {}",
            String::from_utf8_lossy(&body)
        ));
    }
    Ok(sock)
}
