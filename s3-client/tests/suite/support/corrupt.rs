//! Bodies changed on the way, on the client's side: an object_store `HttpConnector` that
//! flips the first byte of the next successful GET responses, for servers without a
//! corrupting switch of their own (moto). Underneath it is s3pool's [`ChecksumConnector`],
//! so responses still carry their [`ResponseChecksums`](s3_client::ResponseChecksums).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use object_store::client::{
    ClientOptions, HttpClient, HttpConnector, HttpError, HttpRequest, HttpResponse,
    HttpResponseBody, HttpService,
};
use s3_client::ChecksumConnector;

/// Install with `AmazonS3Builder::with_http_connector`; arm with [`Self::corrupt_next`].
#[derive(Debug, Clone, Default)]
pub struct CorruptingConnector {
    remaining: Arc<AtomicUsize>,
}

impl CorruptingConnector {
    /// The next `bodies` successful GETs come back with their first byte changed.
    pub fn corrupt_next(&self, bodies: usize) {
        self.remaining.store(bodies, Ordering::SeqCst);
    }

    /// Bodies still to be changed.
    pub fn pending(&self) -> usize {
        self.remaining.load(Ordering::SeqCst)
    }
}

impl HttpConnector for CorruptingConnector {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        Ok(HttpClient::new(CorruptingService {
            inner: ChecksumConnector.connect(options)?,
            remaining: Arc::clone(&self.remaining),
        }))
    }
}

#[derive(Debug)]
struct CorruptingService {
    inner: HttpClient,
    remaining: Arc<AtomicUsize>,
}

#[async_trait]
impl HttpService for CorruptingService {
    async fn call(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let get = request.method().as_str() == "GET";
        let response = self.inner.execute(request).await?;
        let armed = get
            && response.status().is_success()
            && self
                .remaining
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
        if !armed {
            return Ok(response);
        }
        let (parts, body) = response.into_parts();
        let mut bytes = body.bytes().await?.to_vec();
        if let Some(first) = bytes.first_mut() {
            *first ^= 0xff;
        }
        Ok(HttpResponse::from_parts(
            parts,
            HttpResponseBody::from(bytes),
        ))
    }
}
