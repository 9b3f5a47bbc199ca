#![doc = include_str!("../../../task-manager/README.md")]
