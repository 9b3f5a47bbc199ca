#![doc = include_str!("../../../s3-client/README.md")]
