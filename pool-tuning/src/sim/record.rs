//! What happened during a run, in 100 ms buckets of virtual time: the raw material of
//! reports and plots.

use super::server::Cause;

/// Length of a bucket, in seconds.
pub(crate) const BUCKET_S: f64 = 0.1;

/// How one attempt ended, as the server and the client's timeout decided it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Ended {
    Succeeded { latency_s: f64 },
    Throttled { cause: Cause },
    Failed,
    TimedOut { cause: Cause },
}

/// Counts and time integrals of one bucket.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Bucket {
    pub(crate) attempts: u32,
    pub(crate) successes: u32,
    pub(crate) throttled: u32,
    pub(crate) timed_out: u32,
    pub(crate) failed: u32,
    /// Throttles and timeouts the load caused.
    pub(crate) load_overloads: u32,
    /// Throttles and timeouts that come whatever the load.
    pub(crate) background_overloads: u32,
    /// ∫ limit dt over the bucket.
    pub(crate) limit_seconds: f64,
    /// ∫ attempts in flight dt over the bucket.
    pub(crate) in_flight_seconds: f64,
}

/// The whole run.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Recording {
    pub(crate) buckets: Vec<Bucket>,
    /// Every success: (finished at, in seconds from the start; latency in seconds).
    pub(crate) latencies: Vec<(f32, f32)>,
    pub(crate) limit_changes: usize,
    /// Tasks the pool parked for a Retry-After.
    pub(crate) deferrals: u64,
    pub(crate) final_limit: usize,
    pub(crate) peak_memory: f64,
    pub(crate) final_memory: f64,
}

impl Recording {
    /// The `quantile` of success latencies finishing in `[from_s, to_s)`, in ms.
    pub(crate) fn latency_quantile_ms(&self, from_s: f64, to_s: f64, quantile: f64) -> f64 {
        let mut within: Vec<f32> = self
            .latencies
            .iter()
            .filter(|(at, _)| f64::from(*at) >= from_s && f64::from(*at) < to_s)
            .map(|(_, latency)| *latency)
            .collect();
        if within.is_empty() {
            return 0.0;
        }
        let rank = ((quantile * within.len() as f64).ceil() as usize).clamp(1, within.len()) - 1;
        let (_, value, _) = within.select_nth_unstable_by(rank, f32::total_cmp);
        f64::from(*value) * 1_000.0
    }
}

/// Fills a [`Recording`] as events arrive, integrating the limit and the attempts in flight
/// over time.
#[derive(Debug)]
pub(crate) struct Recorder {
    recording: Recording,
    limit: usize,
    in_flight: usize,
    /// Integrated up to here, which lies in bucket `bucket`.
    at_s: f64,
    bucket: usize,
}

impl Recorder {
    pub(crate) fn new(duration_s: f64, limit: usize) -> Self {
        let buckets = (duration_s / BUCKET_S).ceil() as usize;
        Self {
            recording: Recording {
                buckets: vec![Bucket::default(); buckets],
                final_limit: limit,
                ..Recording::default()
            },
            limit,
            in_flight: 0,
            at_s: 0.0,
            bucket: 0,
        }
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Integrates the limit and the attempts in flight up to `now_s`.
    fn advance(&mut self, now_s: f64) {
        while self.at_s < now_s {
            let Some(bucket) = self.recording.buckets.get_mut(self.bucket) else {
                self.at_s = now_s;
                return;
            };
            let bucket_end = (self.bucket + 1) as f64 * BUCKET_S;
            let until = now_s.min(bucket_end);
            let span = (until - self.at_s).max(0.0);
            bucket.limit_seconds += self.limit as f64 * span;
            bucket.in_flight_seconds += self.in_flight as f64 * span;
            if until >= bucket_end {
                self.bucket += 1;
            }
            self.at_s = until;
        }
    }

    fn bucket(&mut self, now_s: f64) -> Option<&mut Bucket> {
        self.recording.buckets.get_mut((now_s / BUCKET_S) as usize)
    }

    pub(crate) fn limit_changed(&mut self, now_s: f64, limit: usize) {
        self.advance(now_s);
        if limit != self.limit {
            self.recording.limit_changes += 1;
        }
        self.limit = limit;
        self.recording.final_limit = limit;
    }

    pub(crate) fn task_deferred(&mut self) {
        self.recording.deferrals += 1;
    }

    pub(crate) fn attempt_started(&mut self, now_s: f64, memory: f64) {
        self.advance(now_s);
        self.in_flight += 1;
        self.recording.peak_memory = self.recording.peak_memory.max(memory);
    }

    pub(crate) fn attempt_ended(&mut self, now_s: f64, ended: Ended) {
        self.advance(now_s);
        self.in_flight = self.in_flight.saturating_sub(1);
        if let Ended::Succeeded { latency_s } = ended {
            self.recording
                .latencies
                .push((now_s as f32, latency_s as f32));
        }
        let Some(bucket) = self.bucket(now_s) else {
            return;
        };
        bucket.attempts += 1;
        let overload_cause = match ended {
            Ended::Succeeded { .. } => {
                bucket.successes += 1;
                None
            }
            Ended::Failed => {
                bucket.failed += 1;
                None
            }
            Ended::Throttled { cause } => {
                bucket.throttled += 1;
                Some(cause)
            }
            Ended::TimedOut { cause } => {
                bucket.timed_out += 1;
                Some(cause)
            }
        };
        match overload_cause {
            Some(Cause::Load) => bucket.load_overloads += 1,
            Some(Cause::Background) => bucket.background_overloads += 1,
            None => {}
        }
    }

    /// Closes the run at `end_s` and hands over what it recorded.
    pub(crate) fn finish(&mut self, end_s: f64, final_memory: f64) -> Recording {
        self.advance(end_s);
        self.recording.final_memory = final_memory;
        std::mem::take(&mut self.recording)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_and_in_flight_are_integrated_across_buckets() {
        let mut recorder = Recorder::new(1.0, 10);
        recorder.attempt_started(0.05, 0.0);
        recorder.limit_changed(0.15, 20);
        recorder.attempt_ended(0.25, Ended::Succeeded { latency_s: 0.2 });
        let recording = recorder.finish(1.0, 0.3);
        let b = &recording.buckets;
        assert!((b[0].limit_seconds - 1.0).abs() < 1e-9);
        assert!((b[1].limit_seconds - (0.5 + 1.0)).abs() < 1e-9);
        assert!((b[0].in_flight_seconds - 0.05).abs() < 1e-9);
        assert!((b[2].in_flight_seconds - 0.05).abs() < 1e-9);
        assert_eq!((b[2].attempts, b[2].successes), (1, 1));
        assert!((b[9].limit_seconds - 2.0).abs() < 1e-9);
        assert_eq!(recording.limit_changes, 1);
        assert!((recording.latency_quantile_ms(0.0, 1.0, 0.99) - 200.0).abs() < 1e-3);
    }
}
