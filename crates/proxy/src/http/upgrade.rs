//! WebSocket over HTTP/1.1 (`Upgrade: websocket`) and over HTTP/2 (extended CONNECT,
//! RFC 8441): the handshake is relayed like any request, and once the server accepts it
//! (`101 Switching Protocols`, or `200` to the CONNECT) both sides become a raw two-way
//! relay.

use std::time::Duration;

use http::header::{CONNECTION, UPGRADE};
use http::{Method, Request, Response, StatusCode, Version};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use crate::slot::ConnectionSlot;
use crate::tunnel::relay::relay_streams;

/// An HTTP/1.1 `GET` asking to switch to the WebSocket protocol.
pub fn is_websocket<B>(request: &Request<B>) -> bool {
    let has_token = |name, token: &str| {
        request.headers().get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    request.method() == Method::GET
        && request.version() == Version::HTTP_11
        && has_token(UPGRADE, "websocket")
        && has_token(CONNECTION, "upgrade")
}

/// An HTTP/2 extended CONNECT (`:protocol`, e.g. WebSocket over HTTP/2).
pub fn is_extended_connect<B>(request: &Request<B>) -> bool {
    request.method() == Method::CONNECT
        && request.extensions().get::<hyper::ext::Protocol>().is_some()
}

/// When the server switched protocols, relay the two upgraded connections in the
/// background until either side closes or both are idle for `idle_timeout`. The relay
/// keeps the client connection's slot until it ends: it stays counted against
/// `max_connections` and in `sluice_active_connections`, and the drain waits for it.
pub fn relay_if_switched<B>(client: OnUpgrade, response: &mut Response<B>, idle_timeout: Duration) {
    let accepted = response.status() == StatusCode::SWITCHING_PROTOCOLS
        || (response.version() == Version::HTTP_2 && response.status().is_success());
    if !accepted {
        return;
    }
    let server = hyper::upgrade::on(response);
    let slot = ConnectionSlot::current();
    tokio::spawn(async move {
        let _slot = slot;
        match tokio::join!(client, server) {
            (Ok(client), Ok(server)) => {
                let outcome =
                    relay_streams(TokioIo::new(client), TokioIo::new(server), idle_timeout).await;
                tracing::debug!(
                    up = outcome.bytes_up,
                    down = outcome.bytes_down,
                    "websocket relay ended"
                );
            }
            (client, server) => {
                tracing::debug!(
                    client_ok = client.is_ok(),
                    server_ok = server.is_ok(),
                    "websocket upgrade failed"
                );
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_a_websocket_handshake() {
        let request = |connection: &str, upgrade: &str| {
            Request::get("/chat")
                .header(CONNECTION, connection)
                .header(UPGRADE, upgrade)
                .body(())
                .unwrap()
        };
        assert!(is_websocket(&request("keep-alive, Upgrade", "websocket")));
        assert!(is_websocket(&request("upgrade", "WebSocket")));
        assert!(!is_websocket(&request("keep-alive", "websocket")));
        assert!(!is_websocket(&request("upgrade", "h2c")));
    }
}
