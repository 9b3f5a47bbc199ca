//! Bucket creation and deletion over aws-sdk-s3 against the loopback server, then objects in
//! the new bucket through object_store.

use object_store::path::Path;
use s3_client::testing::S3TestServer;
use s3_client::{BucketAdmin, S3Client, S3Config, StoreConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bucket_is_created_used_and_deleted() {
    let server = S3TestServer::start().await.unwrap();
    let admin = BucketAdmin::new(&server.s3_config()).unwrap();
    let bucket = "created-by-admin";
    assert!(!admin.bucket_exists(bucket).await.unwrap());

    admin.create_bucket(bucket).await.unwrap();
    assert!(admin.bucket_exists(bucket).await.unwrap());

    let mut config = server.s3_config();
    config.bucket = bucket.to_owned();
    let client = S3Client::builder_arc(StoreConfig::s3(config).build().unwrap())
        .build()
        .unwrap();
    let path = Path::from("hello");
    client.put(&path, "world").await.unwrap();
    assert_eq!(&client.get(&path).await.unwrap()[..], b"world");

    client.delete(&path).await.unwrap();
    admin.delete_bucket(bucket).await.unwrap();
    assert!(!admin.bucket_exists(bucket).await.unwrap());
    let err = admin.delete_bucket(bucket).await.unwrap_err();
    assert_eq!((err.operation(), err.bucket()), ("delete", bucket), "{err}");
    assert!(err.to_string().contains("NoSuchBucket"), "{err}");
}

#[test]
fn an_admin_needs_static_credentials() {
    let err = BucketAdmin::new(&S3Config::new("bucket")).unwrap_err();
    assert!(err.to_string().contains("access_key_id"), "{err}");
}
