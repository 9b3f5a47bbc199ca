//! Checking the bytes that come back: their count always, and a checksum where the store
//! offers one.
//!
//! A read learns what to expect from its response: the byte range (so the length), and for
//! a read of a whole S3 object, a checksum of it:
//! - the object's stored CRC64NVME, CRC32C or CRC32 (see [`crate::checksum`]) when the
//!   response carries one for the whole object — AWS S3 keeps a full-object CRC64NVME for
//!   every upload, multipart ones included; a composite checksum (a multipart upload's
//!   checksum of its parts' checksums) cannot be checked by reading the object and is not;
//! - otherwise its ETag when it is a single-part S3 ETag, which S3 (and MinIO, moto, s3s)
//!   computes as the MD5 of the body.
//!
//! Multipart objects have ETags of the form `"<md5 of md5s>-<parts>"`, which a read cannot
//! check without knowing the part boundaries: only S3's `partNumber` GET and HEAD tell them,
//! and object_store's requests cannot carry one (nor does a ranged GET carry any checksum).
//! Stores that are not S3 (InMemory, local files) have ETags that are no digest at all.
//! Without a stored full-object CRC, only the length of those is checked; AWS S3 keeps one
//! for every upload since 2025 (CRC64NVME); moto when the upload sent one, s3s-fs when a
//! single-part upload did.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;

use md5::{Digest, Md5};
use object_store::{Extensions, ObjectMeta};

use crate::checksum::{ResponseChecksums, RunningChecksum};

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
        /// `"MD5 (ETag)"`, `"CRC64NVME"`, `"CRC32C"` or `"CRC32"`.
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
    digest: Option<WholeDigest>,
}

/// How the whole object's bytes are checked.
enum WholeDigest {
    /// A stored CRC the response gave.
    Crc(Box<RunningChecksum>),
    /// The MD5 a single-part ETag stands for.
    Md5(Md5, String),
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("path", &self.path)
            .field("expected_len", &self.expected_len)
            .field("received", &self.received)
            .field("digest", &self.algorithm())
            .finish()
    }
}

impl Verifier {
    /// A verifier for the body of a response covering `range` of the object `meta`
    /// describes. When the range is the whole object it checks a stored full-object CRC the
    /// response carried (`extensions`, see [`ResponseChecksums`]), else the ETag as an MD5
    /// when it is a single-part S3 one.
    pub(crate) fn new(meta: &ObjectMeta, range: &Range<u64>, extensions: &Extensions) -> Self {
        let whole = range.start == 0 && range.end == meta.size;
        let digest = whole
            .then(|| whole_digest(meta, extensions.get()))
            .flatten();
        Verifier {
            path: meta.location.to_string(),
            expected_len: range.end - range.start,
            received: 0,
            digest,
        }
    }

    /// A verifier for a whole object read in several responses: `checksums` are what a
    /// response about the whole object (a HEAD) said.
    pub(crate) fn whole(meta: &ObjectMeta, checksums: Option<&ResponseChecksums>) -> Self {
        Verifier {
            path: meta.location.to_string(),
            expected_len: meta.size,
            received: 0,
            digest: whole_digest(meta, checksums),
        }
    }

    /// A verifier of the length of the object `meta` describes, only (its bytes were
    /// checked otherwise).
    pub(crate) fn length(meta: &ObjectMeta) -> Self {
        Verifier {
            path: meta.location.to_string(),
            expected_len: meta.size,
            received: 0,
            digest: None,
        }
    }

    /// The algorithm checked beside the length, if any.
    pub(crate) fn algorithm(&self) -> Option<&'static str> {
        self.digest.as_ref().map(|digest| match digest {
            WholeDigest::Crc(crc) => crc.algorithm().name(),
            WholeDigest::Md5(..) => "MD5 (ETag)",
        })
    }

    pub(crate) fn update(&mut self, chunk: &[u8]) -> Result<(), IntegrityError> {
        self.received += chunk.len() as u64;
        if self.received > self.expected_len {
            return Err(self.length_error());
        }
        match &mut self.digest {
            Some(WholeDigest::Crc(crc)) => crc.update(chunk),
            Some(WholeDigest::Md5(md5, _)) => md5.update(chunk),
            None => {}
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
        let mismatch = match self.digest.take() {
            Some(WholeDigest::Crc(crc)) => crc
                .check()
                .err()
                .map(|(expected, actual)| (crc.algorithm().name(), expected, actual)),
            Some(WholeDigest::Md5(md5, expected)) => {
                let actual = hex(&md5.finalize());
                (actual != expected).then_some(("MD5 (ETag)", expected, actual))
            }
            None => None,
        };
        match mismatch {
            Some((algorithm, expected, actual)) => Err(IntegrityError::Checksum {
                path: self.path.clone(),
                algorithm,
                expected,
                actual,
                delivered,
            }),
            None => Ok(()),
        }
    }

    /// The same check for ranges that arrive in any order ([`RangesVerifier`]), if it needs
    /// no order: a length or a stored CRC, not an ETag's MD5 (`Err(self)` then).
    pub(crate) fn any_order(self) -> Result<RangesVerifier, Box<Verifier>> {
        let whole = match self.digest {
            None => None,
            Some(WholeDigest::Crc(crc)) => Some(crc),
            Some(WholeDigest::Md5(..)) => return Err(Box::new(self)),
        };
        Ok(RangesVerifier {
            path: self.path,
            expected_len: self.expected_len,
            received: self.received,
            crc: whole.map(|whole| (whole, BTreeMap::new())),
        })
    }

    fn length_error(&self) -> IntegrityError {
        IntegrityError::Length {
            path: self.path.clone(),
            expected: self.expected_len,
            received: self.received,
        }
    }
}

/// Checks a whole object whose ranges arrive in any order: the length they add up to, and a
/// stored CRC — each range's CRC is taken on its own as it arrives and the CRCs are combined
/// in the ranges' order at the end, so no range waits for those before it.
pub(crate) struct RangesVerifier {
    path: String,
    expected_len: u64,
    received: u64,
    /// The whole object's checksum (with its expected value), and each range's by offset.
    crc: Option<(Box<RunningChecksum>, BTreeMap<u64, RunningChecksum>)>,
}

impl RangesVerifier {
    /// Counts the range of the object at `offset` and takes its CRC. Ranges are distinct
    /// (the download asks for each once).
    pub(crate) fn update_at(&mut self, offset: u64, range: &[u8]) -> Result<(), IntegrityError> {
        self.received += range.len() as u64;
        if self.received > self.expected_len {
            return Err(self.length_error());
        }
        if let Some((whole, ranges)) = &mut self.crc {
            let mut crc = whole.empty_like();
            crc.update(range);
            ranges.insert(offset, crc);
        }
        Ok(())
    }

    /// Checks the length, then the CRC of the ranges put together in order (`delivered`: as
    /// for [`Verifier::finish`]).
    pub(crate) fn finish(&mut self, delivered: bool) -> Result<(), IntegrityError> {
        if self.received != self.expected_len {
            return Err(self.length_error());
        }
        let Some((mut whole, ranges)) = self.crc.take() else {
            return Ok(());
        };
        for crc in ranges.values() {
            whole.append(crc);
        }
        whole
            .check()
            .map_err(|(expected, actual)| IntegrityError::Checksum {
                path: self.path.clone(),
                algorithm: whole.algorithm().name(),
                expected,
                actual,
                delivered,
            })
    }

    fn length_error(&self) -> IntegrityError {
        IntegrityError::Length {
            path: self.path.clone(),
            expected: self.expected_len,
            received: self.received,
        }
    }
}

/// A stored full-object CRC if `checksums` has one, else the MD5 of a single-part ETag.
fn whole_digest(meta: &ObjectMeta, checksums: Option<&ResponseChecksums>) -> Option<WholeDigest> {
    checksums
        .and_then(ResponseChecksums::full_object)
        .map(|crc| WholeDigest::Crc(Box::new(crc)))
        .or_else(|| {
            let expected = single_part_md5(meta.e_tag.as_deref()?)?;
            Some(WholeDigest::Md5(Md5::new(), expected))
        })
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

    fn none() -> Extensions {
        Extensions::new()
    }

    #[test]
    fn a_single_part_etag_is_checked_as_md5() {
        // MD5("foo")
        let tag = "\"acbd18db4cc2f85cedef654fccc4a4d8\"";
        let mut good = Verifier::new(&meta(3, Some(tag)), &(0..3), &none());
        assert_eq!(good.algorithm(), Some("MD5 (ETag)"));
        good.update(b"foo").unwrap();
        good.finish(false).unwrap();
        let mut bad = Verifier::new(&meta(3, Some(tag)), &(0..3), &none());
        bad.update(b"fox").unwrap();
        let err = bad.finish(false).unwrap_err();
        assert!(matches!(err, IntegrityError::Checksum { .. }), "{err}");
        assert!(err.is_retryable());
    }

    #[test]
    fn multipart_and_foreign_etags_and_ranges_check_the_length_only() {
        for tag in ["\"acbd18db4cc2f85cedef654fccc4a4d8-3\"", "0", "17-abc-3"] {
            let verifier = Verifier::new(&meta(3, Some(tag)), &(0..3), &none());
            assert_eq!(verifier.algorithm(), None);
        }
        let tag = Some("acbd18db4cc2f85cedef654fccc4a4d8");
        let range = Verifier::new(&meta(9, tag), &(0..3), &none());
        assert_eq!(range.algorithm(), None);
    }

    #[test]
    fn short_and_long_bodies_are_length_errors() {
        let mut short = Verifier::new(&meta(4, None), &(0..4), &none());
        short.update(b"abc").unwrap();
        assert!(matches!(
            short.finish(false),
            Err(IntegrityError::Length { received: 3, .. })
        ));
        let mut long = Verifier::new(&meta(2, None), &(0..2), &none());
        assert!(long.update(b"abc").is_err());
    }

    #[test]
    fn a_mismatch_after_delivery_is_not_retryable() {
        let tag = Some("acbd18db4cc2f85cedef654fccc4a4d8");
        let mut verifier = Verifier::new(&meta(3, tag), &(0..3), &none());
        verifier.update(b"bar").unwrap();
        assert!(!verifier.finish(true).unwrap_err().is_retryable());
    }

    #[test]
    fn a_stored_crc_is_checked_before_the_etag_and_only_on_whole_reads() {
        let mut headers = object_store::HeaderMap::new();
        // CRC64NVME("foo"), and a multipart ETag that alone could not be checked.
        let crc = crate::ChecksumAlgorithm::Crc64Nvme.checksum(b"foo");
        headers.insert("x-amz-checksum-crc64nvme", crc.parse().unwrap());
        let mut extensions = Extensions::new();
        extensions.insert(ResponseChecksums::from_headers(&headers));
        let object = meta(3, Some("\"acbd18db4cc2f85cedef654fccc4a4d8-2\""));
        let mut good = Verifier::new(&object, &(0..3), &extensions);
        assert_eq!(good.algorithm(), Some("CRC64NVME"));
        good.update(b"foo").unwrap();
        good.finish(false).unwrap();
        let mut bad = Verifier::new(&object, &(0..3), &extensions);
        bad.update(b"fox").unwrap();
        let err = bad.finish(false).unwrap_err();
        assert!(
            matches!(
                &err,
                IntegrityError::Checksum {
                    algorithm: "CRC64NVME",
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.is_retryable());
        let part = Verifier::new(&object, &(1..3), &extensions);
        assert_eq!(part.algorithm(), None);
    }

    #[test]
    fn ranges_in_any_order_are_checked_against_the_whole_objects_crc() {
        let body: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let ranges = [(4_000, 7_000), (0, 1_500), (7_000, 10_000), (1_500, 4_000)];
        for algorithm in crate::ChecksumAlgorithm::ALL {
            let mut headers = object_store::HeaderMap::new();
            let crc = algorithm.checksum(&body);
            headers.insert(algorithm.header(), crc.parse().unwrap());
            let checksums = ResponseChecksums::from_headers(&headers);
            let object = meta(body.len() as u64, Some("\"0-3\""));
            let verifier = |bytes: &[u8]| {
                let mut verifier = Verifier::whole(&object, Some(&checksums))
                    .any_order()
                    .unwrap();
                for (start, end) in ranges {
                    verifier.update_at(start, &bytes[start as usize..end as usize])?;
                }
                verifier.finish(true)
            };
            verifier(&body).unwrap();
            let mut changed = body.clone();
            changed[5_000] ^= 1;
            let err = verifier(&changed).unwrap_err();
            assert!(
                matches!(&err, IntegrityError::Checksum { algorithm: name, .. }
                    if *name == algorithm.name()),
                "{err}"
            );
        }
    }

    #[test]
    fn ranges_in_any_order_are_checked_for_length_and_an_md5_needs_order() {
        let object = meta(10, Some("\"a-2\""));
        let mut short = Verifier::whole(&object, None).any_order().unwrap();
        short.update_at(5, &[0; 5]).unwrap();
        assert!(matches!(
            short.finish(true),
            Err(IntegrityError::Length { received: 5, .. })
        ));
        let mut long = Verifier::whole(&object, None).any_order().unwrap();
        long.update_at(0, &[0; 6]).unwrap();
        assert!(long.update_at(6, &[0; 6]).is_err());
        let single = meta(3, Some("acbd18db4cc2f85cedef654fccc4a4d8"));
        assert!(Verifier::whole(&single, None).any_order().is_err());
    }
}
