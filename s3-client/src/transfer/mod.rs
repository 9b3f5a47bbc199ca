//! Large transfers: downloads split into ranged GETs and uploads split into multipart parts,
//! every range and part its own pool task with its own retries, all under the client's
//! bytes-in-flight budget, with byte-level progress.

mod abort;
mod budget;
mod buffers;
mod download;
mod progress;
mod read_ahead;
mod sink;
mod source;
mod upload;

use std::sync::Arc;

use object_store::multipart::MultipartStore;
use object_store::ObjectStore;
use pool_core::TaskError;

pub(crate) use abort::AbortOnDrop;
pub(crate) use budget::ByteBudget;
pub(crate) use buffers::PieceBuffers;
pub(crate) use download::{download, download_to_file};
pub use progress::{ProgressCallback, TransferProgress, TransferSummary};
pub(crate) use read_ahead::{ReadAhead, Staged};
pub(crate) use sink::WriterSink;
pub(crate) use source::{BytesSource, FileSource, ReaderSource, KEPT_CHUNKS};
pub(crate) use upload::upload;

use crate::dispatch::Dispatcher;
use crate::hedge::Hedger;

/// What a transfer needs from its client.
#[derive(Clone)]
pub(crate) struct TransferContext {
    pub(crate) store: Arc<dyn ObjectStore>,
    /// The store's multipart API, when it has one: then a failed part is sent again alone.
    pub(crate) multipart: Option<Arc<dyn MultipartStore>>,
    pub(crate) dispatcher: Dispatcher,
    /// Hedges a download's ranges, when the client hedges reads.
    pub(crate) hedger: Option<Arc<Hedger>>,
    pub(crate) budget: ByteBudget,
    /// How much uploads may have read ahead of their sends.
    pub(crate) read_ahead: ReadAhead,
    /// The buffers readers' parts are read into, shared by the client's uploads.
    pub(crate) buffers: PieceBuffers,
    /// Size of a range or part (all parts but the last).
    pub(crate) part_size: u64,
    /// Ranges or parts of one transfer in flight at most (`usize::MAX`: no cap of its own).
    pub(crate) part_concurrency: usize,
}

pub(crate) type TaskResult<T> = Result<T, TaskError<object_store::Error>>;

/// A local I/O failure (reading the source, writing the sink) as the error of a call.
pub(crate) fn io_failure(error: std::io::Error) -> TaskError<object_store::Error> {
    TaskError::Failed {
        error: object_store::Error::Generic {
            store: "s3pool",
            source: Box::new(error),
        },
        attempts: 1,
    }
}
