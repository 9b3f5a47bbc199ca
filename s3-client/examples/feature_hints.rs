//! Calls a method the `metrics` feature gates. With the feature on it compiles like any
//! program; without it, `cargo xtask test` checks that it fails with an error that says to
//! enable the feature (rather than rustc's "no method named `metrics`", whose hint points
//! at `retries`).

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), s3_client::BuildError> {
    let client = s3_client::S3Client::from_url("memory://")?;
    println!("metrics attached: {}", client.metrics().is_some());
    Ok(())
}
