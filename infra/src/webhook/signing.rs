//! Standard Webhooks signatures (<https://www.standardwebhooks.com/>), through the
//! specification's own Rust library, so every receiver can verify with the library of its
//! language: `webhook-id`, `webhook-timestamp` (Unix seconds), and `webhook-signature`, a
//! space-separated list of `v1,<base64 HMAC-SHA256 of "id.timestamp.body">`, one per
//! secret. During a rotation's overlap window a delivery is signed with the new and the
//! previous secret, so a receiver still holding the old one keeps verifying.

use base64::Engine;
use rand::RngCore;
use standardwebhooks::Webhook;

/// Secret bytes: 32, as the specification recommends (between 24 and 64).
const SECRET_BYTES: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    #[error("a stored webhook secret is unusable: {0}")]
    Secret(String),
    #[error("signing: {0}")]
    Sign(String),
}

/// A new endpoint secret, `whsec_<base64 of 32 random bytes>`.
pub fn new_secret() -> String {
    let mut key = [0u8; SECRET_BYTES];
    rand::thread_rng().fill_bytes(&mut key);
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(key)
    )
}

/// A `whsec_` secret of 24 to 64 bytes, as the specification asks (the library accepts
/// even an empty one).
pub fn check_secret(secret: &str) -> Result<(), SigningError> {
    let encoded = secret
        .strip_prefix("whsec_")
        .ok_or_else(|| SigningError::Secret("no whsec_ prefix".to_owned()))?;
    let key = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|e| SigningError::Secret(format!("not base64: {e}")))?;
    if !(24..=64).contains(&key.len()) {
        return Err(SigningError::Secret(format!(
            "{} bytes, not 24 to 64",
            key.len()
        )));
    }
    Ok(())
}

/// The `webhook-signature` value for `body` under each of `secrets`.
pub fn signature(
    secrets: &[&str],
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
) -> Result<String, SigningError> {
    let mut parts = Vec::with_capacity(secrets.len());
    for secret in secrets {
        check_secret(secret)?;
        let wh = Webhook::new(secret).map_err(|e| SigningError::Secret(e.to_string()))?;
        parts.push(
            wh.sign(msg_id, timestamp, body)
                .map_err(|e| SigningError::Sign(e.to_string()))?,
        );
    }
    Ok(parts.join(" "))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_specifications_test_vector() {
        // From the specification's reference libraries.
        let sig = signature(
            &["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        )
        .unwrap();
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn a_rotation_signs_with_both_and_each_verifies() {
        let (old, new) = (new_secret(), new_secret());
        assert!(new.starts_with("whsec_"));
        assert_ne!(old, new);
        // The library checks the timestamp against its clock.
        let now = chrono::Utc::now().timestamp();
        let sig = signature(&[&new, &old], "msg_1", now, b"{}").unwrap();
        assert_eq!(sig.split(' ').count(), 2);
        for secret in [&old, &new] {
            let mut headers = reqwest::header::HeaderMap::new();
            headers.insert("webhook-id", "msg_1".parse().unwrap());
            headers.insert("webhook-timestamp", now.to_string().parse().unwrap());
            headers.insert("webhook-signature", sig.parse().unwrap());
            Webhook::new(secret)
                .unwrap()
                .verify(b"{}", &headers)
                .unwrap();
        }
        let other = new_secret();
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("webhook-id", "msg_1".parse().unwrap());
        headers.insert("webhook-timestamp", now.to_string().parse().unwrap());
        headers.insert("webhook-signature", sig.parse().unwrap());
        assert!(Webhook::new(&other)
            .unwrap()
            .verify(b"{}", &headers)
            .is_err());
    }

    #[test]
    fn a_broken_secret_is_an_error_not_a_panic() {
        for bad in [
            "whsec_***",
            "whsec_",
            "whsec_c2hvcnQ=",
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        ] {
            assert!(
                matches!(
                    signature(&[bad], "m", 1, b"{}"),
                    Err(SigningError::Secret(_))
                ),
                "{bad}"
            );
        }
        assert!(check_secret(&new_secret()).is_ok());
    }
}
