//! The one routine that hides credentials in text this crate prints.
//!
//! Credentials reach s3-client as [`Secret`](crate::Secret)s (which never print themselves)
//! or inside a connection string. Every `Debug`, `Display`, error message and log line that
//! shows a URL, an endpoint or a message from a lower layer (the URL parser, object_store)
//! passes it through [`redact`] first, so a credential a user put in an unexpected place —
//! with any characters, raw or percent-encoded — is masked the same way everywhere.

use std::borrow::Cow;

/// What a credential is replaced with.
pub(crate) const MASK: &str = "<redacted>";

/// Query parameters whose value is a credential (compared without regard to case): this
/// crate's own, and those of presigned S3 URLs a lower layer may quote.
const CREDENTIAL_PARAMETERS: [&str; 6] = [
    "access_key_id",
    "secret_access_key",
    "session_token",
    "x-amz-credential",
    "x-amz-security-token",
    "x-amz-signature",
];

/// Characters that end a URL inside a longer text (a log line, a `Debug` dump).
fn ends_url(c: char) -> bool {
    c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | '`')
}

/// `text` with the credentials of every URL in it masked:
///
/// - the user information of each `scheme://user:password@host` — everything from `://` to
///   the *last* `@` of that URL, so a password holding `/ ? # @ : % +`, raw or
///   percent-encoded, is masked whole (a `@` in a path makes it mask more, never less);
/// - the value of each credential parameter (`secret_access_key=…`, `session_token=…`, …),
///   up to the next `&` or the end of the URL.
///
/// Borrowed unchanged when there is nothing to mask.
pub(crate) fn redact(text: &str) -> Cow<'_, str> {
    let masked = mask_parameters(&mask_userinfo(text)).into_owned();
    if masked == text {
        Cow::Borrowed(text)
    } else {
        Cow::Owned(masked)
    }
}

fn mask_userinfo(text: &str) -> Cow<'_, str> {
    if !text.contains("://") {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (before, after) = rest.split_at(at + 3);
        out.push_str(before);
        let url_len = after.find(ends_url).unwrap_or(after.len());
        let (url, tail) = after.split_at(url_len);
        match url.rfind('@') {
            Some(userinfo_end) => {
                out.push_str(MASK);
                out.push_str(&url[userinfo_end..]);
            }
            None => out.push_str(url),
        }
        rest = tail;
    }
    out.push_str(rest);
    Cow::Owned(out)
}

fn mask_parameters(text: &str) -> Cow<'_, str> {
    let lower = text.to_ascii_lowercase();
    let mut spans: Vec<(usize, usize)> = Vec::new();
    for name in CREDENTIAL_PARAMETERS {
        let key = format!("{name}=");
        let mut from = 0;
        while let Some(found) = lower[from..].find(&key) {
            let start = from + found + key.len();
            let begins_parameter = lower[..from + found]
                .chars()
                .next_back()
                .is_none_or(|c| matches!(c, '?' | '&' | ';') || ends_url(c));
            let len = text[start..]
                .find(|c: char| c == '&' || ends_url(c))
                .unwrap_or(text.len() - start);
            if begins_parameter && len > 0 {
                spans.push((start, start + len));
            }
            from = start;
        }
    }
    if spans.is_empty() {
        return Cow::Borrowed(text);
    }
    spans.sort_unstable();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    for (start, end) in spans {
        if start < copied {
            continue;
        }
        out.push_str(&text[copied..start]);
        out.push_str(MASK);
        copied = end;
    }
    out.push_str(&text[copied..]);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_without_credentials_is_borrowed() {
        for text in [
            "",
            "plain words",
            "http://127.0.0.1:9000/bucket/key",
            "s3://bucket/prefix?region=eu-west-1",
        ] {
            assert!(matches!(redact(text), Cow::Borrowed(t) if t == text));
        }
    }

    #[test]
    fn userinfo_is_masked_whatever_it_holds() {
        let secrets = [
            "plain", "a+b", "a/b", "a?b", "a#b", "a@b", "a%b", "a:b", "a%2Fb", "a%40b", "+/?#@%:",
        ];
        for secret in secrets {
            let url = format!("http://AKID:{secret}@minio:9000/bucket");
            let shown = redact(&url);
            assert_eq!(shown, "http://<redacted>@minio:9000/bucket", "{secret}");
            let logged = format!("request to \"{url}\" failed; retrying {url}");
            let shown = redact(&logged);
            assert!(
                !shown.contains("AKID") && !shown.contains(secret),
                "{shown}"
            );
            assert!(shown.contains("minio:9000/bucket"), "{shown}");
        }
    }

    #[test]
    fn credential_parameters_are_masked_to_the_next_parameter() {
        let url = "s3://bkt?region=eu-west-1&secret_access_key=a+b/c?d#e&Session_Token=tok%2B&x=1";
        assert_eq!(
            redact(url),
            "s3://bkt?region=eu-west-1&secret_access_key=<redacted>&Session_Token=<redacted>&x=1"
        );
        // Only parameters: a word ending in the name is left alone.
        assert_eq!(
            redact("my_access_key_id=5 is fine"),
            "my_access_key_id=5 is fine"
        );
        assert_eq!(redact("access_key_id=AK"), "access_key_id=<redacted>");
    }
}
