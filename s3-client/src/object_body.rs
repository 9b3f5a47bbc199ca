//! [`ObjectBody`]: an object's bytes as a stream, from [`S3Client::get_stream`].
//!
//! [`S3Client::get_stream`]: crate::S3Client::get_stream

use std::fmt;
use std::ops::Range;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::stream::{BoxStream, Stream, StreamExt};
use object_store::{Attributes, ObjectMeta};
use pool_core::TaskError;

use crate::body::HeldGet;
use crate::error::{ClientError, Operation};

/// The body of an object being read: a `Stream` of `Bytes` chunks, with the object's
/// metadata and the byte range the stream covers.
///
/// The read's pool slot is held until the stream ends or is dropped; a broken body is
/// resumed from its last byte (a retry of the read), so the chunks are the object's bytes
/// exactly once, in order. An error ends the stream.
pub struct ObjectBody {
    /// The object read.
    pub meta: ObjectMeta,
    /// The bytes of the object the stream yields.
    pub range: Range<u64>,
    /// The object's attributes (content type, user metadata, …).
    pub attributes: Attributes,
    body: BoxStream<'static, Result<Bytes, ClientError>>,
}

impl ObjectBody {
    pub(crate) fn new(read: HeldGet, path: String) -> Self {
        match read {
            HeldGet::Streaming {
                meta,
                range,
                attributes,
                body,
                ..
            } => ObjectBody {
                meta,
                range,
                attributes,
                body: body
                    .map(move |chunk| {
                        chunk.map_err(|error| ClientError::new(Operation::Get, path.clone(), error))
                    })
                    .boxed(),
            },
            HeldGet::Whole(result) => {
                let (meta, range, attributes) = (
                    result.meta.clone(),
                    result.range.clone(),
                    result.attributes.clone(),
                );
                let body = result
                    .into_stream()
                    .map(move |chunk| {
                        chunk.map_err(|error| {
                            let error = TaskError::Failed { error, attempts: 1 };
                            ClientError::new(Operation::Get, path.clone(), error)
                        })
                    })
                    .boxed();
                ObjectBody {
                    meta,
                    range,
                    attributes,
                    body,
                }
            }
        }
    }

    /// Reads the rest of the body into one `Bytes`.
    pub async fn bytes(mut self) -> Result<Bytes, ClientError> {
        let mut buffer = bytes::BytesMut::with_capacity(
            usize::try_from(self.range.end - self.range.start).unwrap_or(0),
        );
        while let Some(chunk) = self.body.next().await {
            buffer.extend_from_slice(&chunk?);
        }
        Ok(buffer.freeze())
    }
}

impl Stream for ObjectBody {
    type Item = Result<Bytes, ClientError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.body.poll_next_unpin(cx)
    }
}

impl fmt::Debug for ObjectBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectBody")
            .field("meta", &self.meta)
            .field("range", &self.range)
            .finish_non_exhaustive()
    }
}
