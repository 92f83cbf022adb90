//! Short answers sluice writes itself on a raw client socket: CONNECT's `200` and the
//! error statuses, each with a one-line text body saying why.

use tokio::io::{AsyncWrite, AsyncWriteExt};

pub const CONNECTION_ESTABLISHED: &[u8] = b"HTTP/1.1 200 Connection established\r\n\r\n";

fn reason_phrase(status: u16) -> &'static str {
    match status {
        508 => "Loop Detected",
        _ => http::StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("Error"),
    }
}

/// The bytes of an error response that closes the connection.
pub fn error_response(status: u16, why: &str) -> Vec<u8> {
    error_response_with(status, why, &[])
}

/// [`error_response`] with extra header lines (`Proxy-Authenticate` for a 407).
pub fn error_response_with(status: u16, why: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    // The reason is one line: never let a CR/LF from an upstream error split it.
    let body: String = why
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let extra: String = headers
        .iter()
        .map(|(name, value)| format!("{name}: {value}\r\n"))
        .collect();
    format!(
        "HTTP/1.1 {status} {}\r\n{extra}Content-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}\n",
        reason_phrase(status),
        body.len() + 1
    )
    .into_bytes()
}

/// Write an error response and flush. Failure to write means the client is gone.
pub async fn send_error<W: AsyncWrite + Unpin>(client: &mut W, status: u16, why: &str) {
    send_bytes(client, &error_response(status, why)).await;
}

/// Write a response made by [`error_response_with`] and close.
pub async fn send_bytes<W: AsyncWrite + Unpin>(client: &mut W, response: &[u8]) {
    let _ = client.write_all(response).await;
    let _ = client.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_response_is_well_formed_with_a_one_line_body() {
        let bytes = error_response(508, "loop\r\ninjected: header");
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.starts_with("HTTP/1.1 508 Loop Detected\r\n"));
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert_eq!(body, "loop  injected: header\n");
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
    }
}
