//! Watches the first HTTP/2 frame a server sends — its SETTINGS, which RFC 9113 §3.4
//! requires to come first — to learn whether it allows extended CONNECT (RFC 8441,
//! WebSocket over HTTP/2) before sluice offers that to the client. hyper does not tell
//! when the server's SETTINGS have arrived, only what they said so far.

use std::sync::Arc;

use tokio::sync::watch;

use crate::http::observe::{IoWatch, Observed};

const FRAME_HEADER: usize = 9;
const SETTINGS: u8 = 0x4;
const SETTINGS_ENABLE_CONNECT_PROTOCOL: u16 = 0x8;
/// The largest frame a server may send before it has read ours: the initial
/// SETTINGS_MAX_FRAME_SIZE (RFC 9113 §4.2). A longer first frame is not held.
const MAX_FIRST_FRAME: usize = FRAME_HEADER + 16_384;

/// What the server's first frame said: `None` until it has been read.
pub type ExtendedConnect = watch::Receiver<Option<bool>>;

/// An upstream stream that reads the server's first frame on its way through.
pub(crate) type SettingsWatch<T> = Observed<T, FirstFrame>;

/// `inner`, watched for the server's first frame.
pub(crate) fn watch_settings<T>(inner: T) -> (SettingsWatch<T>, ExtendedConnect) {
    let (sender, receiver) = watch::channel(None);
    let first_frame = FirstFrame {
        bytes: Vec::new(),
        verdict: Some(Arc::new(sender)),
    };
    (Observed::new(inner, first_frame), receiver)
}

/// The server's first frame, until judged.
pub(crate) struct FirstFrame {
    /// The first frame so far; emptied once it has been judged.
    bytes: Vec<u8>,
    verdict: Option<Arc<watch::Sender<Option<bool>>>>,
}

impl IoWatch for FirstFrame {
    /// Judges the first frame from the bytes just read; nothing once it has been judged.
    fn read(&mut self, bytes: &[u8]) {
        if self.verdict.is_none() {
            return;
        }
        self.bytes.extend_from_slice(bytes);
        if let Some(enabled) = judge(&self.bytes) {
            if let Some(verdict) = self.verdict.take() {
                verdict.send_replace(Some(enabled));
            }
            self.bytes = Vec::new();
        }
    }
}

/// `Some(allowed)` once `bytes` hold the whole first frame; a first frame that is not
/// SETTINGS (a broken server) counts as not allowing it.
fn judge(bytes: &[u8]) -> Option<bool> {
    let header = bytes.get(..FRAME_HEADER)?;
    let length =
        usize::from(header[0]) << 16 | usize::from(header[1]) << 8 | usize::from(header[2]);
    if header[3] != SETTINGS || FRAME_HEADER + length > MAX_FIRST_FRAME {
        return Some(false);
    }
    let payload = bytes.get(FRAME_HEADER..FRAME_HEADER + length)?;
    Some(payload.chunks_exact(6).any(|setting| {
        u16::from_be_bytes([setting[0], setting[1]]) == SETTINGS_ENABLE_CONNECT_PROTOCOL
            && setting[2..] != [0, 0, 0, 0]
    }))
}

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
        let (mut watched, mut verdict) = watch_settings(client);
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
        assert_eq!(
            watched.watch.bytes.capacity(),
            0,
            "nothing held after the verdict"
        );
    }

    /// A server that announces a 16 MiB first frame gets no extended CONNECT and makes
    /// sluice hold nothing: the frame cannot be a legal first SETTINGS.
    #[tokio::test]
    async fn an_oversized_first_frame_is_judged_at_its_header() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut server, client) = tokio::io::duplex(64 * 1024);
        let (mut watched, mut verdict) = watch_settings(client);
        let mut frame = vec![0xff, 0xff, 0xff, SETTINGS, 0, 0, 0, 0, 0];
        frame.extend_from_slice(&[0x8, 0, 0, 0, 0, 1]);
        frame.resize(40_000, 0);
        server.write_all(&frame).await.unwrap();
        drop(server);
        let mut all = Vec::new();
        watched.read_to_end(&mut all).await.unwrap();
        assert_eq!(all.len(), frame.len());
        assert_eq!(*verdict.borrow_and_update(), Some(false));
        assert_eq!(watched.watch.bytes.capacity(), 0);
        assert!(watched.watch.verdict.is_none());
    }
}
