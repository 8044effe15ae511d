//! The relay's rules as plain functions: which rows a pass may send, and what
//! becomes of a row that failed. The relay's SQL implements [`select_heads`];
//! a database test checks the two agree, and the property tests below check
//! the rule itself against interleavings of writers and relay passes.

use std::{collections::HashSet, time::Duration};

use crate::backoff::Backoff;

/// The rows of one outbox key (topic + partition key, i.e. one task's events
/// on one topic) must reach the broker in id order.
pub type OrderKey = (String, String);

/// What the selection needs to know of a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub id: i64,
    pub key: OrderKey,
    /// Set aside by the relay: holds its key back until an operator retries it.
    pub parked: bool,
    /// False while the row waits out a retry delay (`not_before` in the future).
    pub ready: bool,
}

/// The ids one pass may send: the lowest-id row of each key, if it is neither
/// parked nor waiting, lowest ids first, at most `limit`.
///
/// Taking one row per key makes per-task order independent of the producer:
/// a task's row N+1 is never in flight while row N is unacknowledged, so no
/// retry, timeout or failover can land N+1 before N. A parked or waiting head
/// blocks only its own key. `rows` must be in id order (all visible rows).
pub fn select_heads(rows: &[Candidate], limit: usize) -> Vec<i64> {
    let mut seen: HashSet<&OrderKey> = HashSet::new();
    let mut heads = Vec::new();
    for row in rows {
        if heads.len() >= limit {
            break;
        }
        if !seen.insert(&row.key) {
            continue;
        }
        if !row.parked && row.ready {
            heads.push(row.id);
        }
    }
    heads
}

/// Why a row could not be handed to the producer or was not acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowFailure {
    /// May pass later without anyone doing anything: registry or broker
    /// unavailable, timed out, unauthorised (an expiring credential).
    Transient(String),
    /// Refused for this row's content, e.g. the registry rejects the schema
    /// (409/422): an operator can fix it (compatibility settings), so it is
    /// retried a while before it is parked.
    Refused(String),
    /// No retry of this binary can publish it: the payload does not decode
    /// into an event (written by another version) or does not fit its schema.
    Unencodable(String),
}

impl RowFailure {
    pub fn reason(&self) -> &str {
        match self {
            RowFailure::Transient(r) | RowFailure::Refused(r) | RowFailure::Unencodable(r) => r,
        }
    }

    /// A bounded label for metrics.
    pub fn class(&self) -> &'static str {
        match self {
            RowFailure::Transient(_) => "transient",
            RowFailure::Refused(_) => "refused",
            RowFailure::Unencodable(_) => "unencodable",
        }
    }
}

/// What the relay does with a failed row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Keep it as its key's head and try again after the delay.
    RetryAfter(Duration),
    /// Set it aside with its reason; its key waits for an operator.
    Park,
}

/// `attempts` counts the failures of this row so far, this one included.
/// Transient failures are retried forever: parking a row because the
/// registry was down would stall a task for nothing.
pub fn disposition(
    failure: &RowFailure,
    attempts: u32,
    park_after: u32,
    backoff: &Backoff,
) -> Disposition {
    match failure {
        RowFailure::Unencodable(_) => Disposition::Park,
        RowFailure::Refused(_) if attempts >= park_after => Disposition::Park,
        RowFailure::Refused(_) | RowFailure::Transient(_) => {
            Disposition::RetryAfter(backoff.next_delay(attempts))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};

    use proptest::prelude::*;

    use super::*;

    fn key(k: u8) -> OrderKey {
        ("t".to_owned(), format!("task-{k}"))
    }

    fn cand(id: i64, k: u8) -> Candidate {
        Candidate {
            id,
            key: key(k),
            parked: false,
            ready: true,
        }
    }

    #[test]
    fn one_head_per_key_in_id_order() {
        let rows = vec![cand(1, 1), cand(2, 1), cand(3, 2), cand(4, 3), cand(5, 2)];
        assert_eq!(select_heads(&rows, 10), vec![1, 3, 4]);
        assert_eq!(select_heads(&rows, 2), vec![1, 3]);
    }

    #[test]
    fn a_parked_or_waiting_head_blocks_only_its_key() {
        let mut rows = vec![cand(1, 1), cand(2, 1), cand(3, 2), cand(4, 2), cand(5, 3)];
        rows[0].parked = true;
        rows[2].ready = false;
        assert_eq!(select_heads(&rows, 10), vec![5]);
    }

    #[test]
    fn blocked_rows_at_the_lowest_ids_do_not_starve_the_rest() {
        let mut rows: Vec<Candidate> = (1..=600)
            .map(|i| Candidate {
                parked: true,
                ..cand(i, (i % 200) as u8)
            })
            .collect();
        rows.extend((601..=700).map(|i| Candidate {
            key: ("t".to_owned(), format!("other-{i}")),
            ..cand(i, 0)
        }));
        let heads = select_heads(&rows, 500);
        assert_eq!(heads.len(), 100);
        assert_eq!(heads.first(), Some(&601));
    }

    #[test]
    fn dispositions() {
        let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
        let un = RowFailure::Unencodable("x".into());
        assert_eq!(disposition(&un, 1, 5, &b), Disposition::Park);
        let refused = RowFailure::Refused("409".into());
        assert!(matches!(
            disposition(&refused, 4, 5, &b),
            Disposition::RetryAfter(_)
        ));
        assert_eq!(disposition(&refused, 5, 5, &b), Disposition::Park);
        let down = RowFailure::Transient("503".into());
        assert!(matches!(
            disposition(&down, 1_000, 5, &b),
            Disposition::RetryAfter(d) if d <= Duration::from_secs(10)
        ));
    }

    /// A model of the whole pipeline: writers that lock a task, take the next
    /// outbox id and commit in any order (late commits included); relay passes
    /// that select with [`select_heads`] over the committed rows, hand the
    /// heads to a broker that may fail, time out after landing, or park rows;
    /// an operator who retries parked rows. Checked: each task's versions
    /// appear on the topic in increasing order (a duplicate only directly
    /// repeats the latest version), and in the end every version appears.
    #[derive(Debug, Clone)]
    enum Step {
        /// A writer of task `t` takes its lock, its next version and the next id.
        Begin(u8),
        /// The `n`-th open transaction (mod the number open) commits.
        Commit(usize),
        /// A relay pass; each sent row's fate is drawn from `fates`.
        Pass(Vec<Fate>),
        /// An operator retries every parked row.
        RetryParked,
    }

    #[derive(Debug, Clone, Copy)]
    enum Fate {
        Acked,
        /// Lost before the broker: not on the topic, row stays.
        Failed,
        /// Landed, but the report said it failed (timeout after landing).
        LandedUnacked,
        /// The row cannot be encoded: parked.
        Parked,
        /// A retry delay: skipped this pass.
        Waits,
    }

    fn fate() -> impl Strategy<Value = Fate> {
        prop_oneof![
            6 => Just(Fate::Acked),
            1 => Just(Fate::Failed),
            1 => Just(Fate::LandedUnacked),
            1 => Just(Fate::Parked),
            1 => Just(Fate::Waits),
        ]
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            4 => (0u8..6).prop_map(Step::Begin),
            4 => (0usize..8).prop_map(Step::Commit),
            3 => prop::collection::vec(fate(), 0..12).prop_map(Step::Pass),
            1 => Just(Step::RetryParked),
        ]
    }

    #[derive(Debug, Clone)]
    struct Row {
        id: i64,
        task: u8,
        version: u64,
        parked: bool,
    }

    #[derive(Default)]
    struct World {
        next_id: i64,
        /// The version last committed (or being written) per task.
        versions: HashMap<u8, u64>,
        /// Tasks whose row lock a writer holds, and that writer's row.
        open: Vec<Row>,
        /// Committed, unpublished rows by id.
        outbox: BTreeMap<i64, Row>,
        topic: Vec<(u8, u64)>,
    }

    impl World {
        fn begin(&mut self, task: u8) {
            // The row lock: a second writer of the same task waits, which the
            // model expresses by not starting it.
            if self.open.iter().any(|r| r.task == task) {
                return;
            }
            let version = self.versions.get(&task).copied().unwrap_or(0) + 1;
            self.versions.insert(task, version);
            self.next_id += 1;
            self.open.push(Row {
                id: self.next_id,
                task,
                version,
                parked: false,
            });
        }

        fn commit(&mut self, n: usize) {
            if self.open.is_empty() {
                return;
            }
            let row = self.open.remove(n % self.open.len());
            self.outbox.insert(row.id, row);
        }

        fn pass(&mut self, fates: &[Fate], limit: usize) {
            let rows: Vec<Candidate> = self
                .outbox
                .values()
                .map(|r| Candidate {
                    id: r.id,
                    key: key(r.task),
                    parked: r.parked,
                    ready: true,
                })
                .collect();
            let heads = select_heads(&rows, limit);
            for (i, id) in heads.into_iter().enumerate() {
                let fate = fates.get(i).copied().unwrap_or(Fate::Acked);
                let Some(row) = self.outbox.get_mut(&id) else {
                    continue;
                };
                match fate {
                    Fate::Acked => {
                        self.topic.push((row.task, row.version));
                        self.outbox.remove(&id);
                    }
                    Fate::LandedUnacked => self.topic.push((row.task, row.version)),
                    Fate::Failed | Fate::Waits => {}
                    Fate::Parked => row.parked = true,
                }
            }
        }

        fn check_order(&self) -> Result<(), String> {
            let mut last: HashMap<u8, u64> = HashMap::new();
            for &(task, version) in &self.topic {
                let prev = last.get(&task).copied().unwrap_or(0);
                if version != prev && version != prev + 1 {
                    return Err(format!(
                        "task {task}: version {version} after {prev} in {:?}",
                        self.topic
                    ));
                }
                last.insert(task, version);
            }
            Ok(())
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        #[test]
        fn per_task_order_holds_under_any_interleaving(
            steps in prop::collection::vec(step(), 1..120),
            limit in 1usize..6,
        ) {
            let mut world = World::default();
            for s in &steps {
                match s {
                    Step::Begin(t) => world.begin(*t),
                    Step::Commit(n) => world.commit(*n),
                    Step::Pass(fates) => world.pass(fates, limit),
                    Step::RetryParked => world.outbox.values_mut().for_each(|r| r.parked = false),
                }
                prop_assert!(world.check_order().is_ok(), "{:?}", world.check_order());
            }
            // Drain: every writer commits, the operator retries, passes succeed.
            while !world.open.is_empty() {
                world.commit(0);
            }
            world.outbox.values_mut().for_each(|r| r.parked = false);
            while !world.outbox.is_empty() {
                world.pass(&[], limit);
            }
            prop_assert!(world.check_order().is_ok(), "{:?}", world.check_order());
            for (task, version) in &world.versions {
                let max = world.topic.iter().filter(|(t, _)| t == task).map(|(_, v)| *v).max();
                prop_assert_eq!(max, Some(*version));
            }
        }
    }
}
