//! The one read buffer each worker owns and reuses for every connection it makes: the
//! CONNECT reply and the HTTP/1.1 responses are read into it, never into fresh memory.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt};

/// Size of a worker's buffer: one TLS record's plaintext fits four times.
pub const READ_BUFFER_SIZE: usize = 64 * 1024;

/// A fixed buffer holding the bytes read but not yet consumed, `bytes[start..end]`.
pub struct ReadBuffer {
    bytes: Box<[u8]>,
    start: usize,
    end: usize,
}

impl ReadBuffer {
    /// A zeroed buffer of [`READ_BUFFER_SIZE`] bytes.
    pub fn new() -> Self {
        Self {
            bytes: vec![0; READ_BUFFER_SIZE].into_boxed_slice(),
            start: 0,
            end: 0,
        }
    }

    /// Forgets any unread bytes (they belonged to another connection).
    pub fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
    }

    /// The bytes read and not yet consumed.
    pub fn unread(&self) -> &[u8] {
        &self.bytes[self.start..self.end]
    }

    /// Marks the first `n` unread bytes as consumed.
    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
        if self.start == self.end {
            self.clear();
        }
    }

    /// Whether the unread bytes fill the whole buffer (a head too large to parse).
    pub fn is_full(&self) -> bool {
        self.end - self.start == self.bytes.len()
    }

    /// Reads once from `io` after the unread bytes, first moving them to the front when
    /// the tail has no room. Returns the number of bytes read, 0 at end of stream; fails
    /// when the buffer [is full](Self::is_full).
    pub async fn fill_from<R: AsyncRead + Unpin>(&mut self, io: &mut R) -> io::Result<usize> {
        if self.is_full() {
            return Err(io::Error::other("read buffer full"));
        }
        if self.end == self.bytes.len() && self.start > 0 {
            self.bytes.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let n = io.read(&mut self.bytes[self.end..]).await?;
        self.end += n;
        Ok(n)
    }
}

impl Default for ReadBuffer {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unread_bytes_survive_compaction() {
        let mut buf = ReadBuffer::new();
        let mut first: &[u8] = &[7; READ_BUFFER_SIZE];
        assert_eq!(buf.fill_from(&mut first).await.unwrap(), READ_BUFFER_SIZE);
        assert!(buf.is_full());
        buf.consume(READ_BUFFER_SIZE - 2);
        let mut second: &[u8] = &[1, 2, 3];
        assert_eq!(buf.fill_from(&mut second).await.unwrap(), 3);
        assert_eq!(buf.unread(), &[7, 7, 1, 2, 3]);
        buf.consume(5);
        assert!(buf.unread().is_empty());
        let mut eof: &[u8] = &[];
        assert_eq!(buf.fill_from(&mut eof).await.unwrap(), 0);
        let mut more: &[u8] = &[0; READ_BUFFER_SIZE + 1];
        buf.fill_from(&mut more).await.unwrap();
        assert!(buf.fill_from(&mut more).await.is_err());
    }
}
