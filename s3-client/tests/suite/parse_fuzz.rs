//! The connection-string parser never panics, whatever it is given.

use proptest::prelude::*;
use s3_client::StoreConfig;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_text_never_panics(input in ".{0,80}") {
        let _ = StoreConfig::parse(&input);
    }

    #[test]
    fn url_shaped_text_never_panics(
        scheme in "(s3|s3a|http|https|memory|file|ftp|S3)",
        user in "[a-zA-Z0-9%:@]{0,12}",
        host in "[a-zA-Z0-9._%\\[\\]:-]{0,20}",
        path in "[a-zA-Z0-9/%._ü-]{0,30}",
        query in "[a-zA-Z0-9=&%_.-]{0,40}",
    ) {
        let input = format!("{scheme}://{user}@{host}/{path}?{query}");
        if let Ok(config) = StoreConfig::parse(&input) {
            // Whatever parses prints back without panicking, and builds or fails cleanly.
            let _ = config.to_string();
            let _ = config.build();
        }
    }
}
