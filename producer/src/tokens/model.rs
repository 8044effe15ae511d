//! Scopes, the token format, the create body's validation and the JSON
//! shapes. Pure: no I/O.

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use chrono::{DateTime, Utc};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{problem::FieldError, tasks::validate::text::reject_nul};

/// Prefix of every personal access token, so a leaked one is recognisable
/// (secret scanners, logs) and the API tells it from a JWT without parsing.
pub const TOKEN_PREFIX: &str = "tfp_";
pub const NAME_MAX_CHARS: usize = 100;
/// The longest expiry a token can be given, in days.
pub const MAX_EXPIRY_DAYS: i64 = 366;
/// Live (not revoked) tokens one user may hold; a create beyond is a 409.
pub const MAX_LIVE_TOKENS: i64 = 100;
/// Random bytes of the lookup id (hex in the token) and of the secret
/// (base64url in the token).
const LOOKUP_BYTES: usize = 8;
const SECRET_BYTES: usize = 32;

/// What a personal access token may do. A login session (JWT) may do all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Read tasks, their history and the audit feed.
    TasksRead,
    /// Create, change, complete, reopen and delete tasks.
    TasksWrite,
    /// Read the inbox and the live feed.
    NotificationsRead,
}

impl Scope {
    pub const ALL: [Scope; 3] = [
        Scope::TasksRead,
        Scope::TasksWrite,
        Scope::NotificationsRead,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::TasksRead => "tasks:read",
            Scope::TasksWrite => "tasks:write",
            Scope::NotificationsRead => "notifications:read",
        }
    }

    pub fn parse(s: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|scope| scope.as_str() == s)
    }
}

/// A freshly generated token: the plain text (answered once) and what is
/// stored.
#[derive(Debug)]
pub struct TokenSecret {
    pub plain: String,
    pub lookup: String,
    pub hash: [u8; 32],
}

impl TokenSecret {
    pub fn generate() -> Self {
        let mut rng = rand::rngs::OsRng;
        let mut lookup = [0u8; LOOKUP_BYTES];
        let mut secret = [0u8; SECRET_BYTES];
        rng.fill_bytes(&mut lookup);
        rng.fill_bytes(&mut secret);
        let lookup = hex::encode(lookup);
        let secret = URL_SAFE_NO_PAD.encode(secret);
        Self {
            plain: format!("{TOKEN_PREFIX}{lookup}_{secret}"),
            hash: hash_secret(&secret),
            lookup,
        }
    }
}

/// A presented token split into its lookup id and the hash of its secret.
#[derive(Debug, PartialEq, Eq)]
pub struct PresentedToken {
    pub lookup: String,
    pub hash: [u8; 32],
}

/// Splits `tfp_<lookup>_<secret>`; `None` when the shape is wrong (the
/// caller answers 401 as for any unknown token).
pub fn parse_token(token: &str) -> Option<PresentedToken> {
    let rest = token.strip_prefix(TOKEN_PREFIX)?;
    // The lookup id is hex, so the first `_` ends it (the secret's
    // base64url alphabet has `_` too).
    let (lookup, secret) = rest.split_once('_')?;
    let lookup_ok = lookup.len() == LOOKUP_BYTES * 2
        && lookup
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if !lookup_ok || secret.is_empty() || secret.len() > 64 {
        return None;
    }
    Some(PresentedToken {
        lookup: lookup.to_owned(),
        hash: hash_secret(secret),
    })
}

fn hash_secret(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// A validated `POST /tokens` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewToken {
    pub name: String,
    /// De-duplicated, in [`Scope::ALL`] order.
    pub scopes: Vec<Scope>,
    pub expires_in_days: Option<i64>,
}

const FIELDS: [&str; 3] = ["name", "scopes", "expires_in_days"];

/// Validates a `POST /tokens` body; every field error is reported.
pub fn validate_create(body: &Value) -> Result<NewToken, Vec<FieldError>> {
    let Some(obj) = body.as_object() else {
        return Err(vec![FieldError::new("body", "must be a JSON object")]);
    };
    let mut errors = Vec::new();
    for key in obj.keys() {
        if !FIELDS.contains(&key.as_str()) {
            errors.push(FieldError::new(
                key.as_str(),
                format!("unknown field; allowed: {}", FIELDS.join(", ")),
            ));
        }
    }
    let name = match obj.get("name").map(parse_name) {
        None => {
            errors.push(FieldError::new("name", "is required"));
            String::new()
        }
        Some(Ok(n)) => n,
        Some(Err(e)) => {
            errors.push(FieldError::new("name", e));
            String::new()
        }
    };
    let mut scopes = Vec::new();
    match obj.get("scopes") {
        None => errors.push(FieldError::new("scopes", "is required")),
        Some(Value::Array(items)) if items.is_empty() => {
            errors.push(FieldError::new("scopes", "must name at least one scope"));
        }
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                match item.as_str().and_then(Scope::parse) {
                    Some(s) => scopes.push(s),
                    None => errors.push(FieldError::new(
                        format!("scopes[{i}]"),
                        format!("must be one of {}", scope_list()),
                    )),
                }
            }
        }
        Some(_) => errors.push(FieldError::new("scopes", "must be an array of scopes")),
    }
    let scopes: Vec<Scope> = Scope::ALL
        .into_iter()
        .filter(|s| scopes.contains(s))
        .collect();
    let expires_in_days = match obj.get("expires_in_days") {
        None | Some(Value::Null) => None,
        Some(v) => match whole_number(v) {
            Some(d) if (1..=MAX_EXPIRY_DAYS).contains(&d) => Some(d),
            _ => {
                errors.push(FieldError::new(
                    "expires_in_days",
                    format!("must be null or an integer from 1 to {MAX_EXPIRY_DAYS}"),
                ));
                None
            }
        },
    };
    if errors.is_empty() {
        Ok(NewToken {
            name,
            scopes,
            expires_in_days,
        })
    } else {
        Err(errors)
    }
}

/// An integer as JSON Schema counts them: `30` and also `30.0` (a number
/// whose fraction is zero is an integer there, and the OpenAPI document
/// promises `integer`).
pub(crate) fn whole_number(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| {
        v.as_f64()
            .filter(|f| f.fract() == 0.0 && f.abs() <= 1e15)
            .map(|f| f as i64)
    })
}

fn scope_list() -> String {
    Scope::ALL.map(Scope::as_str).join(", ")
}

/// At most [`NAME_MAX_CHARS`] as sent, not blank, no NUL; stored trimmed.
fn parse_name(v: &Value) -> Result<String, String> {
    let s = v.as_str().ok_or("must be a string")?;
    reject_nul(s)?;
    let n = s.chars().count();
    if n > NAME_MAX_CHARS {
        return Err(format!(
            "must be at most {NAME_MAX_CHARS} characters (got {n})"
        ));
    }
    let t = s.trim();
    if t.is_empty() {
        return Err("must not be empty".to_owned());
    }
    Ok(t.to_owned())
}

/// A stored token as listed: never its secret.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredToken {
    pub id: Uuid,
    pub name: String,
    pub scopes: Vec<Scope>,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
}

/// A personal access token, without its secret.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AccessToken {
    pub id: Uuid,
    pub name: String,
    /// `tasks:read`, `tasks:write`, `notifications:read`.
    pub scopes: Vec<String>,
    pub created_at: DateTime<Utc>,
    /// `null`: never expires.
    pub expires_at: Option<DateTime<Utc>>,
    /// Last request made with it (recorded at most once a minute).
    pub last_used_at: Option<DateTime<Utc>>,
}

impl From<&StoredToken> for AccessToken {
    fn from(t: &StoredToken) -> Self {
        Self {
            id: t.id,
            name: t.name.clone(),
            scopes: t.scopes.iter().map(|s| s.as_str().to_owned()).collect(),
            created_at: t.created_at,
            expires_at: t.expires_at,
            last_used_at: t.last_used_at,
        }
    }
}

/// The answer of `POST /tokens`: the only time the token itself is shown.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreatedAccessToken {
    pub id: Uuid,
    pub name: String,
    pub scopes: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    /// Send as `Authorization: Bearer <token>`. Shown once: only its hash
    /// is stored.
    pub token: String,
}

/// The caller's live (not revoked) tokens, newest first; expired ones are
/// listed until revoked.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AccessTokenList {
    pub items: Vec<AccessToken>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn generated_tokens_parse_back_to_their_hash() {
        let t = TokenSecret::generate();
        assert!(t.plain.starts_with(TOKEN_PREFIX));
        let p = parse_token(&t.plain).unwrap();
        assert_eq!(p.lookup, t.lookup);
        assert_eq!(p.hash, t.hash);
        assert_ne!(TokenSecret::generate().plain, t.plain);
    }

    #[test]
    fn malformed_tokens_do_not_parse() {
        for bad in [
            "",
            "tfp_",
            "tfp_0123456789abcdef",
            "tfp_0123456789abcdef_",
            "tfp_0123456789ABCDEF_secret",
            "tfp_0123_secret",
            "xyz_0123456789abcdef_secret",
            "eyJhbGciOiJIUzI1NiJ9.e30.sig",
        ] {
            assert_eq!(parse_token(bad), None, "{bad:?}");
        }
        // A secret with `_` in it (base64url) still splits at the first `_`.
        let p = parse_token("tfp_0123456789abcdef_a_b").unwrap();
        assert_eq!(p.lookup, "0123456789abcdef");
    }

    #[test]
    fn create_body_validation() {
        let ok = validate_create(&json!({
            "name": "  laptop assistant ",
            "scopes": ["tasks:write", "tasks:read", "tasks:read"],
            "expires_in_days": 30
        }))
        .unwrap();
        assert_eq!(ok.name, "laptop assistant");
        assert_eq!(ok.scopes, vec![Scope::TasksRead, Scope::TasksWrite]);
        assert_eq!(ok.expires_in_days, Some(30));
        let no_expiry = validate_create(
            &json!({"name": "x", "scopes": ["notifications:read"], "expires_in_days": null}),
        )
        .unwrap();
        assert_eq!(no_expiry.expires_in_days, None);

        let e = validate_create(&json!({
            "name": " ", "scopes": ["tasks:read", "admin"], "expires_in_days": 0, "extra": 1
        }))
        .unwrap_err();
        let fields: Vec<&str> = e.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(fields, ["extra", "name", "scopes[1]", "expires_in_days"]);
        let e = validate_create(&json!({"scopes": []})).unwrap_err();
        let fields: Vec<&str> = e.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(fields, ["name", "scopes"]);
        assert!(validate_create(&json!({"name": "a\u{0}b", "scopes": ["tasks:read"]})).is_err());
        assert!(validate_create(
            &json!({"name": "n", "scopes": ["tasks:read"], "expires_in_days": 1.5})
        )
        .is_err());
        assert!(validate_create(&json!([])).is_err());
        // 125.0 is an integer to JSON Schema (found by schemathesis).
        let whole = validate_create(
            &json!({"name": "n", "scopes": ["tasks:read"], "expires_in_days": 125.0}),
        );
        assert_eq!(whole.unwrap().expires_in_days, Some(125));
    }
}
