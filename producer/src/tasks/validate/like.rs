//! LIKE escaping for the `q` search.

/// A `%needle%` pattern for `ILIKE ... ESCAPE '\'` with `\`, `%` and `_`
/// escaped, so a search for "50%" matches the text "50%" and not everything
/// starting with "50". Only [`LikePattern::contains`] builds one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LikePattern(String);

impl LikePattern {
    pub fn contains(needle: &str) -> Self {
        let mut out = String::with_capacity(needle.len() + 2);
        out.push('%');
        for c in needle.chars() {
            if matches!(c, '\\' | '%' | '_') {
                out.push('\\');
            }
            out.push(c);
        }
        out.push('%');
        Self(out)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// `%needle%`, escaped; see [`LikePattern`].
pub fn like_pattern(needle: &str) -> String {
    LikePattern::contains(needle).into_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_pattern_escapes() {
        assert_eq!(like_pattern("50%_a\\b"), "%50\\%\\_a\\\\b%");
        assert_eq!(LikePattern::contains("").as_str(), "%%");
    }
}
