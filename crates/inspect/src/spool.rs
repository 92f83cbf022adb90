//! Holding a body while it is scanned (SPEC §3 step 3: "before any byte of them reaches
//! the other side").
//!
//! A [`Spooler`] hands out [`SpoolWriter`]s. A writer keeps the first bytes of a body in
//! memory, up to a per-body threshold and within a memory budget shared by every body
//! of the spooler, and writes the rest to an anonymous temporary file (no name on disk,
//! so it is removed when the last handle closes, even if the process dies). Memory is
//! therefore bounded by the budget however many large bodies are scanned at once.
//! Bodies over `max_size` are refused ([`SpoolError::TooLarge`]) with what was kept so
//! far still readable, so that `on_oversize = "allow"` can forward it unscanned. Every
//! byte held, in memory or on disk, also counts against a total shared by all bodies
//! (`anti_virus.max_spool_total`); a body that does not fit is refused the same way
//! ([`SpoolError::Full`]), so that disk use is bounded however many bodies are scanned.
//!
//! A finished body is a [`SpooledBody`]: cheap to clone, read as many times as needed
//! (once by the engine, once to forward it) through [`SpoolReader`]s, each of which is
//! also an [`http_body::Body`]. File I/O runs on tokio's blocking pool with positional
//! reads and writes, so readers never share a cursor.

use std::fs::File;
use std::future::Future as _;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Frame, SizeHint};
use tokio::task::JoinHandle;

/// Default bytes of one body kept in memory before spilling to disk.
pub const DEFAULT_MEMORY_PER_BODY: usize = 1 << 20;
/// Default bytes kept in memory by all bodies of a spooler together.
pub const DEFAULT_MEMORY_TOTAL: usize = 64 << 20;
/// Default bytes held by all bodies of a spooler together, memory and disk
/// (`anti_virus.max_spool_total`).
pub const DEFAULT_SPOOL_TOTAL: u64 = 1 << 30;
/// Size of the chunks a reader yields, and of the writes to the temporary file.
const BLOCK: usize = 256 << 10;
/// Size of the chunks a reader yields from memory.
const MEMORY_CHUNK: usize = 64 << 10;

/// Why a body could not be spooled.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// The body is over the spooler's `max_size`. `rejected` is the chunk that did not
    /// fit (not stored); everything before it is still in the writer.
    #[error("the body is larger than {max_size} bytes")]
    TooLarge {
        /// The limit.
        max_size: u64,
        /// The chunk that crossed it.
        rejected: Bytes,
    },
    /// The bodies held together would exceed the spooler's total. `rejected` is the
    /// chunk that did not fit (not stored); everything before it is still in the writer.
    #[error("the spool is full: all bodies held together may take at most {total} bytes")]
    Full {
        /// The total (`anti_virus.max_spool_total`).
        total: u64,
        /// The chunk that did not fit.
        rejected: Bytes,
    },
    /// The temporary file could not be created, written or read.
    #[error("spool file: {0}")]
    Io(#[from] io::Error),
}

/// Bytes shared by all bodies of one spooler (memory, or everything held): bytes still
/// available.
#[derive(Debug)]
struct Budget {
    available: AtomicU64,
}

impl Budget {
    fn new(n: u64) -> Arc<Budget> {
        Arc::new(Budget {
            available: AtomicU64::new(n),
        })
    }

    /// Take `n` bytes if that many are available.
    fn take(&self, n: u64) -> bool {
        self.available
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |a| a.checked_sub(n))
            .is_ok()
    }

    fn give(&self, n: u64) {
        self.available.fetch_add(n, Ordering::AcqRel);
    }
}

/// Creates spool writers with common limits. Cheap to clone; clones share the budget.
#[derive(Clone, Debug)]
pub struct Spooler {
    max_size: u64,
    memory_per_body: usize,
    budget: Arc<Budget>,
    /// Every byte held, in memory or on disk, by all bodies: `total` at most.
    held: Arc<Budget>,
    total: u64,
    dir: Option<PathBuf>,
}

impl Spooler {
    /// Bodies up to `max_size` bytes (`anti_virus.max_scan_size`), with the default
    /// memory limits ([`DEFAULT_MEMORY_PER_BODY`], [`DEFAULT_MEMORY_TOTAL`]), the
    /// default total ([`DEFAULT_SPOOL_TOTAL`]) and temporary files in the system's
    /// temporary folder.
    pub fn new(max_size: u64) -> Self {
        Spooler {
            max_size,
            memory_per_body: DEFAULT_MEMORY_PER_BODY,
            budget: Budget::new(DEFAULT_MEMORY_TOTAL as u64),
            held: Budget::new(DEFAULT_SPOOL_TOTAL),
            total: DEFAULT_SPOOL_TOTAL,
            dir: None,
        }
    }

    /// Hold at most `total` bytes of all bodies together, in memory and on disk
    /// (`anti_virus.max_spool_total`).
    pub fn with_total(mut self, total: u64) -> Self {
        self.held = Budget::new(total);
        self.total = total;
        self
    }

    /// The same limits and shared budgets, for bodies of at most `max_size` bytes.
    pub fn with_max_size(&self, max_size: u64) -> Self {
        Spooler {
            max_size,
            ..self.clone()
        }
    }

    /// Keep at most `per_body` bytes of one body, and `total` bytes of all bodies, in
    /// memory.
    pub fn with_memory(mut self, per_body: usize, total: usize) -> Self {
        self.memory_per_body = per_body;
        self.budget = Budget::new(total as u64);
        self
    }

    /// Create temporary files in `dir` instead of the system's temporary folder.
    pub fn with_dir(mut self, dir: PathBuf) -> Self {
        self.dir = Some(dir);
        self
    }

    /// The largest body accepted.
    pub fn max_size(&self) -> u64 {
        self.max_size
    }

    /// Memory still available to bodies (for tests and metrics).
    pub fn memory_available(&self) -> usize {
        usize::try_from(self.budget.available.load(Ordering::Acquire)).unwrap_or(usize::MAX)
    }

    /// Bytes all bodies together may still hold (for tests and metrics).
    pub fn total_available(&self) -> u64 {
        self.held.available.load(Ordering::Acquire)
    }

    /// Start spooling one body.
    pub fn writer(&self) -> SpoolWriter {
        SpoolWriter {
            spooler: self.clone(),
            storage: Storage {
                memory: BytesMut::new(),
                file: None,
                file_len: 0,
                reserved: 0,
                budget: Arc::clone(&self.budget),
                held: 0,
                total: Arc::clone(&self.held),
            },
            pending: BytesMut::new(),
        }
    }
}

/// Where a body's bytes are: a memory prefix, then a file. Returns its memory to the
/// budget when dropped.
#[derive(Debug)]
struct Storage {
    memory: BytesMut,
    file: Option<Arc<File>>,
    /// Bytes written to the file.
    file_len: u64,
    /// Budget bytes this body holds.
    reserved: usize,
    budget: Arc<Budget>,
    /// Bytes of the spooler's total this body holds (all it was given).
    held: u64,
    total: Arc<Budget>,
}

impl Drop for Storage {
    fn drop(&mut self) {
        self.budget.give(self.reserved as u64);
        self.total.give(self.held);
    }
}

/// Collects one body. Push its chunks in order, then [`finish`](SpoolWriter::finish).
#[derive(Debug)]
pub struct SpoolWriter {
    spooler: Spooler,
    storage: Storage,
    /// Bytes for the file not written yet (at most [`BLOCK`] before a write).
    pending: BytesMut,
}

impl SpoolWriter {
    /// Bytes pushed so far.
    pub fn len(&self) -> u64 {
        self.storage.memory.len() as u64 + self.storage.file_len + self.pending.len() as u64
    }

    /// Whether nothing was pushed yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Add the next chunk. Over `max_size`, the chunk is handed back in
    /// [`SpoolError::TooLarge`] and the writer keeps what it had.
    pub async fn push(&mut self, chunk: Bytes) -> Result<(), SpoolError> {
        let max_size = self.spooler.max_size;
        if self.len() + chunk.len() as u64 > max_size {
            return Err(SpoolError::TooLarge {
                max_size,
                rejected: chunk,
            });
        }
        if !self.storage.total.take(chunk.len() as u64) {
            return Err(SpoolError::Full {
                total: self.spooler.total,
                rejected: chunk,
            });
        }
        self.storage.held += chunk.len() as u64;
        if self.storage.file.is_none() && self.fits_in_memory(chunk.len()) {
            self.storage.memory.extend_from_slice(&chunk);
            return Ok(());
        }
        if self.storage.file.is_none() {
            let file = match &self.spooler.dir {
                Some(dir) => tempfile::tempfile_in(dir)?,
                None => tempfile::tempfile()?,
            };
            self.storage.file = Some(Arc::new(file));
        }
        self.pending.extend_from_slice(&chunk);
        if self.pending.len() >= BLOCK {
            self.flush().await?;
        }
        Ok(())
    }

    /// Whether `n` more bytes may stay in memory; reserves them from the budget if so.
    fn fits_in_memory(&mut self, n: usize) -> bool {
        let storage = &mut self.storage;
        if storage.memory.len() + n > self.spooler.memory_per_body || !storage.budget.take(n as u64)
        {
            return false;
        }
        storage.reserved += n;
        true
    }

    /// Write the pending bytes at the end of the file.
    async fn flush(&mut self) -> io::Result<()> {
        let Some(file) = self.storage.file.clone() else {
            return Ok(());
        };
        if self.pending.is_empty() {
            return Ok(());
        }
        let block = self.pending.split().freeze();
        let offset = self.storage.file_len;
        let len = block.len() as u64;
        blocking(move || file.write_all_at(&block, offset)).await?;
        self.storage.file_len += len;
        Ok(())
    }

    /// The complete body (or, after [`SpoolError::TooLarge`], what was kept).
    pub async fn finish(mut self) -> io::Result<SpooledBody> {
        self.flush().await?;
        let mut storage = self.storage;
        Ok(SpooledBody {
            inner: Arc::new(Body {
                memory: std::mem::take(&mut storage.memory).freeze(),
                storage,
            }),
        })
    }
}

/// Run blocking file I/O on tokio's blocking pool.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(io::Error::other)?
}

/// A finished body, readable any number of times. Clones share the storage, which is
/// released (memory returned, file closed) when the last clone and reader are gone.
#[derive(Clone, Debug)]
pub struct SpooledBody {
    inner: Arc<Body>,
}

#[derive(Debug)]
struct Body {
    /// The memory prefix, frozen so readers slice it without copying.
    memory: Bytes,
    storage: Storage,
}

impl SpooledBody {
    /// A body held in memory only, outside any budget (small bodies, tests).
    pub fn from_bytes(bytes: Bytes) -> Self {
        SpooledBody {
            inner: Arc::new(Body {
                memory: bytes,
                storage: Storage {
                    memory: BytesMut::new(),
                    file: None,
                    file_len: 0,
                    reserved: 0,
                    budget: Budget::new(0),
                    held: 0,
                    total: Budget::new(0),
                },
            }),
        }
    }

    /// The body's length in bytes.
    pub fn len(&self) -> u64 {
        self.inner.memory.len() as u64 + self.inner.storage.file_len
    }

    /// Whether the body is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether part of the body is in a temporary file.
    pub fn is_on_disk(&self) -> bool {
        self.inner.storage.file.is_some()
    }

    /// A reader from the first byte.
    pub fn reader(&self) -> SpoolReader {
        SpoolReader {
            body: Arc::clone(&self.inner),
            position: 0,
            reading: None,
        }
    }
}

/// Reads a [`SpooledBody`] as a sequence of chunks. Also an [`http_body::Body`], so
/// that the data path can forward a scanned body as it is.
#[derive(Debug)]
pub struct SpoolReader {
    body: Arc<Body>,
    position: u64,
    /// A file read in progress.
    reading: Option<JoinHandle<io::Result<Bytes>>>,
}

impl SpoolReader {
    /// The next chunk, `None` at the end.
    pub async fn next_chunk(&mut self) -> io::Result<Option<Bytes>> {
        std::future::poll_fn(|cx| self.poll_chunk(cx)).await
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> u64 {
        let total = self.body.memory.len() as u64 + self.body.storage.file_len;
        total - self.position
    }

    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Option<Bytes>>> {
        if let Some(reading) = &mut self.reading {
            let result = ready!(Pin::new(reading).poll(cx)).map_err(io::Error::other);
            self.reading = None;
            let chunk = result??;
            if chunk.is_empty() {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the spool file is shorter than written",
                )));
            }
            self.position += chunk.len() as u64;
            return Poll::Ready(Ok(Some(chunk)));
        }
        let memory = &self.body.memory;
        let in_memory = memory.len() as u64;
        if self.position < in_memory {
            // `position` is below a usize length here.
            let start = usize::try_from(self.position).unwrap_or(memory.len());
            let end = memory.len().min(start + MEMORY_CHUNK);
            self.position = end as u64;
            return Poll::Ready(Ok(Some(memory.slice(start..end))));
        }
        let (Some(file), left @ 1..) = (&self.body.storage.file, self.remaining()) else {
            return Poll::Ready(Ok(None));
        };
        let file = Arc::clone(file);
        let offset = self.position - in_memory;
        let len = usize::try_from(left).map_or(BLOCK, |l| l.min(BLOCK));
        self.reading = Some(tokio::task::spawn_blocking(move || {
            let mut block = vec![0; len];
            let n = file.read_at(&mut block, offset)?;
            block.truncate(n);
            Ok(Bytes::from(block))
        }));
        self.poll_chunk(cx)
    }
}

impl http_body::Body for SpoolReader {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        this.poll_chunk(cx)
            .map(|result| result.transpose().map(|r| r.map(Frame::data)))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining() == 0 && self.reading.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn pattern(len: usize, seed: u8) -> Bytes {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect::<Vec<u8>>()
            .into()
    }

    async fn read_all(body: &SpooledBody) -> Vec<u8> {
        let mut reader = body.reader();
        let mut out = Vec::new();
        while let Some(chunk) = reader.next_chunk().await.unwrap() {
            assert!(!chunk.is_empty());
            out.extend_from_slice(&chunk);
        }
        assert_eq!(reader.remaining(), 0);
        out
    }

    async fn spool(spooler: &Spooler, chunks: &[Bytes]) -> SpooledBody {
        let mut writer = spooler.writer();
        for chunk in chunks {
            writer.push(chunk.clone()).await.unwrap();
        }
        writer.finish().await.unwrap()
    }

    #[tokio::test]
    async fn a_small_body_stays_in_memory() {
        let spooler = Spooler::new(1 << 20).with_memory(1024, 4096);
        let body = spool(&spooler, &[pattern(100, 1), pattern(200, 2)]).await;
        assert!(!body.is_on_disk());
        assert_eq!(body.len(), 300);
        assert_eq!(spooler.memory_available(), 4096 - 300);
        let expected = [pattern(100, 1), pattern(200, 2)].concat();
        assert_eq!(read_all(&body).await, expected);
        // Read twice, and concurrently with a clone.
        let clone = body.clone();
        assert_eq!(read_all(&clone).await, expected);
        drop(body);
        assert_eq!(spooler.memory_available(), 4096 - 300);
        drop(clone);
        assert_eq!(spooler.memory_available(), 4096);
    }

    #[tokio::test]
    async fn a_large_body_spills_to_an_unnamed_file() {
        let spooler = Spooler::new(10 << 20).with_memory(64 << 10, 1 << 20);
        let chunks: Vec<Bytes> = (0..40).map(|i| pattern(50_000 + i, i as u8)).collect();
        let body = spool(&spooler, &chunks).await;
        assert!(body.is_on_disk());
        assert_eq!(
            body.len(),
            chunks.iter().map(|c| c.len() as u64).sum::<u64>()
        );
        assert_eq!(read_all(&body).await, chunks.concat());
        // The memory prefix is kept (one chunk fits in 64 KiB).
        assert_eq!(spooler.memory_available(), (1 << 20) - 50_000);
        drop(body);
        assert_eq!(spooler.memory_available(), 1 << 20);
    }

    #[tokio::test]
    async fn the_shared_budget_sends_bodies_to_disk() {
        let spooler = Spooler::new(1 << 20).with_memory(1000, 1500);
        let first = spool(&spooler, &[pattern(1000, 1)]).await;
        let second = spool(&spooler, &[pattern(1000, 2)]).await;
        assert!(!first.is_on_disk());
        assert!(second.is_on_disk(), "only 500 bytes of budget were left");
        assert_eq!(read_all(&second).await, pattern(1000, 2));
    }

    #[tokio::test]
    async fn bodies_together_stay_within_the_total_memory_and_disk() {
        let spooler = Spooler::new(1 << 20)
            .with_memory(1000, 1000)
            .with_total(300_000);
        let first = spool(&spooler, &[pattern(200_000, 1)]).await;
        assert!(first.is_on_disk());
        assert_eq!(spooler.total_available(), 100_000);
        let mut second = spooler.writer();
        second.push(pattern(60_000, 2)).await.unwrap();
        match second.push(pattern(60_000, 3)).await {
            Err(SpoolError::Full { total, rejected }) => {
                assert_eq!(total, 300_000);
                assert_eq!(rejected, pattern(60_000, 3));
            }
            other => panic!("{other:?}"),
        }
        // What was kept is still readable, and everything is given back when done.
        let kept = second.finish().await.unwrap();
        assert_eq!(read_all(&kept).await, pattern(60_000, 2));
        drop((first, kept));
        assert_eq!(spooler.total_available(), 300_000);
        // A clone for another size shares the total.
        let small = spooler.with_max_size(10);
        let _held = spool(&spooler, &[pattern(299_995, 4)]).await;
        assert!(matches!(
            small.writer().push(pattern(6, 5)).await,
            Err(SpoolError::Full { .. })
        ));
    }

    #[tokio::test]
    async fn a_body_over_max_size_is_refused_and_keeps_what_it_had() {
        let spooler = Spooler::new(250).with_memory(100, 1000);
        let mut writer = spooler.writer();
        writer.push(pattern(100, 1)).await.unwrap();
        writer.push(pattern(100, 2)).await.unwrap();
        match writer.push(pattern(100, 3)).await {
            Err(SpoolError::TooLarge { max_size, rejected }) => {
                assert_eq!(max_size, 250);
                assert_eq!(rejected, pattern(100, 3));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(writer.len(), 200);
        let kept = writer.finish().await.unwrap();
        assert_eq!(
            read_all(&kept).await,
            [pattern(100, 1), pattern(100, 2)].concat()
        );
    }

    #[tokio::test]
    async fn a_reader_is_an_http_body_with_an_exact_size() {
        let spooler = Spooler::new(1 << 20).with_memory(10, 10);
        let body = spool(&spooler, &[pattern(5, 1), pattern(300_000, 2)]).await;
        let reader = body.reader();
        assert_eq!(http_body::Body::size_hint(&reader).exact(), Some(300_005));
        let collected = reader.collect().await.unwrap().to_bytes();
        assert_eq!(collected, [pattern(5, 1), pattern(300_000, 2)].concat());
        let empty = SpooledBody::from_bytes(Bytes::new());
        assert!(empty.is_empty());
        assert!(http_body::Body::is_end_stream(&empty.reader()));
    }
}
