//! Where one limit lives in Redis: its keys and its wake-up channel.
//!
//! Every key carries the hash tag `{name}`, so Redis Cluster puts all keys of one limit on
//! one slot and the scripts, which touch several of them, stay legal there.

use crate::error::PermitError;

/// Longest limit name accepted; keys stay short and readable in `redis-cli`.
const MAX_NAME_LEN: usize = 128;

/// The keys of one named limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LimitKeys {
    /// The validated name.
    pub(crate) name: String,
    /// Sorted set: lease member (`agent:seq`) scored by its expiry (Redis time, ms).
    pub(crate) holders: String,
    /// String: the limit in force for every process.
    pub(crate) limit: String,
    /// Hash: agent id -> number of leases it holds (for the fair share).
    pub(crate) agents: String,
    /// Sorted set: agents that want more permits than they got, scored by expiry.
    pub(crate) waiting: String,
    /// Pub/sub channel: room appeared or the limit changed.
    pub(crate) channel: String,
}

impl LimitKeys {
    /// The keys of limit `name`, or a typed error if the name cannot be used in a key.
    pub(crate) fn new(name: &str) -> Result<Self, PermitError> {
        let invalid = |reason: &'static str| PermitError::InvalidName {
            name: name.chars().take(MAX_NAME_LEN).collect(),
            reason,
        };
        if name.is_empty() {
            return Err(invalid("must not be empty"));
        }
        if name.len() > MAX_NAME_LEN {
            return Err(invalid("must be at most 128 bytes"));
        }
        // Braces would change the hash tag; whitespace and control characters make keys
        // hard to use from a shell.
        if name
            .chars()
            .any(|c| c == '{' || c == '}' || c.is_whitespace() || c.is_control())
        {
            return Err(invalid(
                "must not contain braces, whitespace or control characters",
            ));
        }
        let key = |suffix: &str| tagged(name, suffix);
        Ok(Self {
            name: name.to_owned(),
            holders: key("holders"),
            limit: key("limit"),
            agents: key("agents"),
            waiting: key("waiting"),
            channel: key("wake"),
        })
    }

    /// Where shared rate limits named like this live: the prefix of each key's hash (the
    /// key's text follows it) and the channel throttled keys are published on. Same hash tag
    /// as the permits: one cluster slot per name.
    pub(crate) fn rate_keys(&self) -> (String, String) {
        (
            tagged(&self.name, "rate:"),
            tagged(&self.name, "rate-throttled"),
        )
    }

    /// The keys in the order the scripts expect them (`KEYS[1..4]`).
    pub(crate) fn script_keys(&self) -> [&str; 4] {
        [&self.holders, &self.limit, &self.agents, &self.waiting]
    }
}

/// `s3pool:{name}:suffix`: every key of one name carries the hash tag `{name}`.
fn tagged(name: &str, suffix: &str) -> String {
    format!("s3pool:{{{name}}}:{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_share_one_hash_tag() {
        let keys = LimitKeys::new("s3-uploads").unwrap();
        for key in keys.script_keys() {
            assert!(key.contains("{s3-uploads}"), "{key}");
        }
        assert_eq!(keys.channel, "s3pool:{s3-uploads}:wake");
        let (prefix, channel) = keys.rate_keys();
        assert_eq!(prefix, "s3pool:{s3-uploads}:rate:");
        assert_eq!(channel, "s3pool:{s3-uploads}:rate-throttled");
    }

    #[test]
    fn bad_names_are_typed_errors() {
        for bad in ["", "a{b", "a}b", "two words", "tab\t", &"x".repeat(129)] {
            assert!(
                matches!(LimitKeys::new(bad), Err(PermitError::InvalidName { .. })),
                "{bad:?}"
            );
        }
    }
}
