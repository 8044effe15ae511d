//! Free text: the NUL rule every string bound for PostgreSQL obeys, the
//! title, the description and tags.

use serde_json::Value;

use crate::problem::FieldError;

pub const TITLE_MAX_CHARS: usize = 500;
pub const DESCRIPTION_MAX_CHARS: usize = 10_000;
pub const MAX_TAGS: usize = 50;
pub const TAG_MAX_CHARS: usize = 64;

/// PostgreSQL `text` (and `jsonb`) cannot hold U+0000: a NUL that reached a
/// query would fail the statement, i.e. a 500. So every client string bound
/// for the database goes through this first and becomes a 422 instead.
pub fn reject_nul(s: &str) -> Result<(), String> {
    if s.contains('\0') {
        Err("must not contain NUL (U+0000) characters".to_owned())
    } else {
        Ok(())
    }
}

/// A task title: at most [`TITLE_MAX_CHARS`] characters as sent, not blank,
/// no NUL; stored trimmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Title(String);

impl Title {
    pub fn parse(s: &str) -> Result<Self, String> {
        reject_nul(s)?;
        // Counted before trimming, so the documented maxLength is exact.
        let n = s.chars().count();
        if n > TITLE_MAX_CHARS {
            return Err(format!(
                "must be at most {TITLE_MAX_CHARS} characters (got {n})"
            ));
        }
        let t = s.trim();
        if t.is_empty() {
            return Err("must not be empty".to_owned());
        }
        Ok(Self(t.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

pub fn parse_title(v: &Value) -> Result<String, String> {
    let s = v.as_str().ok_or("must be a string")?;
    Title::parse(s).map(Title::into_string)
}

/// `null` or an all-blank string clear the description.
pub fn parse_description(v: &Value) -> Result<Option<String>, String> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => {
            reject_nul(s)?;
            let n = s.chars().count();
            if n > DESCRIPTION_MAX_CHARS {
                return Err(format!(
                    "must be at most {DESCRIPTION_MAX_CHARS} characters"
                ));
            }
            // An all-blank description carries nothing: store it as absent.
            Ok(if s.trim().is_empty() {
                None
            } else {
                Some(s.clone())
            })
        }
        _ => Err("must be a string or null".to_owned()),
    }
}

/// One tag: at most [`TAG_MAX_CHARS`] characters as sent, not blank, no NUL;
/// trimmed.
/// Shared by the body's `tags` and the list filter `tag`.
pub fn parse_tag(s: &str) -> Result<String, String> {
    reject_nul(s)?;
    let t = s.trim();
    if s.chars().count() > TAG_MAX_CHARS {
        Err(format!("must be at most {TAG_MAX_CHARS} characters"))
    } else if t.is_empty() {
        Err("must not be empty".to_owned())
    } else {
        Ok(t.to_owned())
    }
}

/// At most [`MAX_TAGS`] items; trimmed and de-duplicated (first occurrence kept).
pub fn parse_tags(v: &Value) -> Result<Vec<String>, Vec<FieldError>> {
    let arr = match v {
        Value::Null => return Ok(Vec::new()),
        Value::Array(a) => a,
        _ => return Err(vec![FieldError::new("tags", "must be an array of strings")]),
    };
    let mut errors = Vec::new();
    if arr.len() > MAX_TAGS {
        errors.push(FieldError::new("tags", format!("at most {MAX_TAGS} tags")));
    }
    let mut tags: Vec<String> = Vec::new();
    for (i, item) in arr.iter().enumerate() {
        let field = format!("tags[{i}]");
        let Some(s) = item.as_str() else {
            errors.push(FieldError::new(field, "must be a string"));
            continue;
        };
        match parse_tag(s) {
            Ok(t) if !tags.contains(&t) => tags.push(t),
            Ok(_) => {}
            Err(e) => errors.push(FieldError::new(field, e)),
        }
    }
    if errors.is_empty() {
        Ok(tags)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields_of(errs: &[FieldError]) -> Vec<&str> {
        errs.iter().map(|e| e.field.as_str()).collect()
    }

    #[test]
    fn title_rules() {
        assert_eq!(Title::parse("  Buy milk ").unwrap().as_str(), "Buy milk");
        assert!(Title::parse("   ").is_err());
        assert!(parse_title(&json!(5)).is_err());
        assert!(Title::parse(&"x".repeat(500)).is_ok());
        // 500 characters, not bytes
        assert!(Title::parse(&"é".repeat(500)).is_ok());
        assert!(Title::parse(&"x".repeat(501)).is_err());
        // the limit applies to what was sent, before trimming
        assert!(Title::parse(&format!(" {} ", "x".repeat(499))).is_err());
    }

    #[test]
    fn nul_is_refused_everywhere() {
        assert!(Title::parse("a\0b").unwrap_err().contains("NUL"));
        assert!(parse_description(&json!("a\u{0}")).is_err());
        let e = parse_tags(&json!(["ok", "b\u{0}"])).unwrap_err();
        assert_eq!(fields_of(&e), ["tags[1]"]);
        assert!(parse_tag("\0").is_err());
        assert!(reject_nul("fine").is_ok());
    }

    #[test]
    fn blank_description_is_absent() {
        assert_eq!(parse_description(&json!("  ")), Ok(None));
        assert_eq!(parse_description(&json!(null)), Ok(None));
        assert_eq!(parse_description(&json!(" d ")), Ok(Some(" d ".to_owned())));
        assert!(parse_description(&json!("x".repeat(10_001))).is_err());
    }

    #[test]
    fn tags_are_trimmed_deduped_and_bounded() {
        let t = parse_tags(&json!([" a ", "b", "a"])).unwrap();
        assert_eq!(t, ["a", "b"]);
        let e = parse_tags(&json!(["ok", "  ", 3, "x".repeat(65)])).unwrap_err();
        assert_eq!(fields_of(&e), ["tags[1]", "tags[2]", "tags[3]"]);
        let many: Vec<String> = (0..51).map(|i| format!("t{i}")).collect();
        assert!(parse_tags(&json!(many)).is_err());
        let fifty: Vec<String> = (0..50).map(|i| format!("t{}", i % 25)).collect();
        assert_eq!(parse_tags(&json!(fifty)).unwrap().len(), 25);
        assert!(parse_tags(&json!("a")).is_err());
    }
}
