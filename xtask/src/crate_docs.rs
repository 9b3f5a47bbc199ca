//! What every published crate promises about its documentation, checked as a test: docs.rs
//! builds it with every feature and marks what a feature gates, and its README lists every
//! feature in a table.

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    /// The crates published to crates.io (the others are tools and checks).
    const CRATES: [&str; 7] = [
        "pool-core",
        "pool-metrics",
        "pool-tuning",
        "s3-client",
        "task-manager",
        "pool-redis",
        "pool-bench",
    ];

    fn root() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("xtask sits in the workspace")
            .to_path_buf()
    }

    fn read(path: PathBuf) -> String {
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// The names in a Cargo.toml's `[features]` table, but `default`.
    fn features(manifest: &str) -> Vec<String> {
        manifest
            .lines()
            .skip_while(|line| line.trim() != "[features]")
            .skip(1)
            .take_while(|line| !line.starts_with('['))
            .filter_map(|line| line.split_once('=').map(|(name, _)| name.trim().to_owned()))
            .filter(|name| !name.starts_with('#') && name != "default")
            .collect()
    }

    #[test]
    fn docs_rs_builds_every_crate_with_all_features_and_badges_gated_items() {
        for name in CRATES {
            let manifest = read(root().join(name).join("Cargo.toml"));
            let metadata = manifest
                .split("[package.metadata.docs.rs]")
                .nth(1)
                .unwrap_or_else(|| panic!("{name}: no [package.metadata.docs.rs]"));
            let metadata = metadata.split("\n[").next().unwrap_or_default();
            assert!(
                metadata.contains("all-features = true"),
                "{name}: docs.rs must build all features"
            );
            assert!(
                metadata.contains(r#"rustdoc-args = ["--cfg", "docsrs"]"#),
                "{name}: docs.rs must set cfg(docsrs) for the feature badges"
            );
            let lib = read(root().join(name).join("src/lib.rs"));
            assert!(
                lib.contains("#![cfg_attr(docsrs, feature(doc_cfg))]"),
                "{name}: lib.rs must turn doc_cfg on under docsrs"
            );
        }
    }

    #[test]
    fn every_readme_has_a_features_table_naming_each_feature() {
        for name in CRATES {
            let manifest = read(root().join(name).join("Cargo.toml"));
            let readme = read(root().join(name).join("README.md"));
            let table = readme
                .split("## Features")
                .nth(1)
                .unwrap_or_else(|| panic!("{name}: README has no `## Features` section"));
            assert!(
                table.contains("| feature |"),
                "{name}: the Features section has no table"
            );
            for feature in features(&manifest) {
                assert!(
                    table.contains(&format!("| `{feature}` |")),
                    "{name}: README's features table does not name `{feature}`"
                );
            }
        }
    }
}
