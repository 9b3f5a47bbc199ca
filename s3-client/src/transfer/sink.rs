//! [`RangeSink`]: where a download's ranges go, in order — any `AsyncWrite`, or a file
//! written from the blocking pool a range at a time.

use std::future::Future;
use std::io::{self, Write};

use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::buffers::PieceBuffer;

/// Takes a download's ranges in order.
pub(crate) trait RangeSink: Send {
    /// Writes one range (its buffer goes back for reuse once written).
    fn write_range(&mut self, range: PieceBuffer) -> impl Future<Output = io::Result<()>> + Send;

    /// Flushes what was written.
    fn finish(&mut self) -> impl Future<Output = io::Result<()>> + Send;
}

/// Any `AsyncWrite`.
pub(crate) struct WriterSink<'a, W>(pub(crate) &'a mut W);

impl<W: AsyncWrite + Unpin + Send> RangeSink for WriterSink<'_, W> {
    async fn write_range(&mut self, range: PieceBuffer) -> io::Result<()> {
        self.0.write_all(&range).await
    }

    async fn finish(&mut self) -> io::Result<()> {
        self.0.flush().await
    }
}

/// A file, written from tokio's blocking pool one whole range per blocking task:
/// `tokio::fs::File` would copy every write into a buffer of its own and spend a blocking
/// task per 2 MiB of it.
pub(crate) struct FileSink(Option<std::fs::File>);

impl FileSink {
    pub(crate) fn new(file: std::fs::File) -> Self {
        FileSink(Some(file))
    }
}

impl RangeSink for FileSink {
    async fn write_range(&mut self, range: PieceBuffer) -> io::Result<()> {
        let mut file = self
            .0
            .take()
            .ok_or_else(|| io::Error::other("an earlier write to this file did not finish"))?;
        let (file, written) = tokio::task::spawn_blocking(move || {
            let written = file.write_all(&range);
            (file, written)
        })
        .await
        .map_err(io::Error::other)?;
        self.0 = Some(file);
        written
    }

    async fn finish(&mut self) -> io::Result<()> {
        Ok(())
    }
}
