//! Which limit an outcome belongs to, and how much overload comes whatever the limit.
//!
//! An *epoch* is the time one limit was in force. An outcome counts for the epoch its attempt
//! started in, however late it arrives: a throttle answered a second later, a timeout after
//! two, still judge the limit that sent the attempt, not whatever limit is in force when it
//! lands. Whether a limit is overloaded is judged against the overload share at lower
//! limits: background overload comes at every level alike, load-driven overload does not.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

/// One limit and what its attempts have reported so far.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Epoch {
    pub(super) start: Instant,
    pub(super) limit: usize,
    /// Attempts started in it that have ended, however.
    pub(super) attempts: u32,
    /// Of those, throttled or timed out.
    pub(super) overloads: u32,
    /// Found overloaded (more overloads than the background explains): cut for once.
    pub(super) overloaded: bool,
    /// `(attempts, overloads)` already judged not overloaded: a long epoch is judged a
    /// stretch at a time, each against the stretches before it.
    pub(super) judged: (u32, u32),
}

impl Epoch {
    /// An attempt of this epoch ended, overloaded or not.
    pub(super) fn record(&mut self, overload: bool) {
        self.attempts = self.attempts.saturating_add(1);
        if overload {
            self.overloads = self.overloads.saturating_add(1);
        }
    }
}

/// The recent epochs, oldest first.
#[derive(Debug, Clone, Default)]
pub(super) struct Epochs {
    list: VecDeque<Epoch>,
}

/// Epochs kept at most (a few seconds of one change per window at a 5 ms round trip).
const MOST_EPOCHS: usize = 4_096;

impl Epochs {
    /// A new limit takes effect at `at`. Epochs that ended more than `keep` ago are dropped:
    /// no attempt of theirs is expected any more.
    pub(super) fn begin(&mut self, at: Instant, limit: usize, keep: Duration) {
        while self.list.len() >= 2
            && (self.list.len() >= MOST_EPOCHS
                || at.saturating_duration_since(self.list[1].start) > keep)
        {
            self.list.pop_front();
        }
        self.list.push_back(Epoch {
            start: at,
            limit,
            attempts: 0,
            overloads: 0,
            overloaded: false,
            judged: (0, 0),
        });
    }

    /// The epoch an attempt that started at `started` belongs to, if still kept. An attempt
    /// started at the very moment a limit changed belongs to the new limit if it was a rise
    /// (the slots it opened are taken at once) and to the old one if it was a cut (nothing
    /// starts under a cut limit until enough attempts have ended: an attempt started at that
    /// moment took a slot freed just before).
    pub(super) fn containing(&mut self, started: Instant) -> Option<&mut Epoch> {
        let after = self.list.partition_point(|e| e.start <= started);
        let mut index = after.checked_sub(1)?;
        if index > 0 && self.list[index].start == started {
            let rise = self.list[index].limit > self.list[index - 1].limit;
            if !rise {
                index -= 1;
            }
        }
        self.list.get_mut(index)
    }

    /// The epoch in force now.
    pub(super) fn current(&self) -> Option<&Epoch> {
        self.list.back()
    }

    /// The epoch that started at `start`, to update its verdict.
    pub(super) fn starting_at(&mut self, start: Instant) -> Option<&mut Epoch> {
        self.list.iter_mut().rev().find(|e| e.start == start)
    }
}

/// How often each level of the limit has been overloaded: decayed counts per limit, so a
/// level's overload share can be compared with the share at lower levels. Background
/// overload (whatever the load) is the same at every level; load-driven overload is not.
#[derive(Debug, Clone)]
pub(super) struct Background {
    /// Per limit: (attempts, overloads, last updated), decayed by time.
    levels: BTreeMap<usize, (f64, f64, Instant)>,
    /// Limits found overloaded, and when: not a reference while that is recent.
    overloaded: BTreeMap<usize, Instant>,
    most: f64,
}

/// Counts halve every this long, so the estimate follows a backend that changes.
const HALF_LIFE: Duration = Duration::from_secs(20);
/// The reference share pools the lowest levels until this many attempts.
const REFERENCE_ATTEMPTS: f64 = 2_000.0;
/// The prior: one overload in `PRIOR_ATTEMPTS`, worth that many attempts of evidence.
const PRIOR_ATTEMPTS: f64 = 200.0;
/// A limit found overloaded is left out of the reference this long.
const OVERLOADED_MEMORY: Duration = Duration::from_secs(30);
/// Levels whose decayed attempts fall below this are forgotten.
const NEGLIGIBLE: f64 = 0.5;

fn decayed(value: f64, since: Instant, now: Instant) -> f64 {
    let elapsed = now.saturating_duration_since(since).as_secs_f64();
    value * 0.5f64.powf(elapsed / HALF_LIFE.as_secs_f64())
}

impl Background {
    /// `most`: the largest share that may count as background.
    pub(super) fn new(most: f64) -> Self {
        Self {
            levels: BTreeMap::new(),
            overloaded: BTreeMap::new(),
            most,
        }
    }

    /// An attempt started under `limit` ended, overloaded or not.
    pub(super) fn record(&mut self, limit: usize, overloaded: bool, now: Instant) {
        let (attempts, overloads, at) = self.levels.entry(limit).or_insert((0.0, 0.0, now));
        *attempts = decayed(*attempts, *at, now) + 1.0;
        *overloads = decayed(*overloads, *at, now) + f64::from(u8::from(overloaded));
        *at = now;
        if self.levels.len() > 256 {
            self.levels
                .retain(|_, (attempts, _, at)| decayed(*attempts, *at, now) >= NEGLIGIBLE);
        }
    }

    /// `limit` was found overloaded: its attempts say nothing about the background for a
    /// while.
    pub(super) fn overloaded_at(&mut self, limit: usize, now: Instant) {
        self.overloaded.insert(limit, now);
        self.overloaded
            .retain(|_, at| now.saturating_duration_since(*at) <= OVERLOADED_MEMORY);
    }

    /// The share of overloads whatever the load, apart from `excluded` (the attempts under
    /// test, at `limit`): the lowest levels pooled until they hold enough attempts (the less
    /// load, the less load-driven overload), with a weak prior; at most `most` (0 when
    /// `most` is 0: every overload counts). Levels above `limit` count when the lower ones
    /// hold too little: after a cut, the level left behind is the best evidence there is.
    pub(super) fn share_up_to(&self, limit: usize, excluded: (u32, u32), now: Instant) -> f64 {
        if self.most <= 0.0 {
            return 0.0;
        }
        self.reference_up_to(limit, excluded, now)
            .share()
            .min(self.most)
    }

    /// The largest share that may count as background.
    pub(super) fn most(&self) -> f64 {
        self.most
    }

    /// The evidence [`share_up_to`](Self::share_up_to) reads, the prior included (not
    /// capped at `most`): a test against it must allow for its own sampling error.
    pub(super) fn reference_up_to(
        &self,
        limit: usize,
        excluded: (u32, u32),
        now: Instant,
    ) -> Reference {
        let (mut attempts, mut overloads) = (0.0, 0.0);
        for (&level, &(a, o, at)) in &self.levels {
            if attempts >= REFERENCE_ATTEMPTS {
                break;
            }
            let found_overloaded = self
                .overloaded
                .get(&level)
                .is_some_and(|t| now.saturating_duration_since(*t) <= OVERLOADED_MEMORY);
            if found_overloaded && level != limit {
                continue;
            }
            let (mut a, mut o) = (decayed(a, at, now), decayed(o, at, now));
            if level == limit {
                a = (a - f64::from(excluded.0)).max(0.0);
                o = (o - f64::from(excluded.1)).max(0.0);
            }
            attempts += a;
            overloads += o;
        }
        Reference {
            attempts: attempts + PRIOR_ATTEMPTS,
            overloads: overloads + 1.0,
        }
    }
}

/// Attempts and overloads the background share is estimated from (decayed counts, the prior
/// included).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Reference {
    pub(super) attempts: f64,
    pub(super) overloads: f64,
}

impl Reference {
    pub(super) fn share(&self) -> f64 {
        self.overloads / self.attempts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn an_outcome_belongs_to_the_limit_its_attempt_started_under() {
        let start = Instant::now();
        let mut epochs = Epochs::default();
        let keep = Duration::from_secs(5);
        epochs.begin(start, 10, keep);
        epochs.begin(start + MS * 100, 20, keep);
        epochs.begin(start + MS * 200, 15, keep);
        assert_eq!(
            epochs.containing(start + MS * 150).map(|e| e.limit),
            Some(20)
        );
        // At the moment of a rise, the new limit; at the moment of a cut, the old one.
        assert_eq!(
            epochs.containing(start + MS * 100).map(|e| e.limit),
            Some(20)
        );
        assert_eq!(
            epochs.containing(start + MS * 200).map(|e| e.limit),
            Some(20)
        );
        assert_eq!(
            epochs.containing(start + MS * 999).map(|e| e.limit),
            Some(15)
        );
        assert_eq!(epochs.containing(start - MS), None);
        // Kept only while an attempt of theirs may still end.
        epochs.begin(start + Duration::from_secs(6), 30, keep);
        assert_eq!(epochs.containing(start + MS * 150), None);
        assert_eq!(
            epochs.containing(start + MS * 250).map(|e| e.limit),
            Some(15)
        );
    }

    #[test]
    fn the_reference_share_comes_from_the_lowest_levels() {
        let now = Instant::now();
        let mut background = Background::new(0.05);
        assert!(
            (background.share_up_to(100, (0, 0), now) - 0.005).abs() < 1e-9,
            "the prior"
        );
        // 2 % at levels 40 and 50, 30 % at 60 (a cap).
        for i in 0..3_000 {
            background.record(40, i % 50 == 0, now);
            background.record(50, i % 50 == 0, now);
            background.record(60, i % 10 < 3, now);
        }
        let up_to_100 = background.share_up_to(100, (0, 0), now);
        assert!((up_to_100 - 0.02).abs() < 0.003, "{up_to_100}");
        // A level found overloaded is no reference (here: 40 and 50 are left out, so the
        // cap's level is all there is).
        let mut without = background.clone();
        without.overloaded_at(40, now);
        without.overloaded_at(50, now);
        // (as much of the cap's 30 % as `most` lets count)
        assert_eq!(without.share_up_to(100, (0, 0), now), 0.05);
        // The attempts under test do not explain themselves.
        // (Without level 40's own attempts, 50's are the reference.)
        let alone = background.share_up_to(40, (3_000, 60), now);
        assert!((alone - 0.02).abs() < 0.003, "{alone}");
        // At most `most`.
        for _ in 0..10_000 {
            background.record(10, true, now);
        }
        assert_eq!(background.share_up_to(100, (0, 0), now), 0.05);
        // Aged by time: two minutes later, new evidence outweighs the old.
        let later = now + Duration::from_secs(120);
        for _ in 0..3_000 {
            background.record(5, false, later);
        }
        assert!(background.share_up_to(100, (0, 0), later) < 0.005);
        assert_eq!(Background::new(0.0).share_up_to(100, (0, 0), now), 0.0);
    }
}
