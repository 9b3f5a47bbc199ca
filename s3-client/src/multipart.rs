//! Uploading a large body as a multipart upload, as one retryable unit.

use std::sync::Arc;

use bytes::Bytes;
use futures::stream::{self, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, PutMultipartOptions, PutPayload, PutResult};

/// When and how [`S3Client::put`](crate::S3Client::put) switches to a multipart upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MultipartSettings {
    /// Bodies of at least this many bytes go multipart.
    pub(crate) threshold: usize,
    /// Size of every part but the last.
    pub(crate) part_size: usize,
    /// Parts uploaded at once within one upload.
    pub(crate) part_concurrency: usize,
}

impl Default for MultipartSettings {
    fn default() -> Self {
        MultipartSettings {
            threshold: 16 * 1024 * 1024,
            part_size: 8 * 1024 * 1024,
            part_concurrency: 4,
        }
    }
}

/// S3's smallest part (all parts but the last).
pub(crate) const MIN_PART_SIZE: usize = 5 * 1024 * 1024;

/// One attempt of a whole multipart upload: create, upload the parts (at most
/// `part_concurrency` at once), complete. On failure the upload is aborted so no parts are
/// left behind, and the error is returned for the pool to retry the whole upload.
pub(crate) async fn upload(
    store: Arc<dyn ObjectStore>,
    path: Path,
    body: Bytes,
    options: PutMultipartOptions,
    settings: MultipartSettings,
) -> object_store::Result<PutResult> {
    let mut upload = store.put_multipart_opts(&path, options).await?;
    // Parts are numbered in `put_part` call order; their futures do the I/O when polled.
    let parts: Vec<_> = (0..body.len())
        .step_by(settings.part_size)
        .map(|start| {
            let end = (start + settings.part_size).min(body.len());
            upload.put_part(PutPayload::from(body.slice(start..end)))
        })
        .collect();
    let uploaded = stream::iter(parts)
        .buffer_unordered(settings.part_concurrency)
        .try_collect::<Vec<()>>()
        .await;
    let completed = match uploaded {
        Ok(_) => upload.complete().await,
        Err(error) => Err(error),
    };
    if completed.is_err() {
        if let Err(abort_error) = upload.abort().await {
            tracing::debug!(%path, %abort_error, "aborting a failed multipart upload failed");
        }
    }
    completed
}
