//! A string that never prints itself, and the credentials made of such strings.

use std::fmt;
use std::sync::Arc;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey, AwsCredential};
use object_store::CredentialProvider;

/// A credential (secret key, session token, access key id) that is redacted in every
/// `Debug` and `Display`, so it cannot leak through logs, error messages or panics.
///
/// Read it with [`Secret::expose`] at the one place that needs the real value.
///
/// ```
/// use s3_client::Secret;
/// let secret = Secret::new("wJalrXUtnFEMI");
/// assert_eq!(format!("{secret} {secret:?}"), "<redacted> <redacted>");
/// assert_eq!(secret.expose(), "wJalrXUtnFEMI");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The real value. Call it only to hand the value to the store's builder.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True for an empty value.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Credentials for S3 and S3-compatible servers. All three fields are redacted when printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The access key id.
    pub access_key_id: Secret,
    /// The secret access key.
    pub secret_access_key: Secret,
    /// A session token for temporary credentials.
    pub session_token: Option<Secret>,
}

impl Credentials {
    /// Static credentials without a session token.
    pub fn new(access_key_id: impl Into<String>, secret_access_key: impl Into<String>) -> Self {
        Credentials {
            access_key_id: Secret::new(access_key_id),
            secret_access_key: Secret::new(secret_access_key),
            session_token: None,
        }
    }

    /// Adds a session token.
    pub fn with_session_token(mut self, token: impl Into<String>) -> Self {
        self.session_token = Some(Secret::new(token));
        self
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &self.secret_access_key)
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// Static credentials handed to object_store's S3 client. Its own static provider derives
/// `Debug` and so prints the access key id wherever the store is debug-printed (e.g.
/// `S3Client::store()`); this one prints nothing of them.
#[derive(Clone)]
pub(crate) struct StaticCredentials(Arc<AwsCredential>);

impl StaticCredentials {
    /// `given`, else the static credentials the builder read from the environment (both the
    /// key id and the secret key set), else `None` (object_store then picks another way).
    pub(crate) fn from_config(
        given: Option<&Credentials>,
        builder: &AmazonS3Builder,
    ) -> Option<Self> {
        let credential = match given {
            Some(credentials) => AwsCredential {
                key_id: credentials.access_key_id.expose().to_owned(),
                secret_key: credentials.secret_access_key.expose().to_owned(),
                token: credentials
                    .session_token
                    .as_ref()
                    .map(|token| token.expose().to_owned()),
            },
            None => AwsCredential {
                key_id: builder.get_config_value(&AmazonS3ConfigKey::AccessKeyId)?,
                secret_key: builder.get_config_value(&AmazonS3ConfigKey::SecretAccessKey)?,
                token: builder.get_config_value(&AmazonS3ConfigKey::Token),
            },
        };
        Some(Self(Arc::new(credential)))
    }
}

impl fmt::Debug for StaticCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StaticCredentials(<redacted>)")
    }
}

#[async_trait::async_trait]
impl CredentialProvider for StaticCredentials {
    type Credential = AwsCredential;

    async fn get_credential(&self) -> object_store::Result<Arc<AwsCredential>> {
        Ok(Arc::clone(&self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_debug_shows_no_secret() {
        let creds = Credentials::new("AKIDEXAMPLE", "s3cr3t-value").with_session_token("tok-123");
        let printed = format!("{creds:?}");
        for secret in ["AKIDEXAMPLE", "s3cr3t-value", "tok-123"] {
            assert!(!printed.contains(secret), "{printed}");
        }
        assert!(printed.contains("<redacted>"));
    }

    #[test]
    fn static_credentials_print_nothing_whether_given_or_read_from_the_builder() {
        let given = Credentials::new("AKIDGIVEN", "secret-given").with_session_token("tok-given");
        let builder = AmazonS3Builder::new()
            .with_access_key_id("AKIDFROMENV")
            .with_secret_access_key("secret-from-env");
        let from_given = StaticCredentials::from_config(Some(&given), &builder).unwrap();
        let from_builder = StaticCredentials::from_config(None, &builder).unwrap();
        let printed = format!("{from_given:?} {from_builder:?}");
        for secret in [
            "AKIDGIVEN",
            "secret-given",
            "tok-given",
            "AKIDFROMENV",
            "secret-from-env",
        ] {
            assert!(!printed.contains(secret), "{printed}");
        }
        assert_eq!(from_builder.0.key_id, "AKIDFROMENV");
        assert_eq!(from_given.0.token.as_deref(), Some("tok-given"));
        // Half a pair in the builder: object_store decides (and reports it).
        let half = AmazonS3Builder::new().with_access_key_id("AKIDONLY");
        assert!(StaticCredentials::from_config(None, &half).is_none());
    }
}
