#![doc = include_str!("../../../pool-core/README.md")]
