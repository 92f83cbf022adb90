//! Reading the client's ClientHello off the socket without forwarding it (SPEC §1 step
//! 3). The bytes are held so that they can be sent to the server unchanged (tunnel) or
//! replayed into our own TLS server (bump).

use std::time::Duration;

use bytes::BufMut;

use sluice_tls::client_hello::{ClientHello, Peek, Peeker, MAX_CLIENT_HELLO_BYTES};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::Instant;

use crate::outcome::{Failure, Kind};
use crate::telemetry::metrics::PhaseEnd;

pub enum HelloRead {
    /// A complete ClientHello; `held` are all bytes read so far (possibly more than the
    /// hello itself).
    Hello { hello: ClientHello, held: Vec<u8> },
    /// Not TLS, or nothing at all within the timeout (a server-speaks-first protocol).
    NotTls { held: Vec<u8> },
    /// Terminate: why, for the access log's `error` field.
    Failed(Kind),
}

// Its failures are not TLS failures of a bump: nothing for the metrics to count.
impl PhaseEnd for HelloRead {
    fn failure(&self) -> Option<&Failure> {
        None
    }
}

pub async fn read_client_hello(
    client: &mut (impl AsyncRead + Unpin),
    mut held: Vec<u8>,
    timeout: Duration,
) -> HelloRead {
    let deadline = Instant::now() + timeout;
    // Resumes where it stopped, so a hello trickled in tiny reads costs linear time.
    let mut peeker = Peeker::default();
    loop {
        match peeker.peek(&held) {
            Peek::Complete { hello, .. } => return HelloRead::Hello { hello, held },
            Peek::NotTls => return HelloRead::NotTls { held },
            Peek::Malformed(_) => return HelloRead::Failed(Kind::ClientHelloMalformed),
            Peek::TooLarge => return HelloRead::Failed(Kind::ClientHelloTooLarge),
            Peek::Incomplete => {}
        }
        let room = MAX_CLIENT_HELLO_BYTES.saturating_sub(held.len());
        if room == 0 {
            return HelloRead::Failed(Kind::ClientHelloTooLarge);
        }
        held.reserve(room.min(16 * 1024));
        let read =
            tokio::time::timeout_at(deadline, client.read_buf(&mut (&mut held).limit(room))).await;
        match read {
            Err(_) if held.is_empty() => return HelloRead::NotTls { held },
            Err(_) => return HelloRead::Failed(Kind::ClientHelloTimeout),
            Ok(Ok(0)) => return HelloRead::Failed(Kind::ClientClosed),
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return HelloRead::Failed(Kind::ClientReset),
        }
    }
}

#[cfg(test)]
mod tests {
    //! The ClientHello phase over an in-memory stream.

    use tokio::io::AsyncWriteExt;

    use super::*;

    const CURL_HELLO: &[u8] = include_bytes!("../../../tls/testdata/client_hello_curl.bin");
    const TIMEOUT: Duration = Duration::from_secs(5);

    // A hello in two pieces (one of them sent before the 200) is read whole and held
    // byte for byte.
    #[tokio::test]
    async fn a_hello_in_pieces_is_read_and_held_whole() {
        let (mut client, mut proxy_side) = tokio::io::duplex(1 << 16);
        let (early, rest) = CURL_HELLO.split_at(10);
        client.write_all(rest).await.unwrap();
        match read_client_hello(&mut proxy_side, early.to_vec(), TIMEOUT).await {
            HelloRead::Hello { held, .. } => assert_eq!(held, CURL_HELLO),
            _ => panic!("a complete ClientHello"),
        }
    }

    // A protocol that is not TLS is `not_tls`, its bytes held for a tunnel.
    #[tokio::test]
    async fn another_protocol_is_not_tls() {
        let (mut client, mut proxy_side) = tokio::io::duplex(1024);
        client.write_all(b"SSH-2.0-OpenSSH_9.6\r\n").await.unwrap();
        match read_client_hello(&mut proxy_side, Vec::new(), TIMEOUT).await {
            HelloRead::NotTls { held } => assert!(held.starts_with(b"SSH-2.0")),
            _ => panic!("not TLS"),
        }
    }

    // A client that leaves half-way through its hello, and one that sends a record
    // that is no handshake, end the phase with their failure kinds.
    #[tokio::test]
    async fn a_hello_cut_short_or_malformed_is_a_failure() {
        let (mut client, mut proxy_side) = tokio::io::duplex(1 << 16);
        client.write_all(&CURL_HELLO[..100]).await.unwrap();
        drop(client);
        let read = read_client_hello(&mut proxy_side, Vec::new(), TIMEOUT).await;
        assert!(matches!(read, HelloRead::Failed(Kind::ClientClosed)));
        let mut lying = CURL_HELLO.to_vec();
        // The handshake claims to be longer than its record.
        lying[6] = 0xff;
        let (mut client, mut proxy_side) = tokio::io::duplex(1 << 16);
        client.write_all(&lying).await.unwrap();
        drop(client);
        match read_client_hello(&mut proxy_side, Vec::new(), TIMEOUT).await {
            HelloRead::Failed(kind) => assert_ne!(kind, Kind::NotTls),
            _ => panic!("a lying hello fails"),
        }
    }
}
