//! S3's stored checksums: asking for them, reading them off responses, and computing them
//! over a body.
//!
//! S3 keeps a CRC32, CRC32C, CRC64NVME (or SHA) checksum with an object when the upload
//! sent one, and AWS S3 computes a full-object CRC64NVME for every upload that did not. A
//! GET or HEAD returns it in `x-amz-checksum-<algorithm>` when the request says
//! `x-amz-checksum-mode: ENABLED` (a signed header, so it is one of the client's default
//! headers: object_store signs those). object_store does not read these response headers;
//! [`ChecksumConnector`] copies them into the response's extensions as
//! [`ResponseChecksums`], where they reach `GetResult::extensions` and s3pool's integrity
//! checks.

use std::fmt;

use async_trait::async_trait;
use base64::Engine as _;
use object_store::client::{
    ClientOptions, HttpClient, HttpConnector, HttpError, HttpRequest, HttpResponse, HttpService,
    ReqwestConnector,
};

/// The request header that asks S3 for an object's checksums.
pub const CHECKSUM_MODE_HEADER: &str = "x-amz-checksum-mode";

/// A checksum algorithm whose stored value s3pool checks a body against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ChecksumAlgorithm {
    /// CRC-32 (ISO-HDLC), `x-amz-checksum-crc32`.
    Crc32,
    /// CRC-32C (Castagnoli), `x-amz-checksum-crc32c`.
    Crc32c,
    /// CRC-64/NVME, `x-amz-checksum-crc64nvme` (AWS S3's default since 2025).
    Crc64Nvme,
}

impl ChecksumAlgorithm {
    /// Every algorithm, the one checked first when a response carries several first.
    pub const ALL: [ChecksumAlgorithm; 3] = [
        ChecksumAlgorithm::Crc64Nvme,
        ChecksumAlgorithm::Crc32c,
        ChecksumAlgorithm::Crc32,
    ];

    /// `"CRC64NVME"`, `"CRC32C"`, `"CRC32"`: S3's names.
    pub fn name(self) -> &'static str {
        match self {
            ChecksumAlgorithm::Crc32 => "CRC32",
            ChecksumAlgorithm::Crc32c => "CRC32C",
            ChecksumAlgorithm::Crc64Nvme => "CRC64NVME",
        }
    }

    /// The response header that carries it.
    pub fn header(self) -> &'static str {
        match self {
            ChecksumAlgorithm::Crc32 => "x-amz-checksum-crc32",
            ChecksumAlgorithm::Crc32c => "x-amz-checksum-crc32c",
            ChecksumAlgorithm::Crc64Nvme => "x-amz-checksum-crc64nvme",
        }
    }

    fn crc(self) -> crc_fast::CrcAlgorithm {
        match self {
            ChecksumAlgorithm::Crc32 => crc_fast::CrcAlgorithm::Crc32IsoHdlc,
            ChecksumAlgorithm::Crc32c => crc_fast::CrcAlgorithm::Crc32Iscsi,
            ChecksumAlgorithm::Crc64Nvme => crc_fast::CrcAlgorithm::Crc64Nvme,
        }
    }

    /// Bytes of the checksum (big-endian in S3's base64).
    fn width(self) -> usize {
        match self {
            ChecksumAlgorithm::Crc32 | ChecksumAlgorithm::Crc32c => 4,
            ChecksumAlgorithm::Crc64Nvme => 8,
        }
    }

    /// The checksum of `bytes`, as S3 writes it (base64 of the big-endian value).
    pub fn checksum(self, bytes: &[u8]) -> String {
        let mut digest = RunningChecksum::new(self);
        digest.update(bytes);
        digest.finish()
    }
}

impl fmt::Display for ChecksumAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The checksums a response carried, put in its extensions by [`ChecksumConnector`]
/// (present, possibly empty, on every response of a store that has the connector).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResponseChecksums {
    values: Vec<(ChecksumAlgorithm, String)>,
    /// `x-amz-checksum-type`: `FULL_OBJECT` or `COMPOSITE` (a checksum of the parts'
    /// checksums, which no read of the whole body reproduces).
    kind: Option<String>,
}

impl ResponseChecksums {
    /// Reads the `x-amz-checksum-*` headers of a response.
    pub fn from_headers(headers: &object_store::HeaderMap) -> Self {
        let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        ResponseChecksums {
            values: ChecksumAlgorithm::ALL
                .into_iter()
                .filter_map(|algorithm| Some((algorithm, text(algorithm.header())?.to_owned())))
                .collect(),
            kind: text("x-amz-checksum-type").map(str::to_owned),
        }
    }

    /// The value (S3's base64) the response gave for `algorithm`.
    pub fn get(&self, algorithm: ChecksumAlgorithm) -> Option<&str> {
        self.values
            .iter()
            .find(|(a, _)| *a == algorithm)
            .map(|(_, value)| value.as_str())
    }

    /// True if the response carried no checksum.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// A checksum of the whole object that a read of all its bytes can be checked against:
    /// the first of [`ChecksumAlgorithm::ALL`] given, unless the checksums are composite
    /// (a multipart upload's checksum of part checksums, `…-<parts>`).
    pub(crate) fn full_object(&self) -> Option<RunningChecksum> {
        if self.kind.as_deref() == Some("COMPOSITE") {
            return None;
        }
        self.values.iter().find_map(|(algorithm, value)| {
            let expected = decode(*algorithm, value)?;
            let mut running = RunningChecksum::new(*algorithm);
            running.expected = Some((value.clone(), expected));
            Some(running)
        })
    }
}

/// A base64 big-endian checksum of `algorithm`'s width; `None` for anything else (a
/// composite `…-3` value among them).
fn decode(algorithm: ChecksumAlgorithm, value: &str) -> Option<u64> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(value)
        .ok()?;
    (bytes.len() == algorithm.width()).then(|| {
        bytes
            .iter()
            .fold(0u64, |acc, byte| (acc << 8) | u64::from(*byte))
    })
}

/// A checksum computed as a body arrives, and the value it should come to.
pub(crate) struct RunningChecksum {
    algorithm: ChecksumAlgorithm,
    digest: crc_fast::Digest,
    /// (as the store wrote it, as a number).
    expected: Option<(String, u64)>,
}

impl RunningChecksum {
    pub(crate) fn new(algorithm: ChecksumAlgorithm) -> Self {
        RunningChecksum {
            algorithm,
            digest: crc_fast::Digest::new(algorithm.crc()),
            expected: None,
        }
    }

    pub(crate) fn algorithm(&self) -> ChecksumAlgorithm {
        self.algorithm
    }

    pub(crate) fn update(&mut self, bytes: &[u8]) {
        self.digest.update(bytes);
    }

    /// An empty checksum of the same algorithm, for other bytes (a range of the object)
    /// to be [`append`](Self::append)ed to this one later.
    pub(crate) fn empty_like(&self) -> RunningChecksum {
        RunningChecksum::new(self.algorithm)
    }

    /// This checksum continued over the bytes `next` covered, as if they had come right
    /// after these (CRCs combine without the bytes).
    pub(crate) fn append(&mut self, next: &RunningChecksum) {
        self.digest.combine(&next.digest);
    }

    /// The checksum of the bytes so far, as S3 writes it.
    pub(crate) fn finish(&self) -> String {
        let value = self.digest.finalize().to_be_bytes();
        base64::engine::general_purpose::STANDARD.encode(&value[8 - self.algorithm.width()..])
    }

    /// `Err((expected, actual))` if the bytes do not come to the expected value.
    pub(crate) fn check(&self) -> Result<(), (String, String)> {
        match &self.expected {
            Some((text, value)) if self.digest.finalize() != *value => {
                Err((text.clone(), self.finish()))
            }
            _ => Ok(()),
        }
    }
}

impl fmt::Debug for RunningChecksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunningChecksum")
            .field("algorithm", &self.algorithm)
            .field("expected", &self.expected.as_ref().map(|(text, _)| text))
            .finish()
    }
}

/// An object_store `HttpConnector` (reqwest underneath, as object_store's default) that
/// puts the `x-amz-checksum-*` headers of every response into its extensions as
/// [`ResponseChecksums`]. s3pool's S3 stores are built with it (and with
/// `x-amz-checksum-mode: ENABLED` among their default headers); install it on an
/// `AmazonS3Builder` of your own with `with_http_connector(ChecksumConnector)` and
/// [`checksum_mode_options`].
#[derive(Debug, Default, Clone, Copy)]
pub struct ChecksumConnector;

impl HttpConnector for ChecksumConnector {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        let inner = ReqwestConnector::default().connect(options)?;
        Ok(HttpClient::new(ChecksumService(inner)))
    }
}

#[derive(Debug)]
struct ChecksumService(HttpClient);

#[async_trait]
impl HttpService for ChecksumService {
    async fn call(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let mut response = self.0.execute(request).await?;
        let checksums = ResponseChecksums::from_headers(response.headers());
        response.extensions_mut().insert(checksums);
        Ok(response)
    }
}

/// `options` with `x-amz-checksum-mode: ENABLED` added to its default headers (which
/// object_store signs), so that S3 returns stored checksums.
pub fn checksum_mode_options(options: ClientOptions) -> ClientOptions {
    let mut headers = object_store::HeaderMap::new();
    headers.insert(
        CHECKSUM_MODE_HEADER,
        object_store::HeaderValue::from_static("ENABLED"),
    );
    options.with_default_headers(headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values_in_s3s_base64() {
        // The check values of the three CRCs over "123456789".
        let check = b"123456789";
        assert_eq!(ChecksumAlgorithm::Crc32.checksum(check), "y/Q5Jg=="); // 0xCBF43926
        assert_eq!(ChecksumAlgorithm::Crc32c.checksum(check), "4waSgw=="); // 0xE3069283
        assert_eq!(
            ChecksumAlgorithm::Crc64Nvme.checksum(check),
            "rosUhgp5mIg=" // 0xAE8B14860A799888
        );
    }

    #[test]
    fn composite_and_malformed_values_are_not_checked() {
        let mut headers = object_store::HeaderMap::new();
        headers.insert("x-amz-checksum-crc32c", "4waSgw==-3".parse().unwrap());
        assert!(ResponseChecksums::from_headers(&headers)
            .full_object()
            .is_none());
        headers.insert("x-amz-checksum-crc32c", "4waSgw==".parse().unwrap());
        headers.insert("x-amz-checksum-type", "COMPOSITE".parse().unwrap());
        assert!(ResponseChecksums::from_headers(&headers)
            .full_object()
            .is_none());
        headers.insert("x-amz-checksum-type", "FULL_OBJECT".parse().unwrap());
        let mut running = ResponseChecksums::from_headers(&headers)
            .full_object()
            .unwrap();
        running.update(b"123456789");
        assert_eq!(running.check(), Ok(()));
        running.update(b"!");
        assert!(running.check().is_err());
    }
}
