//! Credentials never leave this module in clear: a connection URL is shown with its password
//! replaced by `***`, and any text that might quote it (a driver's error message) is scrubbed.
//!
//! One routine, [`redact`], finds the secrets of any URL this crate is given — a standalone
//! URL, `rediss://`, each node of a cluster — so every `Debug`, `Display`, error, event and
//! log line shows the same masked form.

use std::fmt;

/// What a password is replaced with wherever it would be shown.
const MASK: &str = "***";

/// Pieces of a raw password shorter than this are not scrubbed from messages on their own
/// (they would mask ordinary words); the whole password and its longer pieces always are.
const MIN_SCRUBBED_PIECE: usize = 3;

/// A Redis connection URL whose `Debug` and `Display` hide the password.
///
/// Understands `redis://user:password@host:port/db`, `rediss://…` and the `pass=` /
/// `password=` query parameters of `redis+unix://` URLs. A password is masked whole even
/// when it holds characters a URL reserves and was not percent-encoded (`/ ? # @ : % +`):
/// the user information runs to the *last* `@` before the host, and a query password to the
/// end of the URL. (Such a URL is refused by the driver; percent-encode those characters.)
#[derive(Clone, PartialEq, Eq)]
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

    /// Whether the URL asks for TLS (`rediss://`, `valkeys://`).
    pub(crate) fn is_tls(&self) -> bool {
        let scheme = self.raw.split("://").next().unwrap_or_default();
        scheme.eq_ignore_ascii_case("rediss") || scheme.eq_ignore_ascii_case("valkeys")
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

impl From<&String> for RedisUrl {
    fn from(url: &String) -> Self {
        Self::new(url.as_str())
    }
}

/// The URL to show, and the secrets it held (raw, percent-decoded, and the longer pieces of
/// a raw password that a parser might quote on their own).
fn redact(raw: &str) -> (String, Vec<String>) {
    let Some(scheme_end) = raw.find("://").map(|i| i + 3) else {
        // Not a URL we understand: show nothing of it rather than risk a secret.
        return (format!("<unparsed url {MASK}>"), vec![raw.to_owned()]);
    };
    let mut secrets = Vec::new();
    let mut shown = raw[..scheme_end].to_owned();
    let rest = &raw[scheme_end..];
    // A query password runs to the end: a raw `&` or `#` in it must not end it early.
    let (before_query_secret, query_secret) = match find_query_password(rest) {
        Some(value_start) => (&rest[..value_start], Some(&rest[value_start..])),
        None => (rest, None),
    };
    // The user information runs to the last `@`: a raw `@ / ? #` in a password must not end
    // it early. (An `@` that is not in the user information masks more than needed: safe.)
    let after_userinfo = match before_query_secret.rfind('@') {
        Some(at) => {
            let userinfo = &before_query_secret[..at];
            match userinfo.split_once(':') {
                Some((user, password)) if !user.contains(['/', '?', '#']) => {
                    shown.push_str(user);
                    shown.push(':');
                    if !password.is_empty() {
                        secrets.push(password.to_owned());
                        shown.push_str(MASK);
                    }
                }
                // A lone `redis://word@host` is a user name to this driver but a password
                // to some other clients; anything odder may be a password too: mask it.
                _ if !userinfo.is_empty() => {
                    secrets.push(userinfo.to_owned());
                    shown.push_str(MASK);
                }
                _ => {}
            }
            &before_query_secret[at..]
        }
        None => before_query_secret,
    };
    shown.push_str(after_userinfo);
    if let Some(value) = query_secret {
        if !value.is_empty() {
            // The driver may read the value up to a `&` or `#`: those are secrets too.
            for end in [value.find('&'), value.find('#')].into_iter().flatten() {
                secrets.push(value[..end].to_owned());
            }
            secrets.push(value.to_owned());
            shown.push_str(MASK);
        }
    }
    let mut all = Vec::new();
    for secret in secrets.into_iter().filter(|secret| !secret.is_empty()) {
        let decoded = percent_decode(&secret);
        all.extend(
            secret
                .split(['/', '?', '#', '@', ':', '&', '%', '+'])
                .filter(|piece| piece.len() >= MIN_SCRUBBED_PIECE)
                .map(str::to_owned),
        );
        all.push(decoded);
        all.push(secret);
    }
    all.sort();
    all.dedup();
    // Longest first, so a secret that contains another is masked whole.
    all.sort_by_key(|s| std::cmp::Reverse(s.len()));
    (shown, all)
}

/// Where the value of a `pass=` / `password=` query parameter starts, if there is one.
fn find_query_password(rest: &str) -> Option<usize> {
    let query = rest.find('?')?;
    let mut start = query + 1;
    for pair in rest[query + 1..].split('&') {
        if let Some((key, _)) = pair.split_once('=') {
            if key.eq_ignore_ascii_case("pass") || key.eq_ignore_ascii_case("password") {
                return Some(start + key.len() + 1);
            }
        }
        start += pair.len() + 1;
    }
    None
}

/// Decodes `%XX` escapes (what the driver sends to `AUTH`); invalid escapes stay as they are.
/// `+` stays `+`: the driver percent-decodes passwords, it does not form-decode them.
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
            "rediss://cache.example:6380/1?protocol=resp3",
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
            "redis+unix:///run/redis.sock?db=1&pass=***"
        );
        assert_eq!(unix.scrub("pw1#x"), "***");
    }

    #[test]
    fn raw_reserved_characters_in_a_password_never_show() {
        for password in [
            "a/b",
            "a?b",
            "a#b",
            "a@b",
            "a:b",
            "a%b",
            "a+b",
            "p@ss/w?rd#1",
            "%zz",
            "x@y@z",
        ] {
            for template in [
                "redis://:{}@127.0.0.1:6379/0",
                "redis://user:{}@127.0.0.1:6379",
                "rediss://user:{}@cache.example:6380/2?protocol=resp3",
                "redis+unix:///run/redis.sock?db=1&pass={}",
                "redis+unix:///run/redis.sock?password={}&db=1",
            ] {
                let raw = template.replace("{}", password);
                let url = RedisUrl::new(raw.as_str());
                let shown = format!("{url} {url:?}");
                assert!(shown.contains(MASK), "{raw} -> {shown}");
                // The password itself, and every piece of it longer than 2 characters.
                assert!(!shown.contains(password), "{raw} -> {shown}");
                assert_eq!(url.scrub(&raw), url.scrub(&url.to_string()), "{raw}");
                assert!(!url.scrub(&format!("quoted: {password}")).contains(password));
            }
        }
    }

    #[test]
    fn the_host_stays_visible_when_the_password_has_reserved_characters() {
        let url = RedisUrl::new("rediss://app:p@ss/w?rd#1@cache.example:6380/0");
        assert_eq!(url.to_string(), "rediss://app:***@cache.example:6380/0");
        assert!(url.is_tls());
        assert!(!RedisUrl::new("redis://h").is_tls());
    }

    #[test]
    fn unparsed_input_is_hidden_whole() {
        let url = RedisUrl::new("not a url with secret");
        assert!(!url.to_string().contains("secret"));
    }
}
