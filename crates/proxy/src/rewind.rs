//! An I/O object that first yields bytes already read from the socket (the peeked
//! request head or ClientHello), then reads from the socket itself.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

pub struct Rewind<T> {
    prefix: Vec<u8>,
    position: usize,
    inner: T,
}

impl<T> Rewind<T> {
    pub fn new(prefix: Vec<u8>, inner: T) -> Self {
        Rewind {
            prefix,
            position: 0,
            inner,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Rewind<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.position < this.prefix.len() {
            let rest = &this.prefix[this.position..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.position += n;
            if this.position == this.prefix.len() {
                this.prefix = Vec::new();
                this.position = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

delegate_async_write!(Rewind);

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn yields_the_prefix_then_the_inner_stream() {
        let inner: &[u8] = b" world";
        let mut io = Rewind::new(b"hello".to_vec(), inner);
        let mut out = String::new();
        io.read_to_string(&mut out).await.unwrap();
        assert_eq!(out, "hello world");
    }

    #[tokio::test]
    async fn a_small_read_buffer_gets_the_prefix_in_pieces() {
        let inner: &[u8] = b"";
        let mut io = Rewind::new(b"abcdef".to_vec(), inner);
        let mut two = [0u8; 2];
        io.read_exact(&mut two).await.unwrap();
        assert_eq!(&two, b"ab");
        let mut rest = Vec::new();
        io.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, b"cdef");
    }
}
