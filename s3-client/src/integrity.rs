//! Checking the bytes that come back: their count always, and a checksum where the store
//! offers one.
//!
//! A read learns what to expect from its response: the byte range (so the length), and for
//! a read of a whole S3 object uploaded in one request its ETag, which S3 (and MinIO, moto,
//! s3s) computes as the MD5 of the body. Multipart objects have ETags of the form
//! `"<md5 of md5s>-<parts>"`, which no single read can check, and stores that are not S3
//! (InMemory, local files) have ETags that are no digest at all: for those only the length
//! is checked.

use std::fmt;
use std::ops::Range;

use md5::{Digest, Md5};
use object_store::ObjectMeta;

/// What was wrong with the bytes of a read. It reaches callers inside
/// `object_store::Error::Generic`; [`classify`](crate::classify) calls it retryable while the
/// bytes have not been handed out yet (the pool then reads them again), and fatal once they
/// have (a stream's consumer already has them: it must start over).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IntegrityError {
    /// The body ended before (or went past) the length its response announced.
    #[error("{path}: expected {expected} bytes, received {received}")]
    Length {
        /// The object.
        path: String,
        /// Bytes announced.
        expected: u64,
        /// Bytes received.
        received: u64,
    },
    /// The body does not match the checksum the store gave for it.
    #[error("{path}: {algorithm} of the body is {actual}, the store says {expected}")]
    Checksum {
        /// The object.
        path: String,
        /// `"MD5 (ETag)"`.
        algorithm: &'static str,
        /// What the store announced.
        expected: String,
        /// What the bytes hash to.
        actual: String,
        /// The bytes were already handed to the caller (a stream): reading again cannot
        /// take them back.
        delivered: bool,
    },
}

impl IntegrityError {
    /// True if reading the bytes again may fix it (nothing was handed out yet).
    pub fn is_retryable(&self) -> bool {
        match self {
            IntegrityError::Length { .. } => true,
            IntegrityError::Checksum { delivered, .. } => !delivered,
        }
    }

    pub(crate) fn into_store_error(self) -> object_store::Error {
        object_store::Error::Generic {
            store: "s3pool",
            source: Box::new(self),
        }
    }
}

/// Hashes a body as it arrives and checks it at the end.
pub(crate) struct Verifier {
    path: String,
    expected_len: u64,
    received: u64,
    md5: Option<(Md5, String)>,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("path", &self.path)
            .field("expected_len", &self.expected_len)
            .field("received", &self.received)
            .field("md5", &self.md5.as_ref().map(|(_, expected)| expected))
            .finish()
    }
}

impl Verifier {
    /// A verifier for the body of a response covering `range` of the object `meta`
    /// describes; it checks the ETag as an MD5 when the range is the whole object and the
    /// ETag is a single-part S3 one.
    pub(crate) fn new(meta: &ObjectMeta, range: &Range<u64>) -> Self {
        let whole = range.start == 0 && range.end == meta.size;
        let md5 = whole
            .then(|| meta.e_tag.as_deref().and_then(single_part_md5))
            .flatten()
            .map(|expected| (Md5::new(), expected));
        Verifier {
            path: meta.location.to_string(),
            expected_len: range.end - range.start,
            received: 0,
            md5,
        }
    }

    /// True if a checksum, not just the length, is checked.
    #[cfg(test)]
    fn checks_digest(&self) -> bool {
        self.md5.is_some()
    }

    pub(crate) fn update(&mut self, chunk: &[u8]) -> Result<(), IntegrityError> {
        self.received += chunk.len() as u64;
        if self.received > self.expected_len {
            return Err(self.length_error());
        }
        if let Some((md5, _)) = &mut self.md5 {
            md5.update(chunk);
        }
        Ok(())
    }

    /// Bytes counted so far.
    pub(crate) fn received(&self) -> u64 {
        self.received
    }

    /// Checks the end of the body: its length, then the digest.
    pub(crate) fn finish(&mut self, delivered: bool) -> Result<(), IntegrityError> {
        if self.received != self.expected_len {
            return Err(self.length_error());
        }
        if let Some((md5, expected)) = self.md5.take() {
            let actual = hex(&md5.finalize());
            if actual != expected {
                return Err(IntegrityError::Checksum {
                    path: self.path.clone(),
                    algorithm: "MD5 (ETag)",
                    expected,
                    actual,
                    delivered,
                });
            }
        }
        Ok(())
    }

    fn length_error(&self) -> IntegrityError {
        IntegrityError::Length {
            path: self.path.clone(),
            expected: self.expected_len,
            received: self.received,
        }
    }
}

/// The MD5 an ETag stands for: 32 hex digits, quoted or not, without a `-<parts>` suffix.
fn single_part_md5(etag: &str) -> Option<String> {
    let etag = etag.trim_matches('"');
    (etag.len() == 32 && etag.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| etag.to_ascii_lowercase())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(size: u64, e_tag: Option<&str>) -> ObjectMeta {
        ObjectMeta {
            location: "k".into(),
            last_modified: Default::default(),
            size,
            e_tag: e_tag.map(str::to_owned),
            version: None,
        }
    }

    #[test]
    fn a_single_part_etag_is_checked_as_md5() {
        // MD5("foo")
        let tag = "\"acbd18db4cc2f85cedef654fccc4a4d8\"";
        let mut good = Verifier::new(&meta(3, Some(tag)), &(0..3));
        assert!(good.checks_digest());
        good.update(b"foo").unwrap();
        good.finish(false).unwrap();
        let mut bad = Verifier::new(&meta(3, Some(tag)), &(0..3));
        bad.update(b"fox").unwrap();
        let err = bad.finish(false).unwrap_err();
        assert!(matches!(err, IntegrityError::Checksum { .. }), "{err}");
        assert!(err.is_retryable());
    }

    #[test]
    fn multipart_and_foreign_etags_and_ranges_check_the_length_only() {
        for tag in ["\"acbd18db4cc2f85cedef654fccc4a4d8-3\"", "0", "17-abc-3"] {
            assert!(!Verifier::new(&meta(3, Some(tag)), &(0..3)).checks_digest());
        }
        let range = Verifier::new(&meta(9, Some("acbd18db4cc2f85cedef654fccc4a4d8")), &(0..3));
        assert!(!range.checks_digest());
    }

    #[test]
    fn short_and_long_bodies_are_length_errors() {
        let mut short = Verifier::new(&meta(4, None), &(0..4));
        short.update(b"abc").unwrap();
        assert!(matches!(
            short.finish(false),
            Err(IntegrityError::Length { received: 3, .. })
        ));
        let mut long = Verifier::new(&meta(2, None), &(0..2));
        assert!(long.update(b"abc").is_err());
    }

    #[test]
    fn a_mismatch_after_delivery_is_not_retryable() {
        let mut verifier =
            Verifier::new(&meta(3, Some("acbd18db4cc2f85cedef654fccc4a4d8")), &(0..3));
        verifier.update(b"bar").unwrap();
        assert!(!verifier.finish(true).unwrap_err().is_retryable());
    }
}
