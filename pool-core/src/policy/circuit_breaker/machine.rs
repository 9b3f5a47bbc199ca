//! The circuit's state machine over a sliding window of outcomes: pure, no clock of its own
//! (every method takes `now`), unit-tested without a pool.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::config::{CircuitSnapshot, CircuitState, Transition};
use crate::deadline;

/// The numbers the state machine works with.
#[derive(Debug, Clone, Copy)]
pub(super) struct Thresholds {
    pub(super) failure_rate: f64,
    pub(super) minimum_calls: u64,
    pub(super) open_duration: Duration,
    pub(super) half_open_probes: u32,
}

/// How one admitted call counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    Success,
    Failure,
    /// Cut short: says nothing of the backend.
    Ignore,
}

/// Which half-open period a probe was admitted in: a probe's outcome only decides the
/// period it belongs to.
pub(super) type ProbeRound = u64;

#[derive(Debug, Clone, PartialEq)]
enum Phase {
    Closed,
    Open {
        until: Instant,
    },
    HalfOpen {
        /// Probes admitted whose outcome has not come.
        running: u32,
        /// Probes that succeeded.
        succeeded: u32,
    },
}

impl Phase {
    fn state(&self) -> CircuitState {
        match self {
            Phase::Closed => CircuitState::Closed,
            Phase::Open { .. } => CircuitState::Open,
            Phase::HalfOpen { .. } => CircuitState::HalfOpen,
        }
    }
}

/// What the machine says of a call about to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Decision {
    /// Go; a probe of this round if the circuit is half-open.
    Admit(Option<ProbeRound>),
    Open {
        retry_after: Duration,
    },
    ProbesBusy,
}

/// The pure state machine.
#[derive(Debug)]
pub(super) struct Machine {
    pub(super) thresholds: Thresholds,
    phase: Phase,
    window: OutcomeWindow,
    opened: u64,
    half_opened: u64,
    closed: u64,
}

impl Machine {
    pub(super) fn new(thresholds: Thresholds, window: Duration, now: Instant) -> Self {
        Self {
            thresholds,
            phase: Phase::Closed,
            window: OutcomeWindow::new(window, now),
            opened: 0,
            half_opened: 0,
            closed: 0,
        }
    }

    fn enter(&mut self, phase: Phase, at: Instant, failure_rate: Option<f64>) -> Transition {
        let from = self.phase.state();
        match phase {
            Phase::Closed => self.closed += 1,
            Phase::Open { .. } => self.opened += 1,
            Phase::HalfOpen { .. } => self.half_opened += 1,
        }
        self.phase = phase;
        Transition {
            from,
            to: self.phase.state(),
            at,
            failure_rate,
        }
    }

    /// Open -> half-open once the cool-down has passed.
    pub(super) fn expire_open(&mut self, now: Instant) -> Option<Transition> {
        match self.phase {
            Phase::Open { until } if now >= until => Some(self.enter(
                Phase::HalfOpen {
                    running: 0,
                    succeeded: 0,
                },
                now,
                None,
            )),
            _ => None,
        }
    }

    /// When an open circuit's cool-down ends, if it is open at `now`.
    pub(super) fn open_until(&self, now: Instant) -> Option<Instant> {
        match self.phase {
            Phase::Open { until } if until > now => Some(until),
            _ => None,
        }
    }

    pub(super) fn admit(&mut self, now: Instant) -> Decision {
        let limit = self.thresholds.half_open_probes;
        match &mut self.phase {
            Phase::Closed => Decision::Admit(None),
            Phase::Open { until } => Decision::Open {
                retry_after: until.saturating_duration_since(now),
            },
            Phase::HalfOpen { running, succeeded } if *running + *succeeded < limit => {
                *running += 1;
                Decision::Admit(Some(self.half_opened))
            }
            Phase::HalfOpen { .. } => Decision::ProbesBusy,
        }
    }

    /// The outcome of a call admitted while the circuit was closed: counted in the window
    /// if it still is (calls that end after the circuit opened say nothing the window did
    /// not).
    pub(super) fn record(&mut self, verdict: Verdict, at: Instant) -> Option<Transition> {
        if self.phase != Phase::Closed {
            return None;
        }
        match verdict {
            Verdict::Success => self.window.record(false, at),
            Verdict::Failure => self.window.record(true, at),
            Verdict::Ignore => return None,
        }
        let (calls, failures) = self.window.totals(at);
        let rate = failures as f64 / calls.max(1) as f64;
        (calls >= self.thresholds.minimum_calls && rate >= self.thresholds.failure_rate).then(
            || {
                let until = deadline::after(at, self.thresholds.open_duration);
                self.enter(Phase::Open { until }, at, Some(rate))
            },
        )
    }

    /// The outcome of a probe admitted in half-open `round`: only probes of the current round
    /// decide. An ignored probe (cut short, or its permit dropped unfinished) frees its place.
    pub(super) fn probe_ended(
        &mut self,
        round: ProbeRound,
        verdict: Verdict,
        at: Instant,
    ) -> Option<Transition> {
        if round != self.half_opened {
            return None;
        }
        let Phase::HalfOpen { running, succeeded } = &mut self.phase else {
            return None;
        };
        *running = running.saturating_sub(1);
        match verdict {
            Verdict::Ignore => None,
            Verdict::Failure => {
                let until = deadline::after(at, self.thresholds.open_duration);
                Some(self.enter(Phase::Open { until }, at, None))
            }
            Verdict::Success => {
                *succeeded += 1;
                if *succeeded < self.thresholds.half_open_probes {
                    return None;
                }
                self.window.clear();
                Some(self.enter(Phase::Closed, at, None))
            }
        }
    }

    pub(super) fn snapshot(&self, now: Instant) -> CircuitSnapshot {
        let (calls, failures) = self.window.totals(now);
        CircuitSnapshot {
            state: self.phase.state(),
            calls,
            failures,
            opened: self.opened,
            half_opened: self.half_opened,
            closed: self.closed,
            rejected: 0,
        }
    }
}

const WINDOW_SLICES: u64 = 10;

/// Successes and failures over a sliding time window, kept in ten slices.
#[derive(Debug)]
struct OutcomeWindow {
    origin: Instant,
    slice: Duration,
    /// (slice index since origin, calls, failures), oldest first.
    slices: VecDeque<(u64, u64, u64)>,
}

impl OutcomeWindow {
    fn new(window: Duration, origin: Instant) -> Self {
        let slice = (window / WINDOW_SLICES as u32).max(Duration::from_nanos(1));
        Self {
            origin,
            slice,
            slices: VecDeque::with_capacity(WINDOW_SLICES as usize),
        }
    }

    fn index(&self, at: Instant) -> u64 {
        let elapsed = at.saturating_duration_since(self.origin).as_nanos();
        u64::try_from(elapsed / self.slice.as_nanos()).unwrap_or(u64::MAX)
    }

    fn is_current(index: u64, now_index: u64) -> bool {
        now_index.saturating_sub(index) < WINDOW_SLICES
    }

    fn record(&mut self, failure: bool, at: Instant) {
        let index = self.index(at);
        while self
            .slices
            .front()
            .is_some_and(|&(first, ..)| !Self::is_current(first, index))
        {
            self.slices.pop_front();
        }
        let slot = match self.slices.iter_mut().find(|(i, ..)| *i == index) {
            Some(slot) => slot,
            None => {
                self.slices.push_back((index, 0, 0));
                self.slices.back_mut().expect("just pushed")
            }
        };
        slot.1 += 1;
        slot.2 += u64::from(failure);
    }

    /// (calls, failures) in the window ending at `now`.
    fn totals(&self, now: Instant) -> (u64, u64) {
        let now_index = self.index(now);
        self.slices
            .iter()
            .filter(|(index, ..)| Self::is_current(*index, now_index))
            .fold((0, 0), |(calls, failures), (_, c, f)| {
                (calls + c, failures + f)
            })
    }

    fn clear(&mut self) {
        self.slices.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine(origin: Instant) -> Machine {
        Machine::new(
            Thresholds {
                failure_rate: 0.5,
                minimum_calls: 4,
                open_duration: Duration::from_secs(5),
                half_open_probes: 2,
            },
            Duration::from_secs(10),
            origin,
        )
    }

    /// A machine opened at `t0` by four failures.
    fn opened(t0: Instant) -> Machine {
        let mut m = machine(t0);
        for _ in 0..4 {
            m.record(Verdict::Failure, t0);
        }
        assert_eq!(m.phase.state(), CircuitState::Open);
        m
    }

    /// The round of a probe admitted now.
    fn probe(m: &mut Machine, now: Instant) -> ProbeRound {
        match m.admit(now) {
            Decision::Admit(Some(round)) => round,
            other => panic!("expected a probe, got {other:?}"),
        }
    }

    #[test]
    fn opens_only_once_the_minimum_number_of_calls_is_reached() {
        let t0 = Instant::now();
        let mut m = machine(t0);
        for _ in 0..3 {
            assert_eq!(m.record(Verdict::Failure, t0), None);
        }
        let opened = m.record(Verdict::Failure, t0).expect("opens");
        assert_eq!(
            (opened.from, opened.to),
            (CircuitState::Closed, CircuitState::Open)
        );
        assert_eq!(opened.failure_rate, Some(1.0));
    }

    #[test]
    fn failures_older_than_the_window_are_forgotten() {
        let t0 = Instant::now();
        let mut m = machine(t0);
        for _ in 0..3 {
            m.record(Verdict::Failure, t0);
        }
        let later = t0 + Duration::from_secs(11);
        assert_eq!(m.window.totals(later), (0, 0));
        assert_eq!(m.record(Verdict::Failure, later), None);
        assert_eq!(m.window.totals(later), (1, 1));
    }

    #[test]
    fn below_the_threshold_the_circuit_stays_closed() {
        let t0 = Instant::now();
        let mut m = machine(t0);
        for i in 0..30 {
            let verdict = if i % 3 == 2 {
                Verdict::Failure
            } else {
                Verdict::Success
            };
            assert_eq!(m.record(verdict, t0), None);
        }
        assert_eq!(m.phase, Phase::Closed);
    }

    #[test]
    fn half_open_admits_only_the_probes_then_closes_after_they_succeed() {
        let t0 = Instant::now();
        let mut m = opened(t0);
        let early = t0 + Duration::from_secs(4);
        assert_eq!(m.expire_open(early), None);
        assert_eq!(
            m.admit(early),
            Decision::Open {
                retry_after: Duration::from_secs(1)
            }
        );
        let cooled = t0 + Duration::from_secs(5);
        assert!(m.expire_open(cooled).is_some());
        let (first, second) = (probe(&mut m, cooled), probe(&mut m, cooled));
        assert_eq!(m.admit(cooled), Decision::ProbesBusy);
        // A straggler admitted while closed does not decide.
        assert_eq!(m.record(Verdict::Success, cooled), None);
        assert_eq!(m.probe_ended(first, Verdict::Success, cooled), None);
        let closed = m
            .probe_ended(second, Verdict::Success, cooled)
            .expect("closes");
        assert_eq!(
            (closed.from, closed.to),
            (CircuitState::HalfOpen, CircuitState::Closed)
        );
        assert_eq!(m.window.totals(cooled), (0, 0));
        assert_eq!((m.opened, m.half_opened, m.closed), (1, 1, 1));
    }

    #[test]
    fn a_failed_probe_opens_the_circuit_for_another_cool_down() {
        let t0 = Instant::now();
        let mut m = opened(t0);
        let cooled = t0 + Duration::from_secs(5);
        m.expire_open(cooled);
        let round = probe(&mut m, cooled);
        let probe_failed = cooled + Duration::from_secs(1);
        let reopened = m
            .probe_ended(round, Verdict::Failure, probe_failed)
            .expect("reopens");
        assert_eq!(reopened.to, CircuitState::Open);
        assert_eq!(
            m.admit(probe_failed),
            Decision::Open {
                retry_after: Duration::from_secs(5)
            }
        );
    }

    #[test]
    fn an_ignored_probe_frees_its_place() {
        let t0 = Instant::now();
        let mut m = opened(t0);
        let cooled = t0 + Duration::from_secs(5);
        m.expire_open(cooled);
        let first = probe(&mut m, cooled);
        probe(&mut m, cooled);
        assert_eq!(m.admit(cooled), Decision::ProbesBusy);
        assert_eq!(m.probe_ended(first, Verdict::Ignore, cooled), None);
        probe(&mut m, cooled);
    }

    #[test]
    fn a_probe_of_an_earlier_round_does_not_decide_the_next() {
        let t0 = Instant::now();
        let mut m = opened(t0);
        let cooled = t0 + Duration::from_secs(5);
        m.expire_open(cooled);
        let (old, failing) = (probe(&mut m, cooled), probe(&mut m, cooled));
        m.probe_ended(failing, Verdict::Failure, cooled)
            .expect("reopens");
        let cooled_again = cooled + Duration::from_secs(5);
        m.expire_open(cooled_again).expect("half-open again");
        // The first round's last probe ends late, a failure: the new round is not reopened,
        // and it still has both its places.
        assert_eq!(m.probe_ended(old, Verdict::Failure, cooled_again), None);
        assert_eq!(m.phase.state(), CircuitState::HalfOpen);
        let (a, b) = (probe(&mut m, cooled_again), probe(&mut m, cooled_again));
        assert_eq!(m.probe_ended(a, Verdict::Success, cooled_again), None);
        assert!(m.probe_ended(b, Verdict::Success, cooled_again).is_some());
        assert_eq!(m.phase.state(), CircuitState::Closed);
    }
}
