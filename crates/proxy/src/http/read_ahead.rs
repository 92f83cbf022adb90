//! An I/O object for sockets whose reader asks for little at a time: it first yields
//! bytes already read from the socket (the peeked request head or ClientHello), then
//! reads from the socket in large reads, keeping what the caller did not take for its
//! next read.
//!
//! rustls reads TLS records at most 4 KiB at a time, so a bumped download would cost a
//! `read` per 4 KiB; through this wrapper it costs one per 64 KiB, for one copy of the
//! bytes. The buffer exists only while bytes flow: it starts small, doubles while reads
//! fill it, and is freed when the socket has nothing more to read, so an idle
//! connection holds no read buffer at all.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, ReadBuf};

/// The buffer a connection gets when bytes start to flow.
const FIRST_READ: usize = 8 * 1024;

/// The most asked of the socket in one read.
const MAX_READ: usize = 64 * 1024;

pub struct ReadAhead<T> {
    /// Read from the socket, not yet taken by the caller.
    buffer: BytesMut,
    /// How much the next read from the socket asks for.
    read_size: usize,
    inner: T,
}

impl<T> ReadAhead<T> {
    pub fn new(inner: T) -> Self {
        Self::with_prefix(Vec::new(), inner)
    }

    /// `prefix`: bytes already read from `inner`, yielded first.
    pub fn with_prefix(prefix: Vec<u8>, inner: T) -> Self {
        ReadAhead {
            buffer: BytesMut::from(&prefix[..]),
            read_size: FIRST_READ,
            inner,
        }
    }

    fn take_buffered(&mut self, buf: &mut ReadBuf<'_>) {
        let n = self.buffer.len().min(buf.remaining());
        buf.put_slice(&self.buffer[..n]);
        self.buffer.advance(n);
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for ReadAhead<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if !this.buffer.is_empty() {
            this.take_buffered(buf);
            return Poll::Ready(Ok(()));
        }
        if buf.remaining() >= this.read_size {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        // Not zeroed: the read fills what the caller will see.
        this.buffer.reserve(this.read_size);
        let asked = this.buffer.capacity();
        match tokio_util::io::poll_read_buf(Pin::new(&mut this.inner), cx, &mut this.buffer) {
            Poll::Ready(Ok(read)) => {
                // A read that filled the buffer asks for twice as much next time.
                if read == asked {
                    this.read_size = (this.read_size * 2).min(MAX_READ);
                }
                this.take_buffered(buf);
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                // Nothing to read now: the connection waits without a buffer.
                this.buffer = BytesMut::new();
                this.read_size = FIRST_READ;
                Poll::Pending
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
        }
    }
}

delegate_async_write!(ReadAhead);

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn yields_the_prefix_then_the_inner_stream() {
        let inner: &[u8] = b" world";
        let mut io = ReadAhead::with_prefix(b"hello".to_vec(), inner);
        let mut out = String::new();
        io.read_to_string(&mut out).await.unwrap();
        assert_eq!(out, "hello world");
    }

    #[tokio::test]
    async fn a_small_read_buffer_gets_the_prefix_in_pieces() {
        let inner: &[u8] = b"";
        let mut io = ReadAhead::with_prefix(b"abcdef".to_vec(), inner);
        let mut two = [0u8; 2];
        io.read_exact(&mut two).await.unwrap();
        assert_eq!(&two, b"ab");
        let mut rest = Vec::new();
        io.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, b"cdef");
    }

    /// Counts the reads that reach the wrapped stream.
    struct CountingReader<'a> {
        data: &'a [u8],
        reads: usize,
    }

    impl AsyncRead for CountingReader<'_> {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            self.reads += 1;
            let n = self.data.len().min(buf.remaining());
            buf.put_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn small_reads_are_served_from_one_large_read_in_order() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let mut io = ReadAhead::new(CountingReader {
            data: &data,
            reads: 0,
        });
        let mut out = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = io.read(&mut chunk).await.unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&chunk[..n]);
        }
        assert_eq!(out, data);
        // Reads of 8, 16, 32 and then 64 KiB, not 49 of 4 KiB.
        assert!(io.inner.reads <= 7, "{} reads", io.inner.reads);
        assert!(io.buffer.is_empty());
    }

    #[tokio::test]
    async fn a_connection_with_nothing_to_read_holds_no_buffer() {
        let (near, mut far) = tokio::io::duplex(1024);
        let mut io = ReadAhead::new(near);
        far.write_all(b"0123456789").await.unwrap();
        let mut four = [0u8; 4];
        io.read_exact(&mut four).await.unwrap();
        assert_eq!(io.buffer.len(), 6, "the rest waits in the buffer");
        let mut six = [0u8; 6];
        io.read_exact(&mut six).await.unwrap();
        assert_eq!(&six, b"456789");
        let idle = tokio::time::timeout(Duration::from_millis(50), io.read(&mut four)).await;
        assert!(idle.is_err(), "nothing was sent");
        assert_eq!(io.buffer.capacity(), 0);
    }

    #[tokio::test]
    async fn writes_go_straight_through() {
        let (near, mut far) = tokio::io::duplex(64);
        let mut io = ReadAhead::new(near);
        io.write_all(b"ping").await.unwrap();
        let mut got = [0u8; 4];
        far.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"ping");
    }
}
