//! The simulated backend: decides each request's answer and how long it takes.

use super::params::{ServerParams, ThrottleStatus};

/// What the server answers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Answer {
    /// The request succeeded.
    Success,
    /// 503 SlowDown.
    SlowDown,
    /// 429 Too Many Requests, with the Retry-After it carries (seconds), if any.
    TooManyRequests {
        /// `Retry-After`, in seconds.
        retry_after_s: Option<f64>,
    },
    /// 500 Internal Error.
    InternalError,
    /// The connection was reset.
    Reset,
    /// Nothing, ever: only the client's timeout ends the request.
    Nothing,
}

/// Why the server answered as it did: because of the load it is under, or whatever the load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// The load: the rate cap, the connection limit, or queueing past the knee.
    Load,
    /// Not the load: background errors, hangs and the latency distribution's own tail.
    Background,
}

/// One request's fate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Admission {
    /// The answer.
    pub answer: Answer,
    /// When it arrives, in seconds from the request (infinite for [`Answer::Nothing`]).
    pub latency_s: f64,
    /// The same request's service time at no load (to tell a timeout the load caused from
    /// the distribution's own tail).
    pub unloaded_latency_s: f64,
    /// Why a non-success answer came.
    pub cause: Cause,
    /// Whether the server holds the request (it counts towards the knee) until it ends:
    /// [`SimServer::release`] must be called then.
    pub held: bool,
}

/// A backend in virtual time, deterministic for a given seed.
///
/// ```
/// use pool_tuning::sim::{Answer, LatencyModel, ServerParams, SimServer};
/// let params = ServerParams { latency: LatencyModel::Uniform { jitter: 0.0 }, ..ServerParams::default() };
/// let mut server = SimServer::new(params, 7); // knee 64, 20 ms
/// let first = server.admit(0.0);
/// assert_eq!((first.answer, first.latency_s), (Answer::Success, 0.020));
/// for _ in 1..128 {
///     server.admit(0.0);
/// }
/// // 128 in service, twice the knee: the next one waits for 65 requests ahead of it
/// // to be served by 64 "servers" (requests queue).
/// assert_eq!(server.in_service(), 128);
/// assert_eq!(server.admit(0.0).latency_s, 0.020 + 0.020 * 65.0 / 64.0);
/// ```
#[derive(Debug, Clone)]
pub struct SimServer {
    params: ServerParams,
    rng: fastrand::Rng,
    tokens: f64,
    refilled_at_s: f64,
    in_service: usize,
}

impl SimServer {
    /// A server with these parameters, its RNG seeded with `seed`, its token bucket full.
    pub fn new(params: ServerParams, seed: u64) -> Self {
        let mut server = Self {
            params,
            rng: fastrand::Rng::with_seed(seed),
            tokens: 0.0,
            refilled_at_s: 0.0,
            in_service: 0,
        };
        server.tokens = server.burst();
        server
    }

    /// The current parameters.
    pub fn params(&self) -> &ServerParams {
        &self.params
    }

    /// Changes the parameters from now on (requests already admitted keep their fate).
    pub fn set_params(&mut self, params: ServerParams) {
        self.params = params;
        self.tokens = self.tokens.min(self.burst());
    }

    /// Requests the server holds now (served or hanging).
    pub fn in_service(&self) -> usize {
        self.in_service
    }

    fn burst(&self) -> f64 {
        if self.params.rate_cap_per_s > 0.0 {
            (self.params.rate_cap_per_s * self.params.burst_s).max(1.0)
        } else {
            f64::INFINITY
        }
    }

    /// A request arrives at `now_s`.
    pub fn admit(&mut self, now_s: f64) -> Admission {
        let p = self.params;
        let error_s = p.error_latency_ms / 1_000.0;
        let retry_after = (p.retry_after_ms > 0.0).then_some(p.retry_after_ms / 1_000.0);
        let draw = self.rng.f64();
        let background = [
            (p.background_slow_down, Answer::SlowDown),
            (
                p.background_too_many,
                Answer::TooManyRequests {
                    retry_after_s: retry_after,
                },
            ),
            (p.background_internal_error, Answer::InternalError),
            (p.background_reset, Answer::Reset),
            (p.hang_share, Answer::Nothing),
        ];
        let mut threshold = 0.0;
        for (share, answer) in background {
            threshold += share;
            if draw < threshold {
                return if answer == Answer::Nothing {
                    self.in_service += 1;
                    self.fate(
                        answer,
                        f64::INFINITY,
                        f64::INFINITY,
                        Cause::Background,
                        true,
                    )
                } else {
                    let latency = error_s * self.params.latency.sample(&mut self.rng);
                    self.fate(answer, latency, latency, Cause::Background, false)
                };
            }
        }
        if p.rate_cap_per_s > 0.0 {
            let elapsed = (now_s - self.refilled_at_s).max(0.0);
            self.tokens = (self.tokens + elapsed * p.rate_cap_per_s).min(self.burst());
            self.refilled_at_s = now_s;
            if self.tokens < 1.0 {
                let answer = match p.throttle {
                    ThrottleStatus::SlowDown => Answer::SlowDown,
                    ThrottleStatus::TooManyRequests => Answer::TooManyRequests {
                        retry_after_s: retry_after,
                    },
                };
                let latency = p.throttle_latency_ms / 1_000.0;
                return self.fate(answer, latency, latency, Cause::Load, false);
            }
            self.tokens -= 1.0;
        }
        if p.max_in_flight > 0.0 && self.in_service as f64 >= p.max_in_flight {
            return self.fate(
                Answer::Nothing,
                f64::INFINITY,
                f64::INFINITY,
                Cause::Load,
                false,
            );
        }
        self.in_service += 1;
        let unloaded = p.base_latency_ms / 1_000.0 * p.latency.sample(&mut self.rng);
        let latency = unloaded + p.queue_wait_s(self.in_service as f64);
        self.fate(Answer::Success, latency, unloaded, Cause::Load, true)
    }

    fn fate(
        &self,
        answer: Answer,
        latency_s: f64,
        unloaded_latency_s: f64,
        cause: Cause,
        held: bool,
    ) -> Admission {
        Admission {
            answer,
            latency_s,
            unloaded_latency_s,
            cause,
            held,
        }
    }

    /// A held request ended (answered, or its client gave up).
    pub fn release(&mut self) {
        self.in_service = self.in_service.saturating_sub(1);
    }

    /// Share of memory in use with `attempts` attempts in flight at the client.
    pub fn memory_fraction(&self, attempts: usize) -> f64 {
        (self.params.memory_base + self.params.memory_per_request * attempts as f64).min(1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::LatencyModel;

    fn capped(cap: f64) -> SimServer {
        let params = ServerParams {
            knee: 1_000.0,
            latency: LatencyModel::Uniform { jitter: 0.0 },
            rate_cap_per_s: cap,
            burst_s: 0.01,
            ..ServerParams::default()
        };
        SimServer::new(params, 1)
    }

    fn served(server: &mut SimServer, at: f64, requests: usize) -> usize {
        (0..requests)
            .filter(|_| server.admit(at).answer == Answer::Success)
            .count()
    }

    #[test]
    fn rate_cap_throttles_past_the_burst_and_refills_with_time() {
        let mut server = capped(1_000.0); // burst 10
        assert_eq!(served(&mut server, 0.0, 15), 10);
        // 5 ms later, 5 tokens are back.
        assert_eq!(served(&mut server, 0.005, 15), 5);
    }

    #[test]
    fn throttles_carry_their_status_and_retry_after() {
        let mut server = capped(1_000.0);
        let mut params = *server.params();
        params.throttle = ThrottleStatus::TooManyRequests;
        params.retry_after_ms = 1_500.0;
        params.throttle_latency_ms = 800.0;
        server.set_params(params);
        served(&mut server, 0.0, 10);
        let refused = server.admit(0.0);
        assert_eq!(
            refused.answer,
            Answer::TooManyRequests {
                retry_after_s: Some(1.5)
            }
        );
        assert_eq!(
            (refused.latency_s, refused.cause, refused.held),
            (0.8, Cause::Load, false)
        );
    }

    #[test]
    fn the_connection_limit_answers_nothing_and_holds_nothing() {
        let params = ServerParams {
            max_in_flight: 2.0,
            ..ServerParams::default()
        };
        let mut server = SimServer::new(params, 1);
        assert_eq!(served(&mut server, 0.0, 3), 2);
        let dropped = server.admit(0.0);
        assert_eq!((dropped.answer, dropped.held), (Answer::Nothing, false));
        server.release();
        assert_eq!(server.admit(0.0).answer, Answer::Success);
    }

    #[test]
    fn background_shares_are_drawn_whatever_the_load() {
        let params = ServerParams {
            background_slow_down: 0.1,
            background_internal_error: 0.05,
            hang_share: 0.02,
            ..ServerParams::default()
        };
        let mut server = SimServer::new(params, 5);
        let answers: Vec<_> = (0..20_000).map(|_| server.admit(0.0)).collect();
        let share = |wanted: Answer| {
            answers.iter().filter(|a| a.answer == wanted).count() as f64 / answers.len() as f64
        };
        assert!((share(Answer::SlowDown) - 0.1).abs() < 0.01);
        assert!((share(Answer::InternalError) - 0.05).abs() < 0.01);
        assert!((share(Answer::Nothing) - 0.02).abs() < 0.005);
        assert!(answers
            .iter()
            .filter(|a| a.answer != Answer::Success)
            .all(|a| a.cause == Cause::Background));
    }

    #[test]
    fn same_seed_same_answers() {
        let params = ServerParams {
            latency: LatencyModel::Lognormal { sigma: 1.0 },
            background_reset: 0.1,
            ..ServerParams::default()
        };
        let run = |seed| {
            let mut server = SimServer::new(params, seed);
            (0..100)
                .map(|_| server.admit(0.0).latency_s)
                .collect::<Vec<_>>()
        };
        assert_eq!(run(3), run(3));
        assert_ne!(run(3), run(4));
    }
}
