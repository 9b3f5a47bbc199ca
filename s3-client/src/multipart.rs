//! When [`S3Client::put`](crate::S3Client::put) goes multipart, and the one case where a
//! multipart upload is a single retryable unit: a store whose multipart API the client does
//! not know (and `put_batch`, whose items are pool tasks already).

use std::sync::Arc;

use bytes::Bytes;
use futures::stream::{self, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, PutMultipartOptions, PutPayload, PutResult};

use crate::transfer::AbortOnDrop;

/// When and how [`S3Client::put`](crate::S3Client::put) switches to a multipart upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MultipartSettings {
    /// Bodies of at least this many bytes go multipart.
    pub(crate) threshold: usize,
    /// Size of every part but the last.
    pub(crate) part_size: usize,
    /// Parts or ranges of one transfer in flight at once; `None`: bounded by the pool's
    /// limit and the bytes budget only.
    pub(crate) part_concurrency: Option<usize>,
}

impl Default for MultipartSettings {
    fn default() -> Self {
        MultipartSettings {
            threshold: 16 * 1024 * 1024,
            part_size: 8 * 1024 * 1024,
            part_concurrency: None,
        }
    }
}

/// S3's smallest part (all parts but the last).
pub(crate) const MIN_PART_SIZE: usize = 5 * 1024 * 1024;

/// S3's largest part: 5 GiB. (A part read from a reader is buffered whole, so a larger size
/// would also be an allocation no machine makes.)
pub(crate) const MAX_PART_SIZE: u64 = 5 * 1024 * 1024 * 1024;

/// Parts of a [`upload`] in flight at once when `part_concurrency` is not set: its parts
/// run outside the pool, so something else must bound them.
const UNPOOLED_PART_CONCURRENCY: usize = 4;

/// One attempt of a whole multipart upload: create, upload the parts (at most
/// `part_concurrency`, by default 4, at once), complete. On failure the upload is aborted
/// so no parts are left behind, and the error is returned for the pool to retry the whole
/// upload; an attempt dropped half-way (a timeout) aborts it in the background.
pub(crate) async fn upload(
    store: Arc<dyn ObjectStore>,
    path: Path,
    body: Bytes,
    options: PutMultipartOptions,
    settings: MultipartSettings,
) -> object_store::Result<PutResult> {
    let upload = store.put_multipart_opts(&path, options).await?;
    let mut upload = AbortOnDrop::new(upload, path.clone());
    // Parts are numbered in `put_part` call order; their futures do the I/O when polled.
    let parts: Vec<_> = (0..body.len())
        .step_by(settings.part_size)
        .map(|start| {
            let end = (start + settings.part_size).min(body.len());
            upload
                .upload()
                .put_part(PutPayload::from(body.slice(start..end)))
        })
        .collect();
    let concurrency = settings
        .part_concurrency
        .unwrap_or(UNPOOLED_PART_CONCURRENCY);
    let uploaded = stream::iter(parts)
        .buffer_unordered(concurrency)
        .try_collect::<Vec<()>>()
        .await;
    let completed = match uploaded {
        Ok(_) => upload.upload().complete().await,
        Err(error) => Err(error),
    };
    if completed.is_err() {
        if let Err(abort_error) = upload.upload().abort().await {
            tracing::debug!(%path, %abort_error, "aborting a failed multipart upload failed");
        }
    }
    upload.ended();
    completed
}
