//! Offset bookkeeping, kept apart from the Kafka loop so it can be tested without a broker.
//!
//! The book answers one question: "which offset may be committed for this partition now?" It
//! holds, per assigned partition:
//!
//! * `done`: one past the highest offset whose effect is durable (the Kafka convention: the
//!   committed offset is the next message to read). A partition is processed strictly in order
//!   by one task, so everything below `done` is durable too.
//! * `committed`: a cache, not the broker's truth: the highest committed offset *this process*
//!   has seen for the partition during this assignment, from two sources only: the
//!   confirmations of its own commits (synchronous results, commit callbacks) and the group's
//!   committed offsets it reads back periodically (`Shared::refresh_lag`, every lag interval).
//!   Nothing is read at assignment, so right after an assignment it is `None` until the first
//!   confirmation or read-back, and a commit made meanwhile by someone else (another member
//!   holding the partition by mistake, an admin resetting offsets) is invisible until the next
//!   read-back.
//!
//! Two rules make commits safe:
//!
//! 1. Only `done` offsets are ever offered for commit, never a fetch position, so prefetched
//!    but unprocessed messages are never committed (librdkafka's default auto offset store
//!    does exactly that).
//! 2. An offset is offered only when it is strictly above `committed`, and `done` only grows,
//!    so this process never commits an offset below one it already committed or saw committed
//!    in this assignment (librdkafka #2782: offsets stored before a revoke being committed
//!    after the reassignment). Moving backwards past the group's offset is prevented by the
//!    assignment itself: a new assignment resumes from the broker's committed offset, so every
//!    `done` of it starts above that offset.
//!
//! Each assignment of a partition gets a fresh *epoch*. A partition task reports progress with
//! its epoch; a late report from a task of an earlier assignment (revoked, then the partition
//! came back) is ignored instead of leaking into the new assignment's state.

use std::collections::HashMap;
use std::fmt;

/// One partition of one topic.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

impl TopicPartition {
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        Self {
            topic: topic.into(),
            partition,
        }
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}]", self.topic, self.partition)
    }
}

/// Identifies one assignment of one partition (see the module docs).
pub type Epoch = u64;

#[derive(Debug, Clone, Copy)]
struct PartitionState {
    epoch: Epoch,
    done: Option<i64>,
    committed: Option<i64>,
    /// The highest offset handed to an asynchronous commit and not yet known to be committed.
    /// rust-rdkafka reports no result for manual async commits, so confirmation comes from
    /// reading the group's committed offsets (`confirm_from_broker`), which also clears this so
    /// that a silently failed commit is requested again.
    requested: Option<i64>,
    /// Messages marked done since the last commit was offered; drives the "every N messages"
    /// commit trigger.
    since_offer: u64,
}

/// Per-partition done and committed offsets for the current assignment.
#[derive(Debug, Default)]
pub struct OffsetBook {
    next_epoch: Epoch,
    partitions: HashMap<TopicPartition, PartitionState>,
}

impl OffsetBook {
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts fresh state for a newly assigned partition and returns its epoch. Any state of an
    /// earlier assignment of the same partition is discarded (`committed` starts unknown): the
    /// consumer resumes from the broker's committed offset, which is the only truth that
    /// survives a rebalance.
    pub fn assign(&mut self, tp: TopicPartition) -> Epoch {
        self.next_epoch += 1;
        let epoch = self.next_epoch;
        self.partitions.insert(
            tp,
            PartitionState {
                epoch,
                done: None,
                committed: None,
                requested: None,
                since_offer: 0,
            },
        );
        epoch
    }

    /// Forgets a partition (revoked, or poisoned so that nothing more is committed for it).
    /// Returns whether it was assigned.
    pub fn revoke(&mut self, tp: &TopicPartition) -> bool {
        self.partitions.remove(tp).is_some()
    }

    pub fn is_assigned(&self, tp: &TopicPartition) -> bool {
        self.partitions.contains_key(tp)
    }

    /// Records that every message of `tp` below `next_offset` has a durable effect. Returns
    /// false (and changes nothing) when the partition is no longer assigned or the report
    /// comes from a task of an earlier assignment.
    pub fn mark_done(&mut self, tp: &TopicPartition, epoch: Epoch, next_offset: i64) -> bool {
        match self.partitions.get_mut(tp) {
            Some(state) if state.epoch == epoch => {
                state.done = Some(state.done.map_or(next_offset, |d| d.max(next_offset)));
                state.since_offer += 1;
                true
            }
            _ => false,
        }
    }

    /// Records a committed offset this process saw (the confirmation of its own commit, or a
    /// value read back from the group) in the `committed` cache. Never lowers it.
    pub fn confirm_committed(&mut self, tp: &TopicPartition, offset: i64) {
        if let Some(state) = self.partitions.get_mut(tp) {
            state.committed = Some(state.committed.map_or(offset, |c| c.max(offset)));
        }
    }

    /// The group's committed offset, read back from the broker: raises the cache like
    /// `confirm_committed` and forgets outstanding async requests, so any offset the broker
    /// does not have yet is requested again.
    pub fn confirm_from_broker(&mut self, tp: &TopicPartition, offset: i64) {
        self.confirm_committed(tp, offset);
        if let Some(state) = self.partitions.get_mut(tp) {
            state.requested = None;
        }
    }

    /// Like `to_commit`, minus what an earlier async commit already requested: the periodic
    /// commit does not resend the same offsets every tick.
    pub fn to_request(&self) -> Vec<(TopicPartition, i64)> {
        self.to_commit(None)
            .into_iter()
            .filter(|(tp, offset)| {
                self.partitions
                    .get(tp)
                    .and_then(|s| s.requested)
                    .is_none_or(|r| *offset > r)
            })
            .collect()
    }

    /// Notes offsets handed to an asynchronous commit.
    pub fn mark_requested(&mut self, offsets: &[(TopicPartition, i64)]) {
        for (tp, offset) in offsets {
            if let Some(state) = self.partitions.get_mut(tp) {
                state.requested = Some(state.requested.map_or(*offset, |r| r.max(*offset)));
            }
        }
    }

    /// The offsets that may be committed now: for each partition (restricted to `only` when
    /// given), its `done` offset when it is above the committed one. Sorted for stable output.
    pub fn to_commit(&self, only: Option<&[TopicPartition]>) -> Vec<(TopicPartition, i64)> {
        let mut out: Vec<(TopicPartition, i64)> = self
            .partitions
            .iter()
            .filter(|(tp, _)| only.is_none_or(|set| set.contains(tp)))
            .filter_map(|(tp, state)| match (state.done, state.committed) {
                (Some(done), Some(committed)) if done <= committed => None,
                (Some(done), _) => Some((tp.clone(), done)),
                (None, _) => None,
            })
            .collect();
        out.sort();
        out
    }

    /// Notes that the current `to_commit` offsets were handed to the client; resets the
    /// "every N messages" counter.
    pub fn offered(&mut self) {
        for state in self.partitions.values_mut() {
            state.since_offer = 0;
        }
    }

    /// Messages marked done since commits were last offered, over all partitions.
    pub fn done_since_offer(&self) -> u64 {
        self.partitions.values().map(|s| s.since_offer).sum()
    }

    pub fn committed(&self, tp: &TopicPartition) -> Option<i64> {
        self.partitions.get(tp).and_then(|s| s.committed)
    }

    pub fn done(&self, tp: &TopicPartition) -> Option<i64> {
        self.partitions.get(tp).and_then(|s| s.done)
    }

    pub fn epoch(&self, tp: &TopicPartition) -> Option<Epoch> {
        self.partitions.get(tp).map(|s| s.epoch)
    }

    /// Assigned partitions, sorted.
    pub fn assigned(&self) -> Vec<TopicPartition> {
        let mut out: Vec<TopicPartition> = self.partitions.keys().cloned().collect();
        out.sort();
        out
    }
}

/// Consumer lag from a high watermark and the committed offset; `None` committed (nothing
/// committed yet) counts from the low watermark. Never negative: watermarks and commits are
/// read at different instants.
pub fn lag(high_watermark: i64, low_watermark: i64, committed: Option<i64>) -> i64 {
    let base = committed.unwrap_or(low_watermark).max(low_watermark);
    (high_watermark - base).max(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(p: i32) -> TopicPartition {
        TopicPartition::new("t", p)
    }

    #[test]
    fn nothing_to_commit_until_something_is_done() {
        let mut book = OffsetBook::new();
        book.assign(tp(0));
        assert!(book.to_commit(None).is_empty());
    }

    #[test]
    fn commits_one_past_the_highest_done_offset() {
        let mut book = OffsetBook::new();
        let e = book.assign(tp(0));
        assert!(book.mark_done(&tp(0), e, 5));
        assert!(book.mark_done(&tp(0), e, 6));
        assert_eq!(book.to_commit(None), vec![(tp(0), 6)]);
    }

    #[test]
    fn done_never_moves_backwards() {
        let mut book = OffsetBook::new();
        let e = book.assign(tp(0));
        book.mark_done(&tp(0), e, 10);
        book.mark_done(&tp(0), e, 7);
        assert_eq!(book.done(&tp(0)), Some(10));
        assert_eq!(book.to_commit(None), vec![(tp(0), 10)]);
    }

    #[test]
    fn never_offers_an_offset_at_or_below_the_committed_one() {
        let mut book = OffsetBook::new();
        let e = book.assign(tp(0));
        book.mark_done(&tp(0), e, 10);
        book.confirm_committed(&tp(0), 10);
        assert!(book.to_commit(None).is_empty());
        // A confirmation for an older async commit arriving late must not lower the cache.
        book.confirm_committed(&tp(0), 4);
        assert_eq!(book.committed(&tp(0)), Some(10));
        assert!(book.to_commit(None).is_empty());
        // The group already had 12 (read back from the broker): done 11 is not offered.
        book.confirm_committed(&tp(0), 12);
        book.mark_done(&tp(0), e, 11);
        assert!(book.to_commit(None).is_empty());
        book.mark_done(&tp(0), e, 13);
        assert_eq!(book.to_commit(None), vec![(tp(0), 13)]);
    }

    #[test]
    fn stale_epoch_reports_are_ignored() {
        let mut book = OffsetBook::new();
        let old = book.assign(tp(0));
        book.revoke(&tp(0));
        // Revoked: a late report from the old task changes nothing.
        assert!(!book.mark_done(&tp(0), old, 50));
        let new = book.assign(tp(0));
        assert_ne!(old, new);
        assert!(!book.mark_done(&tp(0), old, 50));
        assert!(book.to_commit(None).is_empty());
        assert!(book.mark_done(&tp(0), new, 3));
        assert_eq!(book.to_commit(None), vec![(tp(0), 3)]);
    }

    #[test]
    fn reassignment_starts_fresh() {
        let mut book = OffsetBook::new();
        let e = book.assign(tp(0));
        book.mark_done(&tp(0), e, 9);
        book.confirm_committed(&tp(0), 9);
        book.assign(tp(0));
        assert_eq!(book.done(&tp(0)), None);
        assert_eq!(book.committed(&tp(0)), None);
    }

    #[test]
    fn to_commit_can_be_restricted_to_revoked_partitions() {
        let mut book = OffsetBook::new();
        let e0 = book.assign(tp(0));
        let e1 = book.assign(tp(1));
        let e2 = book.assign(tp(2));
        book.mark_done(&tp(0), e0, 1);
        book.mark_done(&tp(1), e1, 2);
        book.mark_done(&tp(2), e2, 3);
        assert_eq!(
            book.to_commit(Some(&[tp(2), tp(0)])),
            vec![(tp(0), 1), (tp(2), 3)]
        );
        assert_eq!(book.to_commit(None).len(), 3);
    }

    #[test]
    fn revoked_partitions_are_not_committed() {
        let mut book = OffsetBook::new();
        let e = book.assign(tp(0));
        book.mark_done(&tp(0), e, 4);
        assert!(book.revoke(&tp(0)));
        assert!(!book.revoke(&tp(0)));
        assert!(book.to_commit(None).is_empty());
        book.confirm_committed(&tp(0), 4);
        assert_eq!(book.committed(&tp(0)), None);
    }

    #[test]
    fn counts_messages_since_the_last_offer() {
        let mut book = OffsetBook::new();
        let e0 = book.assign(tp(0));
        let e1 = book.assign(tp(1));
        book.mark_done(&tp(0), e0, 1);
        book.mark_done(&tp(0), e0, 2);
        book.mark_done(&tp(1), e1, 1);
        assert_eq!(book.done_since_offer(), 3);
        book.offered();
        assert_eq!(book.done_since_offer(), 0);
        // Offering does not count as committing.
        assert_eq!(book.to_commit(None).len(), 2);
    }

    #[test]
    fn async_requests_are_not_resent_until_the_broker_is_read_back() {
        let mut book = OffsetBook::new();
        let e = book.assign(tp(0));
        book.mark_done(&tp(0), e, 5);
        let offsets = book.to_request();
        assert_eq!(offsets, vec![(tp(0), 5)]);
        book.mark_requested(&offsets);
        assert!(book.to_request().is_empty());
        // A synchronous commit (revoke, shutdown) still covers unconfirmed requests.
        assert_eq!(book.to_commit(None), vec![(tp(0), 5)]);
        // More progress is requested again.
        book.mark_done(&tp(0), e, 6);
        assert_eq!(book.to_request(), vec![(tp(0), 6)]);
        book.mark_requested(&[(tp(0), 6)]);
        // The broker only has 5 (the request for 6 was lost): 6 is requested again.
        book.confirm_from_broker(&tp(0), 5);
        assert_eq!(book.committed(&tp(0)), Some(5));
        assert_eq!(book.to_request(), vec![(tp(0), 6)]);
        book.confirm_from_broker(&tp(0), 6);
        assert!(book.to_request().is_empty());
        assert!(book.to_commit(None).is_empty());
    }

    #[test]
    fn lag_is_high_watermark_minus_committed() {
        assert_eq!(lag(100, 0, Some(40)), 60);
        assert_eq!(lag(100, 0, None), 100);
        assert_eq!(lag(100, 20, None), 80);
        // Retention removed messages below the committed offset.
        assert_eq!(lag(100, 50, Some(40)), 50);
        // Commit observed after the watermark read.
        assert_eq!(lag(100, 0, Some(105)), 0);
    }
}
