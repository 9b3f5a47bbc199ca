//! What every published crate promises about its documentation, checked as a test: docs.rs
//! builds it with every feature and marks what a feature gates, its README lists every
//! feature in a table, and the methods a user calls first each show a runnable example.

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

    /// The methods a newcomer calls first, by the file that defines them: each must show an
    /// example (a code block in its doc comment, run as a doc test).
    const FIRST_CALLED: [(&str, &[&str]); 8] = [
        (
            "pool-core/src/pool.rs",
            &[
                "builder",
                "enqueue",
                "enqueue_with",
                "set_concurrency",
                "stats",
                "pause",
                "drain",
                "stop",
            ],
        ),
        ("pool-core/src/builder.rs", &["concurrency", "build"]),
        ("pool-core/src/task.rs", &["priority"]),
        (
            "s3-client/src/client.rs",
            &[
                "from_url",
                "put",
                "get",
                "head",
                "delete",
                "list",
                "put_batch",
                "get_batch",
                "delete_many",
                "stop",
            ],
        ),
        ("s3-client/src/builder.rs", &["from_url", "concurrency"]),
        (
            "task-manager/src/manager.rs",
            &[
                "process",
                "process_iterable",
                "process_stream",
                "enqueue",
                "drain",
                "stop",
                "stats",
            ],
        ),
        (
            "pool-metrics/src/metrics.rs",
            &["stats", "aggregate", "prometheus"],
        ),
        ("pool-metrics/src/prometheus.rs", &["render"]),
    ];

    /// The doc comment above the first `pub fn name` / `pub async fn name` in `source`.
    fn doc_of(source: &str, name: &str) -> Option<String> {
        let lines: Vec<&str> = source.lines().collect();
        let at = lines.iter().position(|line| {
            let line = line.trim_start();
            [format!("pub fn {name}"), format!("pub async fn {name}")]
                .iter()
                .any(|start| {
                    line.strip_prefix(start.as_str())
                        .is_some_and(|rest| rest.starts_with(['(', '<']))
                })
        })?;
        let doc: Vec<&str> = lines[..at]
            .iter()
            .rev()
            .map(|line| line.trim_start())
            .take_while(|line| line.starts_with("///") || line.starts_with("#["))
            .collect();
        Some(doc.into_iter().rev().collect::<Vec<_>>().join("\n"))
    }

    #[test]
    fn the_methods_a_user_calls_first_show_an_example() {
        let mut missing = Vec::new();
        for (file, names) in FIRST_CALLED {
            let source = read(root().join(file));
            for name in names {
                let doc =
                    doc_of(&source, name).unwrap_or_else(|| panic!("{file}: no `pub fn {name}`"));
                if !doc.contains("/// ```") {
                    missing.push(format!("{file}: {name}"));
                }
            }
        }
        assert!(missing.is_empty(), "no example on: {missing:#?}");
    }

    #[test]
    fn doc_of_reads_the_comment_above_the_first_definition() {
        let source = "/// One.\n///\n/// ```\n/// x\n/// ```\n#[inline]\npub fn one() {}\n/// Two.\npub async fn one_more() {}\n";
        assert!(doc_of(source, "one").unwrap().contains("/// ```"));
        assert_eq!(doc_of(source, "one_more").unwrap(), "/// Two.");
        assert_eq!(doc_of(source, "on"), None);
    }
}
