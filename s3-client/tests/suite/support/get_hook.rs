//! An in-memory store whose GETs a test intercepts ([`GetHook`]); every other call goes
//! straight to the store. The tests' stores that hold back, count or corrupt responses are
//! hooks, not three copies of the same forwarding `ObjectStore`.

use std::fmt;

use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{GetOptions, GetResult, ObjectStore};

/// What a test store does with a GET: ask `store` (or not) and answer.
#[async_trait::async_trait]
pub trait GetHook: fmt::Debug + Send + Sync + 'static {
    async fn get(
        &self,
        store: &InMemory,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult>;
}

/// [`InMemory`] with its GETs passed through `hook`.
#[derive(Debug, Default)]
pub struct Hooked<H> {
    pub store: InMemory,
    pub hook: H,
}

impl<H> Hooked<H> {
    pub fn new(hook: H) -> Self {
        Self {
            store: InMemory::new(),
            hook,
        }
    }
}

impl<H: fmt::Debug> fmt::Display for Hooked<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hooked({:?})", self.hook)
    }
}

#[async_trait::async_trait]
impl<H: GetHook> ObjectStore for Hooked<H> {
    async fn put_opts(
        &self,
        location: &Path,
        payload: object_store::PutPayload,
        opts: object_store::PutOptions,
    ) -> object_store::Result<object_store::PutResult> {
        self.store.put_opts(location, payload, opts).await
    }
    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: object_store::PutMultipartOptions,
    ) -> object_store::Result<Box<dyn object_store::MultipartUpload>> {
        self.store.put_multipart_opts(location, opts).await
    }
    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.hook.get(&self.store, location, options).await
    }
    fn delete_stream(
        &self,
        locations: futures::stream::BoxStream<'static, object_store::Result<Path>>,
    ) -> futures::stream::BoxStream<'static, object_store::Result<Path>> {
        self.store.delete_stream(locations)
    }
    fn list(
        &self,
        prefix: Option<&Path>,
    ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::ObjectMeta>> {
        self.store.list(prefix)
    }
    async fn list_with_delimiter(
        &self,
        prefix: Option<&Path>,
    ) -> object_store::Result<object_store::ListResult> {
        self.store.list_with_delimiter(prefix).await
    }
    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: object_store::CopyOptions,
    ) -> object_store::Result<()> {
        self.store.copy_opts(from, to, options).await
    }
}
