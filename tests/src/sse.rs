//! A client for the API's Server-Sent Events feed (`GET /feed/stream`), for the end-to-end
//! tests and the live benchmark: frames parsed as they arrive, comments (heartbeats) skipped.

use std::time::Instant;

use serde_json::Value;

/// One SSE frame that carries an event.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    /// The feed sequence (`id:`); absent on `end` frames.
    pub id: Option<i64>,
    pub event: String,
    /// `data:` parsed as JSON (`Null` when it is not JSON).
    pub data: Value,
}

pub struct SseStream {
    resp: reqwest::Response,
    buf: String,
}

impl SseStream {
    /// Opens `GET {base}/feed/stream` as `token`, resuming after `last_event_id` if given.
    /// Fails on a transport error or a status other than 200.
    pub async fn open(
        http: &reqwest::Client,
        base: &str,
        token: &str,
        last_event_id: Option<i64>,
    ) -> Result<Self, String> {
        let mut req = http.get(format!("{base}/feed/stream")).bearer_auth(token);
        if let Some(id) = last_event_id {
            req = req.header("Last-Event-ID", id.to_string());
        }
        let resp = req.send().await.map_err(|e| e.to_string())?;
        if resp.status() != 200 {
            return Err(format!("GET /feed/stream answered {}", resp.status()));
        }
        Ok(Self {
            resp,
            buf: String::new(),
        })
    }

    /// The next event frame, or `None` at `deadline` or when the stream ends.
    pub async fn next_frame(&mut self, deadline: Instant) -> Option<Frame> {
        loop {
            while let Some(end) = self.buf.find("\n\n") {
                let raw: String = self.buf.drain(..end + 2).collect();
                if let Some(frame) = parse(&raw) {
                    return Some(frame);
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let chunk = tokio::time::timeout(left, self.resp.chunk())
                .await
                .ok()?
                .ok()??;
            self.buf.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// Frames until `until` holds for what arrived, the stream ends, or `deadline`.
    pub async fn frames_until(
        &mut self,
        deadline: Instant,
        until: impl Fn(&[Frame]) -> bool,
    ) -> Vec<Frame> {
        let mut out = Vec::new();
        while !until(&out) {
            match self.next_frame(deadline).await {
                Some(f) => out.push(f),
                None => break,
            }
        }
        out
    }
}

/// One frame's fields; `None` for a frame without an event (a comment).
fn parse(raw: &str) -> Option<Frame> {
    let (mut id, mut event, mut data) = (None, None, String::new());
    for line in raw.lines() {
        if let Some(v) = line.strip_prefix("id:") {
            id = v.trim().parse::<i64>().ok();
        } else if let Some(v) = line.strip_prefix("event:") {
            event = Some(v.trim().to_owned());
        } else if let Some(v) = line.strip_prefix("data:") {
            if !data.is_empty() {
                data.push('\n');
            }
            data.push_str(v.strip_prefix(' ').unwrap_or(v));
        }
    }
    Some(Frame {
        id,
        event: event?,
        data: serde_json::from_str(&data).unwrap_or(Value::Null),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_and_comments() {
        assert_eq!(parse(":heartbeat\n\n"), None);
        let f = parse("id: 7\nevent: TaskCreated\ndata: {\"a\":1}\n\n").unwrap();
        assert_eq!(f.id, Some(7));
        assert_eq!(f.event, "TaskCreated");
        assert_eq!(f.data["a"], 1);
    }
}
