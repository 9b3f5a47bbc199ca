//! Stored checksums: S3 returns them (`x-amz-checksum-mode: ENABLED`), s3pool checks whole
//! reads against them, and a body whose bytes were changed on the way (the test server's
//! corrupting switch; for moto, a connector on the client's side) is a retryable
//! `IntegrityError` that a retry recovers from. On s3s-fs and on moto.

use object_store::aws::Checksum;
use object_store::path::Path;
use object_store::ClientOptions;
use object_store::{ObjectStore, ObjectStoreExt};
use s3_client::checksum::checksum_mode_options;
use s3_client::testing::S3TestServer;
use s3_client::{
    ChecksumAlgorithm, IntegrityError, ResponseChecksums, S3Client, S3ClientBuilder, StoreConfig,
};

use crate::support::corrupt::CorruptingConnector;
use crate::support::moto::MotoServer;
use crate::support::{random_bytes, Sink};

const PART: usize = 5 * 1024 * 1024;

/// The `IntegrityError` inside a failed call.
fn integrity_error(error: &s3_client::ClientError) -> IntegrityError {
    error
        .integrity()
        .cloned()
        .unwrap_or_else(|| panic!("no IntegrityError in {error}"))
}

fn client(server: &S3TestServer) -> S3Client {
    S3ClientBuilder::from_url(&server.connection_string())
        .unwrap()
        .part_size(PART)
        .multipart_threshold(2 * PART)
        .retry_delay(std::time::Duration::from_millis(5))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_body_fails_its_crc64nvme_and_a_retry_reads_it_right() {
    let server = S3TestServer::start().await.unwrap();
    // Uploaded with a CRC64NVME, which the server checks and keeps.
    let uploader = StoreConfig::s3(
        server
            .s3_config()
            .with_upload_checksum(Some(Checksum::CRC64NVME)),
    )
    .build()
    .unwrap();
    let path = Path::from("crc/object.bin");
    let body = random_bytes(31, 100_000);
    uploader.put(&path, body.clone().into()).await.unwrap();

    let client = client(&server);
    let read = client.store().get(&path).await.unwrap();
    let checksums = read.extensions.get::<ResponseChecksums>().unwrap();
    assert_eq!(
        checksums.get(ChecksumAlgorithm::Crc64Nvme),
        Some(ChecksumAlgorithm::Crc64Nvme.checksum(&body).as_str())
    );

    server.faults().corrupt_bodies(1);
    let err = client.get(&path).retries(0).await.unwrap_err();
    let integrity = integrity_error(&err);
    assert!(
        matches!(
            &integrity,
            IntegrityError::Checksum {
                algorithm: "CRC64NVME",
                ..
            }
        ),
        "{integrity}"
    );
    assert!(integrity.is_retryable());

    server.faults().corrupt_bodies(1);
    let retries = client.stats().unwrap().retries;
    assert!(client.get(&path).await.unwrap() == body);
    assert_eq!(client.stats().unwrap().retries, retries + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crc32c_sent_with_the_upload_is_checked_on_streams_too() {
    let server = S3TestServer::start().await.unwrap();
    let path = Path::from("crc/c.bin");
    let body = random_bytes(32, 70_000);
    // object_store sends no CRC32C itself: send it as a (signed) default header.
    let mut headers = object_store::HeaderMap::new();
    let crc32c = ChecksumAlgorithm::Crc32c.checksum(&body);
    headers.insert("x-amz-checksum-crc32c", crc32c.parse().unwrap());
    let uploader = server
        .builder()
        .with_client_options(
            object_store::ClientOptions::new()
                .with_allow_http(true)
                .with_default_headers(headers),
        )
        .build()
        .unwrap();
    uploader.put(&path, body.clone().into()).await.unwrap();

    let client = client(&server);
    server.faults().corrupt_bodies(1);
    let err = client.get(&path).retries(0).await.unwrap_err();
    assert!(matches!(
        integrity_error(&err),
        IntegrityError::Checksum {
            algorithm: "CRC32C",
            ..
        }
    ));
    // A stream hands its bytes out as they come: the mismatch ends it, not retryable.
    server.faults().corrupt_bodies(1);
    let stream = client.get_stream(&path).await.unwrap();
    let err = stream.bytes().await.unwrap_err();
    let integrity = integrity_error(&err);
    assert!(
        matches!(
            &integrity,
            IntegrityError::Checksum {
                algorithm: "CRC32C",
                delivered: true,
                ..
            }
        ),
        "{integrity}"
    );
    assert!(!integrity.is_retryable());
    assert!(
        client
            .get_stream(&path)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            == body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_in_ranges_is_checked_whole_against_the_stored_crc() {
    let server = S3TestServer::start().await.unwrap();
    let uploader = StoreConfig::s3(
        server
            .s3_config()
            .with_upload_checksum(Some(Checksum::CRC64NVME)),
    )
    .build()
    .unwrap();
    let path = Path::from("crc/ranged.bin");
    // One PUT (so the server keeps its CRC), downloaded as three ranges.
    let body = random_bytes(33, 2 * PART + 1_000);
    uploader.put(&path, body.clone().into()).await.unwrap();
    let client = client(&server);
    let sink = Sink::default();
    client.download_to(&path, sink.clone()).await.unwrap();
    assert!(sink.bytes() == body);
    assert!(server
        .faults()
        .recent_requests()
        .iter()
        .any(|request| request.starts_with("HEAD")));

    // The second range is changed on the way; only the whole-object CRC can tell.
    server.faults().corrupt_bodies(2);
    let err = client
        .download_to(&path, Sink::default())
        .await
        .unwrap_err();
    assert!(
        matches!(
            integrity_error(&err),
            IntegrityError::Checksum {
                algorithm: "CRC64NVME",
                delivered: true,
                ..
            }
        ),
        "{err}"
    );

    // To a file the ranges are written as they arrive, each range's CRC taken alone and
    // the CRCs combined in order: the same object passes, the same change is found.
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("ranged.out");
    client.download_to_file(&path, &target).await.unwrap();
    assert!(std::fs::read(&target).unwrap() == body);
    server.faults().corrupt_bodies(2);
    let err = client.download_to_file(&path, &target).await.unwrap_err();
    assert!(
        matches!(
            integrity_error(&err),
            IntegrityError::Checksum {
                algorithm: "CRC64NVME",
                delivered: true,
                ..
            }
        ),
        "{err}"
    );
}

/// A client for moto whose responses pass through `connector`, asking for stored checksums
/// as s3pool's own S3 stores do; `upload` is the checksum object_store sends with uploads.
fn moto_client(
    moto: &MotoServer,
    connector: &CorruptingConnector,
    upload: Option<Checksum>,
) -> S3Client {
    let mut builder = moto
        .builder()
        .with_client_options(checksum_mode_options(
            ClientOptions::new().with_allow_http(true),
        ))
        .with_http_connector(connector.clone());
    if let Some(checksum) = upload {
        builder = builder.with_checksum_algorithm(checksum);
    }
    S3Client::builder_multipart(builder.build().unwrap())
        .part_size(PART)
        .multipart_threshold(PART)
        .retry_delay(std::time::Duration::from_millis(5))
        .build()
        .unwrap()
}

/// moto keeps the CRC32, CRC32C or CRC64NVME an upload sends and returns it with the object;
/// a whole read is checked against it: a body changed on the way is a retryable
/// `IntegrityError` naming the algorithm, and a retry reads it right.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moto_returns_the_crc_sent_with_an_upload_and_reads_are_checked_against_it() {
    let moto = MotoServer::start();
    let connector = CorruptingConnector::default();
    let client = moto_client(&moto, &connector, None);
    for (seed, algorithm) in (40..).zip(ChecksumAlgorithm::ALL) {
        let path = Path::from(format!("crc/{}.bin", algorithm.name()));
        let body = random_bytes(seed, 70_000);
        // object_store sends no CRC32 or CRC32C itself: send it as a (signed) default header,
        // named again in the header AWS's SDKs send beside it (moto keeps a checksum only
        // when that one names it).
        let mut headers = object_store::HeaderMap::new();
        headers.insert(
            algorithm.header(),
            algorithm.checksum(&body).parse().unwrap(),
        );
        headers.insert(
            "x-amz-sdk-checksum-algorithm",
            algorithm.name().parse().unwrap(),
        );
        let uploader = moto
            .builder()
            .with_client_options(
                ClientOptions::new()
                    .with_allow_http(true)
                    .with_default_headers(headers),
            )
            .build()
            .unwrap();
        uploader.put(&path, body.clone().into()).await.unwrap();

        let read = client.store().get(&path).await.unwrap();
        let checksums = read.extensions.get::<ResponseChecksums>().unwrap().clone();
        assert_eq!(
            checksums.get(algorithm),
            Some(algorithm.checksum(&body).as_str()),
            "{algorithm}: moto returns what it stored ({checksums:?}; without the crc32c and \
             awscrt packages moto stores a CRC32 in place of CRC32C and CRC64NVME: \
             `cargo xtask test` installs them)"
        );
        assert!(client.get(&path).await.unwrap() == body);

        connector.corrupt_next(1);
        let err = client.get(&path).retries(0).await.unwrap_err();
        let integrity = integrity_error(&err);
        assert!(
            matches!(&integrity, IntegrityError::Checksum { algorithm: name, .. }
                if *name == algorithm.name()),
            "{integrity}"
        );
        assert!(integrity.is_retryable());
        connector.corrupt_next(1);
        let retries = client.stats().unwrap().retries;
        assert!(client.get(&path).await.unwrap() == body);
        assert_eq!(client.stats().unwrap().retries, retries + 1, "{algorithm}");
        assert_eq!(connector.pending(), 0);
    }
}

/// A multipart upload sent with CRC64NVME part checksums gets a full-object CRC64NVME from
/// moto (as from AWS S3): a whole read and a download in ranges are checked against it, so
/// a changed byte in any range of a multipart object is found.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multipart_object_on_moto_is_checked_whole_against_its_full_object_crc64nvme() {
    let moto = MotoServer::start();
    let connector = CorruptingConnector::default();
    let client = moto_client(&moto, &connector, Some(Checksum::CRC64NVME));
    let path = Path::from("crc/multipart.bin");
    let body = random_bytes(34, 2 * PART + 10);
    let put = client.put(&path, body.clone()).await.unwrap();
    assert!(
        put.e_tag
            .as_deref()
            .is_some_and(|tag| tag.ends_with("-3\"")),
        "three parts: {put:?}"
    );
    let head = client
        .store()
        .get_opts(&path, object_store::GetOptions::new().with_head(true))
        .await
        .unwrap();
    let checksums = head.extensions.get::<ResponseChecksums>().unwrap();
    assert_eq!(
        checksums.get(ChecksumAlgorithm::Crc64Nvme),
        Some(ChecksumAlgorithm::Crc64Nvme.checksum(&body).as_str()),
        "the whole object's CRC64NVME ({checksums:?}; moto computes it with the awscrt \
         package, which `cargo xtask test` installs)"
    );

    assert!(client.get(&path).await.unwrap() == body);
    let sink = Sink::default();
    let summary = client.download_to(&path, sink.clone()).await.unwrap();
    assert!(sink.bytes() == body);
    assert_eq!(summary.pieces, 3);

    connector.corrupt_next(1);
    let err = client.get(&path).retries(0).await.unwrap_err();
    assert!(
        matches!(
            integrity_error(&err),
            IntegrityError::Checksum {
                algorithm: "CRC64NVME",
                delivered: false,
                ..
            }
        ),
        "{err}"
    );
    // The first range is changed: no range carries a checksum, the whole object's does.
    connector.corrupt_next(1);
    let err = client
        .download_to(&path, Sink::default())
        .await
        .unwrap_err();
    assert!(
        matches!(
            integrity_error(&err),
            IntegrityError::Checksum {
                algorithm: "CRC64NVME",
                delivered: true,
                ..
            }
        ),
        "{err}"
    );
}
