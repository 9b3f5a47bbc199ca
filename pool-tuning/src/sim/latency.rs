//! Latency distributions: how long a request takes at no load, as a multiple of the
//! scenario's base latency.

use serde::{Deserialize, Serialize};

/// The shape of service times: a random multiplier of `base_latency_ms`, drawn per request.
///
/// Each shape is given with the parameters people quote for it; the simulator also needs the
/// truncated mean `E[min(c·X, T)]` and `P(c·X ≤ T)` to compute capacity honestly (a request
/// slower than the client's timeout holds its slot for `T` and does not succeed), and those
/// are closed forms here, so capacity costs no sampling.
///
/// ```toml
/// latency = { kind = "uniform", jitter = 0.05 }          # ±5 %, mean 1
/// latency = { kind = "lognormal", sigma = 0.5 }          # median 1, mean e^(σ²/2)
/// latency = { kind = "bimodal", slow_share = 0.05, slow_factor = 40.0, jitter = 0.05 }
/// latency = { kind = "pareto", alpha = 2.5 }             # X ≥ 1, P(X > x) = x^-α
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum LatencyModel {
    /// Uniform in `[1 − jitter, 1 + jitter]`.
    Uniform {
        /// Half-width, a share of the base: in `[0, 1)`.
        jitter: f64,
    },
    /// Log-normal with median 1: `exp(σ · N(0, 1))`.
    Lognormal {
        /// Standard deviation of the logarithm, in `(0, 3]`.
        sigma: f64,
    },
    /// Most requests near 1 (± `jitter`), a share `slow_share` near `slow_factor` (± `jitter`):
    /// a cache miss, a cold partition, a retried internal hop.
    Bimodal {
        /// Share of slow requests, in `[0, 1)`.
        slow_share: f64,
        /// How many times slower they are, ≥ 1.
        slow_factor: f64,
        /// Uniform noise on both modes, in `[0, 1)`.
        jitter: f64,
    },
    /// Pareto with scale 1: `X ≥ 1`, `P(X > x) = x^−α`. The heavy tail of real object stores.
    Pareto {
        /// Tail index, > 1 (the mean `α / (α − 1)` is finite).
        alpha: f64,
    },
}

impl Default for LatencyModel {
    fn default() -> Self {
        LatencyModel::Uniform { jitter: 0.05 }
    }
}

impl LatencyModel {
    /// One multiplier.
    pub fn sample(&self, rng: &mut fastrand::Rng) -> f64 {
        match *self {
            LatencyModel::Uniform { jitter } => uniform(rng, jitter),
            LatencyModel::Lognormal { sigma } => (sigma * standard_normal(rng)).exp(),
            LatencyModel::Bimodal {
                slow_share,
                slow_factor,
                jitter,
            } => {
                let mode = if rng.f64() < slow_share {
                    slow_factor
                } else {
                    1.0
                };
                mode * uniform(rng, jitter)
            }
            // Inverse transform; 1 − u is in (0, 1], so the power is finite.
            LatencyModel::Pareto { alpha } => (1.0 - rng.f64()).powf(-1.0 / alpha),
        }
    }

    /// `E[X]`.
    pub fn mean(&self) -> f64 {
        match *self {
            LatencyModel::Uniform { .. } => 1.0,
            LatencyModel::Lognormal { sigma } => (sigma * sigma / 2.0).exp(),
            LatencyModel::Bimodal {
                slow_share,
                slow_factor,
                ..
            } => 1.0 - slow_share + slow_share * slow_factor,
            LatencyModel::Pareto { alpha } => alpha / (alpha - 1.0),
        }
    }

    /// `(E[min(scale·X, cap)], P(scale·X ≤ cap))`: the mean time a request holds its slot when
    /// a timeout `cap` ends the slow ones, and the share that finish in time.
    pub fn truncated(&self, scale: f64, cap: f64) -> (f64, f64) {
        if scale.is_nan() || scale <= 0.0 {
            return (0.0, 1.0);
        }
        if !cap.is_finite() {
            return (scale * self.mean(), 1.0);
        }
        let t = cap / scale;
        let (mean, within) = match *self {
            LatencyModel::Uniform { jitter } => uniform_truncated(1.0, jitter, t),
            LatencyModel::Lognormal { sigma } => {
                if t <= 0.0 {
                    (t, 0.0)
                } else {
                    let z = t.ln() / sigma;
                    let within = normal_cdf(z);
                    let mean =
                        (sigma * sigma / 2.0).exp() * normal_cdf(z - sigma) + t * (1.0 - within);
                    (mean, within)
                }
            }
            LatencyModel::Bimodal {
                slow_share,
                slow_factor,
                jitter,
            } => {
                let (fast_mean, fast_within) = uniform_truncated(1.0, jitter, t);
                let (slow_mean, slow_within) = uniform_truncated(slow_factor, jitter, t);
                (
                    (1.0 - slow_share) * fast_mean + slow_share * slow_mean,
                    (1.0 - slow_share) * fast_within + slow_share * slow_within,
                )
            }
            LatencyModel::Pareto { alpha } => {
                if t <= 1.0 {
                    (t, 0.0)
                } else {
                    let tail = t.powf(-alpha);
                    let mean = alpha / (alpha - 1.0) * (1.0 - t.powf(1.0 - alpha)) + t * tail;
                    (mean, 1.0 - tail)
                }
            }
        };
        (scale * mean, within)
    }

    /// `None` if the parameters are valid, else what is wrong.
    pub(crate) fn problem(&self) -> Option<String> {
        let share = |v: f64| v.is_finite() && (0.0..1.0).contains(&v);
        match *self {
            LatencyModel::Uniform { jitter } if !share(jitter) => {
                Some(format!("latency.jitter must be in [0, 1) (got {jitter})"))
            }
            LatencyModel::Lognormal { sigma } if !(sigma > 0.0 && sigma <= 3.0) => {
                Some(format!("latency.sigma must be in (0, 3] (got {sigma})"))
            }
            LatencyModel::Bimodal {
                slow_share,
                slow_factor,
                jitter,
            } if !(share(slow_share) && share(jitter) && slow_factor.is_finite() && slow_factor >= 1.0) => {
                Some(format!(
                    "latency: slow_share and jitter must be in [0, 1), slow_factor ≥ 1 (got {slow_share}, {jitter}, {slow_factor})"
                ))
            }
            LatencyModel::Pareto { alpha } if !(alpha.is_finite() && alpha > 1.0) => {
                Some(format!("latency.alpha must be > 1 (got {alpha})"))
            }
            _ => None,
        }
    }
}

fn uniform(rng: &mut fastrand::Rng, jitter: f64) -> f64 {
    if jitter == 0.0 {
        1.0
    } else {
        1.0 + (rng.f64() * 2.0 - 1.0) * jitter
    }
}

/// `(E[min(Y, t)], P(Y ≤ t))` for `Y` uniform in `[center·(1 − jitter), center·(1 + jitter)]`.
fn uniform_truncated(center: f64, jitter: f64, t: f64) -> (f64, f64) {
    let (low, high) = (center * (1.0 - jitter), center * (1.0 + jitter));
    if t >= high {
        return (center, 1.0);
    }
    if t <= low {
        return (t, 0.0);
    }
    let within = (t - low) / (high - low);
    // Below t: mean (low + t) / 2 with weight `within`; above: t.
    (within * (low + t) / 2.0 + (1.0 - within) * t, within)
}

/// Box–Muller; one of the pair is enough here.
fn standard_normal(rng: &mut fastrand::Rng) -> f64 {
    let u1 = 1.0 - rng.f64(); // (0, 1]
    let u2 = rng.f64();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Φ(z), from erf (Abramowitz & Stegun 7.1.26, |error| < 1.5e-7).
fn normal_cdf(z: f64) -> f64 {
    0.5 * (1.0 + erf(z / std::f64::consts::SQRT_2))
}

fn erf(x: f64) -> f64 {
    let sign = x.signum();
    let x = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * x);
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    sign * (1.0 - poly * (-x * x).exp())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MODELS: [LatencyModel; 4] = [
        LatencyModel::Uniform { jitter: 0.3 },
        LatencyModel::Lognormal { sigma: 0.8 },
        LatencyModel::Bimodal {
            slow_share: 0.05,
            slow_factor: 40.0,
            jitter: 0.1,
        },
        LatencyModel::Pareto { alpha: 1.8 },
    ];

    /// The closed forms agree with sampling (the capacity the simulator reports rests on them).
    #[test]
    fn truncated_means_match_sampling() {
        let mut rng = fastrand::Rng::with_seed(11);
        for model in MODELS {
            for cap in [0.9, 3.0, 20.0, f64::INFINITY] {
                let n = 200_000;
                let (mut sum, mut within) = (0.0, 0);
                for _ in 0..n {
                    let x = model.sample(&mut rng);
                    sum += x.min(cap);
                    within += usize::from(x <= cap);
                }
                let (mean, share) = model.truncated(1.0, cap);
                let sampled = sum / n as f64;
                let tolerance = if matches!(model, LatencyModel::Pareto { .. }) && cap.is_infinite()
                {
                    0.08 // the tail converges slowly
                } else {
                    0.015
                };
                assert!(
                    (sampled / mean - 1.0).abs() < tolerance,
                    "{model:?} cap {cap}: sampled {sampled}, closed form {mean}"
                );
                assert!(
                    (within as f64 / n as f64 - share).abs() < 0.005,
                    "{model:?} cap {cap}"
                );
            }
        }
    }

    #[test]
    fn scale_moves_the_cap() {
        let model = LatencyModel::Pareto { alpha: 2.0 };
        let (mean, share) = model.truncated(0.02, 0.2);
        let (unit_mean, unit_share) = model.truncated(1.0, 10.0);
        assert!((mean - 0.02 * unit_mean).abs() < 1e-12);
        assert_eq!(share, unit_share);
    }

    #[test]
    fn bad_parameters_are_named() {
        assert!(LatencyModel::Pareto { alpha: 1.0 }.problem().is_some());
        assert!(LatencyModel::Lognormal { sigma: 0.0 }.problem().is_some());
        assert!(LatencyModel::Uniform { jitter: 1.0 }.problem().is_some());
        assert!(LatencyModel::default().problem().is_none());
    }
}
