//! The `GET /tasks` query.

use chrono::{DateTime, Utc};
use taskflow_schemas::{Priority, TaskStatus};

use super::{
    instant::parse_instant,
    page::{parse_cursor, parse_limit, Cursor, DEFAULT_LIMIT},
    text::{parse_tag, reject_nul, MAX_TAGS},
};
use crate::{
    problem::FieldError,
    tasks::model::{parse_priority, parse_status},
};

pub const Q_MAX_CHARS: usize = 200;

/// Validated `GET /tasks` query.
#[derive(Debug, Clone, PartialEq)]
pub struct ListQuery {
    pub status: Option<TaskStatus>,
    /// Every tag must be present (several `tag=` parameters AND together).
    pub tags: Vec<String>,
    pub priority: Option<Priority>,
    /// `due_at > due_after`.
    pub due_after: Option<DateTime<Utc>>,
    /// `due_at < due_before`.
    pub due_before: Option<DateTime<Utc>>,
    pub q: Option<String>,
    /// Instances of this recurring series only (the web page's series view).
    pub series_id: Option<uuid::Uuid>,
    pub limit: i64,
    pub cursor: Option<Cursor>,
}

pub fn parse_list_query(pairs: &[(String, String)]) -> Result<ListQuery, Vec<FieldError>> {
    let mut errors = Vec::new();
    let mut q = ListQuery {
        status: None,
        tags: Vec::new(),
        priority: None,
        due_after: None,
        due_before: None,
        q: None,
        series_id: None,
        limit: DEFAULT_LIMIT,
        cursor: None,
    };
    for (key, value) in pairs {
        match key.as_str() {
            "status" => match parse_status(value) {
                Some(s) => q.status = Some(s),
                None => errors.push(FieldError::new("status", "must be open or completed")),
            },
            "tag" => match parse_tag(value) {
                Err(e) => errors.push(FieldError::new("tag", e)),
                Ok(_) if q.tags.len() >= MAX_TAGS => {
                    errors.push(FieldError::new("tag", format!("at most {MAX_TAGS} tags")))
                }
                Ok(t) => q.tags.push(t),
            },
            "priority" => match parse_priority(value) {
                Some(p) => q.priority = Some(p),
                None => errors.push(FieldError::new(
                    "priority",
                    "must be one of low, medium, high, urgent",
                )),
            },
            "due_after" => match parse_instant(value) {
                Ok(t) => q.due_after = Some(t),
                Err(e) => errors.push(FieldError::new("due_after", e)),
            },
            "due_before" => match parse_instant(value) {
                Ok(t) => q.due_before = Some(t),
                Err(e) => errors.push(FieldError::new("due_before", e)),
            },
            "q" => {
                let t = value.trim();
                if let Err(e) = reject_nul(t) {
                    errors.push(FieldError::new("q", e));
                } else if value.chars().count() > Q_MAX_CHARS {
                    errors.push(FieldError::new(
                        "q",
                        format!("must be at most {Q_MAX_CHARS} characters"),
                    ));
                } else if !t.is_empty() {
                    q.q = Some(t.to_owned());
                }
            }
            "series_id" => match uuid::Uuid::parse_str(value.trim()) {
                Ok(id) => q.series_id = Some(id),
                Err(_) => errors.push(FieldError::new("series_id", "must be a UUID")),
            },
            "limit" => match parse_limit(value) {
                Ok(n) => q.limit = n,
                Err(e) => errors.push(e),
            },
            "cursor" => match parse_cursor(value) {
                Ok(c) => q.cursor = Some(c),
                Err(e) => errors.push(e),
            },
            other => errors.push(FieldError::new(other, "unknown query parameter")),
        }
    }
    if errors.is_empty() {
        Ok(q)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields_of(errs: &[FieldError]) -> Vec<&str> {
        errs.iter().map(|e| e.field.as_str()).collect()
    }

    #[test]
    fn list_query_parsing() {
        let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        let q = parse_list_query(&pairs(&[
            ("status", "open"),
            ("tag", "a"),
            ("tag", "b"),
            ("limit", "200"),
            ("q", " 50% "),
            ("due_after", "2026-01-01T00:00:00Z"),
        ]))
        .unwrap();
        assert_eq!(q.status, Some(TaskStatus::Open));
        assert_eq!(q.tags, ["a", "b"]);
        assert_eq!(q.limit, 200);
        assert_eq!(q.q.as_deref(), Some("50%"));
        assert_eq!(parse_list_query(&[]).unwrap().limit, DEFAULT_LIMIT);
        let e = parse_list_query(&pairs(&[
            ("limit", "0"),
            ("cursor", "zzz"),
            ("due_before", "2026-01-01"),
            ("colour", "red"),
        ]))
        .unwrap_err();
        assert_eq!(fields_of(&e), ["limit", "cursor", "due_before", "colour"]);
        assert!(parse_list_query(&pairs(&[("limit", "201")])).is_err());
    }

    #[test]
    fn nul_in_text_filters_is_refused() {
        let p = |k: &str, v: &str| vec![(k.to_owned(), v.to_owned())];
        assert_eq!(
            fields_of(&parse_list_query(&p("q", "a\0b")).unwrap_err()),
            ["q"]
        );
        assert_eq!(
            fields_of(&parse_list_query(&p("tag", "\0")).unwrap_err()),
            ["tag"]
        );
    }
}
