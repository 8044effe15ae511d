//! Where a stream starts: the resume decision, pure.

/// Where a new stream starts sending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Send every entry with a seq above this one.
    After(i64),
    /// Tell the client to reload (`event: resync`), then send the entries above `after`
    /// (the current head).
    Resync { after: i64, reason: ResyncReason },
}

impl Start {
    /// The seq the stream continues after.
    pub fn after(self) -> i64 {
        match self {
            Start::After(n) | Start::Resync { after: n, .. } => n,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResyncReason {
    /// Entries after the client's position were pruned (feed retention).
    Pruned,
    /// The client's position is beyond the feed's head: not a position of this feed.
    UnknownPosition,
}

impl ResyncReason {
    pub fn as_str(self) -> &'static str {
        match self {
            ResyncReason::Pruned => "pruned",
            ResyncReason::UnknownPosition => "unknown_position",
        }
    }
}

/// The start for a client that last received `last_event_id` (`None`: a fresh client, which
/// gets only what comes next), given the user's head `(last_seq, pruned_through)`.
///
/// Entries at or below `pruned_through` are gone, so a client that last saw a seq below it
/// has missed some: it must reload. A client that saw exactly `pruned_through` missed
/// nothing. A position above the head was never handed out by this feed (every seq sent is
/// at or below the head, which only grows), so resuming from it could skip entries.
pub fn start_position(last_event_id: Option<i64>, last_seq: i64, pruned_through: i64) -> Start {
    match last_event_id {
        None => Start::After(last_seq),
        Some(n) if n < pruned_through => Start::Resync {
            after: last_seq,
            reason: ResyncReason::Pruned,
        },
        Some(n) if n > last_seq => Start::Resync {
            after: last_seq,
            reason: ResyncReason::UnknownPosition,
        },
        Some(n) => Start::After(n),
    }
}

/// The `Last-Event-ID` header: absent or empty (what `EventSource` sends before any event
/// with an id) is `None`; otherwise a non-negative integer, the `id` of an entry sent.
pub fn parse_last_event_id(raw: Option<&[u8]>) -> Result<Option<i64>, &'static str> {
    let Some(raw) = raw else { return Ok(None) };
    let text = std::str::from_utf8(raw)
        .map_err(|_| "Last-Event-ID must be the id of an event this stream sent")?
        .trim();
    if text.is_empty() {
        return Ok(None);
    }
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err("Last-Event-ID must be the id of an event this stream sent");
    }
    text.parse::<i64>()
        .map(Some)
        .map_err(|_| "Last-Event-ID must be the id of an event this stream sent")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_streams_start_at_the_head() {
        assert_eq!(start_position(None, 0, 0), Start::After(0));
        assert_eq!(start_position(None, 42, 10), Start::After(42));
    }

    #[test]
    fn a_resume_inside_the_retained_feed_continues_after_the_id() {
        assert_eq!(start_position(Some(7), 42, 0), Start::After(7));
        assert_eq!(start_position(Some(42), 42, 0), Start::After(42));
        // Saw exactly the last pruned entry: nothing it needs is gone.
        assert_eq!(start_position(Some(10), 42, 10), Start::After(10));
    }

    #[test]
    fn a_resume_below_the_pruned_mark_or_beyond_the_head_resyncs() {
        assert_eq!(
            start_position(Some(9), 42, 10),
            Start::Resync {
                after: 42,
                reason: ResyncReason::Pruned
            }
        );
        assert_eq!(
            start_position(Some(0), 42, 10),
            Start::Resync {
                after: 42,
                reason: ResyncReason::Pruned
            }
        );
        assert_eq!(
            start_position(Some(43), 42, 0),
            Start::Resync {
                after: 42,
                reason: ResyncReason::UnknownPosition
            }
        );
        assert_eq!(start_position(Some(3), 0, 0).after(), 0);
    }

    #[test]
    fn last_event_id_parsing() {
        assert_eq!(parse_last_event_id(None), Ok(None));
        assert_eq!(parse_last_event_id(Some(b"")), Ok(None));
        assert_eq!(parse_last_event_id(Some(b"  ")), Ok(None));
        assert_eq!(parse_last_event_id(Some(b"17")), Ok(Some(17)));
        assert_eq!(parse_last_event_id(Some(b" 0 ")), Ok(Some(0)));
        for bad in [
            &b"-1"[..],
            b"+1",
            b"1.0",
            b"abc",
            b"99999999999999999999",
            b"\xff",
        ] {
            assert!(parse_last_event_id(Some(bad)).is_err(), "{bad:?}");
        }
    }
}
