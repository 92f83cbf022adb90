//! Wrappers that pass bytes on unchanged while something watches them: a body's data
//! frames and how it ended ([`Watched`], for the access log, the parking of an
//! HTTP/1.1 upstream link, an HTTP/2 stream's count), and a stream's reads and writes
//! ([`Observed`], for byte counts and the server's first HTTP/2 frame).

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::body::BoxError;

/// How a watched body ended.
pub(crate) enum BodyEnd<'a> {
    /// Read to its end.
    Finished,
    /// Ended with this error.
    Failed(&'a BoxError),
    /// Dropped before it was read to its end; `at_end` when it said it had ended
    /// anyway (hyper never polls an empty body: HEAD, 204, 304).
    Dropped { at_end: bool },
}

/// What watches a body: told of each data frame, and once of its end.
pub(crate) trait BodyWatch {
    /// A data frame of `len` bytes passed.
    fn data(&mut self, _len: usize) {}
    /// The body ended; called exactly once.
    fn ended(self, end: BodyEnd<'_>);
}

/// `inner`, watched by `W`.
pub(crate) struct Watched<B: Body, W: BodyWatch> {
    inner: B,
    /// `None` once told of the end.
    watch: Option<W>,
}

impl<B: Body, W: BodyWatch> Watched<B, W> {
    pub fn new(inner: B, watch: W) -> Self {
        Watched {
            inner,
            watch: Some(watch),
        }
    }

    fn end(&mut self, end: BodyEnd<'_>) {
        if let Some(watch) = self.watch.take() {
            watch.ended(end);
        }
    }
}

impl<B, W> Body for Watched<B, W>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
    W: BodyWatch + Unpin,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let frame = match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
            Some(Ok(frame)) => {
                if let (Some(data), Some(watch)) = (frame.data_ref(), this.watch.as_mut()) {
                    watch.data(data.len());
                }
                Some(Ok(frame))
            }
            Some(Err(error)) => {
                let error = error.into();
                this.end(BodyEnd::Failed(&error));
                Some(Err(error))
            }
            None => {
                this.end(BodyEnd::Finished);
                None
            }
        };
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B: Body, W: BodyWatch> Drop for Watched<B, W> {
    fn drop(&mut self) {
        let at_end = self.inner.is_end_stream();
        self.end(BodyEnd::Dropped { at_end });
    }
}

/// What watches a stream's bytes.
pub(crate) trait IoWatch {
    /// `bytes` were just read from the stream.
    fn read(&mut self, bytes: &[u8]);
    /// `len` bytes were written to it.
    fn written(&mut self, _len: usize) {}
}

/// A stream whose reads and writes `W` sees.
pub(crate) struct Observed<T, W> {
    inner: T,
    pub(crate) watch: W,
}

impl<T, W: IoWatch> Observed<T, W> {
    pub fn new(inner: T, watch: W) -> Self {
        Observed { inner, watch }
    }
}

impl<T: AsyncRead + Unpin, W: IoWatch + Unpin> AsyncRead for Observed<T, W> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        let read = &buf.filled()[before..];
        if !read.is_empty() {
            this.watch.read(read);
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin, W: IoWatch + Unpin> AsyncWrite for Observed<T, W> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = polled {
            self.watch.written(n);
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = polled {
            self.watch.written(n);
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use http_body_util::{BodyExt, Empty, Full};

    use super::*;

    /// Records what a watched body reported.
    #[derive(Clone, Default)]
    struct Log(Arc<Mutex<Vec<String>>>);

    impl BodyWatch for Log {
        fn data(&mut self, len: usize) {
            self.0.lock().unwrap().push(format!("data {len}"));
        }

        fn ended(self, end: BodyEnd<'_>) {
            let end = match end {
                BodyEnd::Finished => "finished".to_owned(),
                BodyEnd::Failed(e) => format!("failed: {e}"),
                BodyEnd::Dropped { at_end } => format!("dropped, at end {at_end}"),
            };
            self.0.lock().unwrap().push(end);
        }
    }

    impl Log {
        fn take(&self) -> Vec<String> {
            std::mem::take(&mut self.0.lock().unwrap())
        }
    }

    #[tokio::test]
    async fn a_watched_body_reports_its_frames_and_its_end_once() {
        let log = Log::default();
        let body = Watched::new(Full::new(Bytes::from_static(b"abc")), log.clone());
        assert_eq!(body.collect().await.unwrap().to_bytes(), "abc");
        assert_eq!(log.take(), ["data 3", "finished"], "and not again on drop");

        drop(Watched::new(
            Full::new(Bytes::from_static(b"unread")),
            log.clone(),
        ));
        assert_eq!(log.take(), ["dropped, at end false"]);
        drop(Watched::new(Empty::<Bytes>::new(), log.clone()));
        assert_eq!(log.take(), ["dropped, at end true"]);

        let body = Watched::new(Failing(Some(Bytes::from_static(b"ab"))), log.clone());
        assert!(body.collect().await.is_err());
        assert_eq!(log.take(), ["data 2", "failed: the server reset"]);
    }

    /// A body that sends its data, then fails.
    struct Failing(Option<Bytes>);

    impl Body for Failing {
        type Data = Bytes;
        type Error = BoxError;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            Poll::Ready(Some(match self.0.take() {
                Some(data) => Ok(Frame::data(data)),
                None => Err("the server reset".into()),
            }))
        }
    }

    #[derive(Default)]
    struct Seen {
        read: Vec<u8>,
        written: usize,
    }

    impl IoWatch for Seen {
        fn read(&mut self, bytes: &[u8]) {
            self.read.extend_from_slice(bytes);
        }

        fn written(&mut self, len: usize) {
            self.written += len;
        }
    }

    #[tokio::test]
    async fn an_observed_stream_sees_what_passes_both_ways() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut far, near) = tokio::io::duplex(64);
        let mut observed = Observed::new(near, Seen::default());
        far.write_all(b"hello").await.unwrap();
        let mut read = [0; 5];
        observed.read_exact(&mut read).await.unwrap();
        observed.write_all(b"world!").await.unwrap();
        assert_eq!(observed.watch.read, b"hello");
        assert_eq!(observed.watch.written, 6);
        let mut echoed = [0; 6];
        far.read_exact(&mut echoed).await.unwrap();
        assert_eq!(&echoed, b"world!");
    }
}
