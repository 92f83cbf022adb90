//! Watches the first HTTP/2 frame a server sends — its SETTINGS, which RFC 9113 §3.4
//! requires to come first — to learn whether it allows extended CONNECT (RFC 8441,
//! WebSocket over HTTP/2) before sluice offers that to the client. hyper does not tell
//! when the server's SETTINGS have arrived, only what they said so far.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::watch;

const FRAME_HEADER: usize = 9;
const SETTINGS: u8 = 0x4;
const SETTINGS_ENABLE_CONNECT_PROTOCOL: u16 = 0x8;

/// What the server's first frame said: `None` until it has been read.
pub type ExtendedConnect = watch::Receiver<Option<bool>>;

/// An upstream stream that reads the server's first frame on its way through.
pub struct SettingsWatch<T> {
    inner: T,
    /// The first frame so far; emptied once it has been judged.
    first_frame: Vec<u8>,
    verdict: Option<Arc<watch::Sender<Option<bool>>>>,
}

impl<T> SettingsWatch<T> {
    pub fn new(inner: T) -> (Self, ExtendedConnect) {
        let (sender, receiver) = watch::channel(None);
        let watch = SettingsWatch {
            inner,
            first_frame: Vec::new(),
            verdict: Some(Arc::new(sender)),
        };
        (watch, receiver)
    }

    fn observe(&mut self, bytes: &[u8]) {
        if self.verdict.is_none() {
            return;
        }
        self.first_frame.extend_from_slice(bytes);
        if let Some(enabled) = judge(&self.first_frame) {
            if let Some(verdict) = self.verdict.take() {
                verdict.send_replace(Some(enabled));
            }
            self.first_frame = Vec::new();
        }
    }
}

/// `Some(allowed)` once `bytes` hold the whole first frame; a first frame that is not
/// SETTINGS (a broken server) counts as not allowing it.
fn judge(bytes: &[u8]) -> Option<bool> {
    let header = bytes.get(..FRAME_HEADER)?;
    let length =
        usize::from(header[0]) << 16 | usize::from(header[1]) << 8 | usize::from(header[2]);
    if header[3] != SETTINGS {
        return Some(false);
    }
    let payload = bytes.get(FRAME_HEADER..FRAME_HEADER + length)?;
    Some(payload.chunks_exact(6).any(|setting| {
        u16::from_be_bytes([setting[0], setting[1]]) == SETTINGS_ENABLE_CONNECT_PROTOCOL
            && setting[2..] != [0, 0, 0, 0]
    }))
}

impl<T: AsyncRead + Unpin> AsyncRead for SettingsWatch<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            let read = buf.filled()[before..].to_vec();
            self.observe(&read);
        }
        polled
    }
}

delegate_async_write!(SettingsWatch);

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(entries: &[(u16, u32)]) -> Vec<u8> {
        let mut frame = vec![0, 0, (entries.len() * 6) as u8, SETTINGS, 0, 0, 0, 0, 0];
        for (id, value) in entries {
            frame.extend_from_slice(&id.to_be_bytes());
            frame.extend_from_slice(&value.to_be_bytes());
        }
        frame
    }

    #[test]
    fn reads_enable_connect_protocol_from_the_first_settings_frame() {
        assert_eq!(judge(&settings(&[(0x3, 100), (0x8, 1)])), Some(true));
        assert_eq!(judge(&settings(&[(0x8, 0)])), Some(false));
        assert_eq!(judge(&settings(&[(0x4, 65535)])), Some(false));
        assert_eq!(judge(&settings(&[])), Some(false));
        let full = settings(&[(0x8, 1)]);
        assert_eq!(judge(&full[..full.len() - 1]), None, "incomplete");
        assert_eq!(judge(&full[..4]), None, "incomplete header");
        // Not SETTINGS first: a broken server, no extended CONNECT.
        assert_eq!(judge(&[0, 0, 0, 0x6, 0, 0, 0, 0, 0]), Some(false));
    }

    #[tokio::test]
    async fn the_verdict_arrives_however_the_bytes_are_split() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut server, client) = tokio::io::duplex(64);
        let (mut watched, mut verdict) = SettingsWatch::new(client);
        let mut frame = settings(&[(0x8, 1)]);
        frame.extend_from_slice(b"after");
        for byte in &frame {
            server.write_all(&[*byte]).await.unwrap();
        }
        drop(server);
        let mut all = Vec::new();
        watched.read_to_end(&mut all).await.unwrap();
        assert_eq!(all, frame, "bytes pass through unchanged");
        assert_eq!(*verdict.borrow_and_update(), Some(true));
    }
}
