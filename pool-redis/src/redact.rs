//! Credentials never leave this module in clear: a connection URL is shown with its password
//! replaced by `***`, and any text that might quote it (a driver's error message) is scrubbed.

use std::fmt;

/// What a password is replaced with wherever it would be shown.
const MASK: &str = "***";

/// A Redis connection URL whose `Debug` and `Display` hide the password.
///
/// Understands `redis://user:password@host:port/db`, `rediss://…` and the `pass=` /
/// `password=` query parameters of `redis+unix://` URLs.
#[derive(Clone)]
pub struct RedisUrl {
    raw: String,
    shown: String,
    secrets: Vec<String>,
}

impl RedisUrl {
    /// Wraps `url`; nothing is validated here (the driver does that on connect).
    pub fn new(url: impl Into<String>) -> Self {
        let raw = url.into();
        let (shown, secrets) = redact(&raw);
        Self {
            raw,
            shown,
            secrets,
        }
    }

    /// The URL as given, for the driver only.
    pub(crate) fn expose(&self) -> &str {
        &self.raw
    }

    /// `text` with every occurrence of this URL's secrets replaced by `***`.
    pub fn scrub(&self, text: &str) -> String {
        let mut scrubbed = text.to_owned();
        for secret in &self.secrets {
            scrubbed = scrubbed.replace(secret.as_str(), MASK);
        }
        scrubbed
    }
}

impl fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RedisUrl").field(&self.shown).finish()
    }
}

impl From<&str> for RedisUrl {
    fn from(url: &str) -> Self {
        Self::new(url)
    }
}

impl From<String> for RedisUrl {
    fn from(url: String) -> Self {
        Self::new(url)
    }
}

/// The URL to show, and the secrets it held (raw and percent-decoded forms).
fn redact(raw: &str) -> (String, Vec<String>) {
    let mut secrets = Vec::new();
    let Some(scheme_end) = raw.find("://").map(|i| i + 3) else {
        // Not a URL we understand: show nothing of it rather than risk a secret.
        return (format!("<unparsed url {MASK}>"), vec![raw.to_owned()]);
    };
    let rest = &raw[scheme_end..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let mut shown = raw[..scheme_end].to_owned();
    match authority.rfind('@') {
        Some(at) => {
            let userinfo = &authority[..at];
            match userinfo.split_once(':') {
                Some((user, password)) => {
                    shown.push_str(user);
                    if !password.is_empty() {
                        secrets.push(password.to_owned());
                        shown.push(':');
                        shown.push_str(MASK);
                    } else {
                        shown.push(':');
                    }
                }
                // A lone `redis://word@host` is a user name to this driver but a password
                // to some other clients: mask it, a hidden user name costs little.
                None if !userinfo.is_empty() => {
                    secrets.push(userinfo.to_owned());
                    shown.push_str(MASK);
                }
                None => {}
            }
            shown.push_str(&authority[at..]);
        }
        None => shown.push_str(authority),
    }
    let tail = &rest[authority_end..];
    match tail.split_once('?') {
        Some((path, query)) => {
            shown.push_str(path);
            shown.push('?');
            let (query, fragment) = match query.split_once('#') {
                Some((query, fragment)) => (query, Some(fragment)),
                None => (query, None),
            };
            let pairs: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((key, value))
                        if (key.eq_ignore_ascii_case("pass")
                            || key.eq_ignore_ascii_case("password"))
                            && !value.is_empty() =>
                    {
                        secrets.push(value.to_owned());
                        format!("{key}={MASK}")
                    }
                    _ => pair.to_owned(),
                })
                .collect();
            shown.push_str(&pairs.join("&"));
            if let Some(fragment) = fragment {
                shown.push('#');
                shown.push_str(fragment);
            }
        }
        None => shown.push_str(tail),
    }
    let decoded: Vec<String> = secrets
        .iter()
        .map(|s| percent_decode(s))
        .filter(|d| !secrets.contains(d))
        .collect();
    secrets.extend(decoded);
    // Longest first, so a secret that contains another is masked whole.
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    (shown, secrets)
}

/// Decodes `%XX` escapes (what the driver sends to `AUTH`); invalid escapes stay as they are.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((hi * 16 + lo) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_is_masked_in_display_and_debug() {
        let url = RedisUrl::new("redis://app:hunter%402@127.0.0.1:6379/2");
        assert_eq!(url.to_string(), "redis://app:***@127.0.0.1:6379/2");
        assert!(!format!("{url:?}").contains("hunter"));
        assert_eq!(
            url.scrub("auth failed for hunter@2 (hunter%402)"),
            "auth failed for *** (***)"
        );
    }

    #[test]
    fn urls_without_secrets_are_shown_as_they_are() {
        for plain in [
            "redis://127.0.0.1:6379",
            "redis://user:@host/0",
            "redis://:@h",
        ] {
            assert_eq!(RedisUrl::new(plain).to_string(), plain);
        }
    }

    #[test]
    fn bare_password_and_query_passwords_are_masked() {
        assert_eq!(
            RedisUrl::new("rediss://topsecret@cache.example:6380").to_string(),
            "rediss://***@cache.example:6380"
        );
        let unix = RedisUrl::new("redis+unix:///run/redis.sock?db=1&pass=pw1#x");
        assert_eq!(
            unix.to_string(),
            "redis+unix:///run/redis.sock?db=1&pass=***#x"
        );
        assert_eq!(unix.scrub("pw1"), "***");
    }

    #[test]
    fn unparsed_input_is_hidden_whole() {
        let url = RedisUrl::new("not a url with secret");
        assert!(!url.to_string().contains("secret"));
    }
}
