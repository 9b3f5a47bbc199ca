//! The statistics the knee tuner decides with: a test for "more overloads than the
//! background explains", and a confidence interval for a median.

/// False-alarm probability of one overload test. Tested at every overload an epoch gets, so
/// the rate of false cuts is about this times the overloads the background sends (one in
/// ten thousand: a real overload is rarely subtle).
pub(super) const OVERLOAD_SIGNIFICANCE: f64 = 1e-4;

/// Whether `overloads` out of `attempts` is more than a background share `background`
/// explains: `P(K ≥ overloads)` under Poisson(`attempts · background`) below
/// [`OVERLOAD_SIGNIFICANCE`]. The threshold grows with the sample, as `√attempts`: a constant
/// slack would be too strict for large windows and too lax for small ones.
pub(super) fn excess_overloads(overloads: u32, attempts: u32, background: f64) -> bool {
    if overloads == 0 {
        return false;
    }
    let mean = f64::from(attempts) * background;
    poisson_tail(overloads, mean) < OVERLOAD_SIGNIFICANCE
}

/// Whether `overloads` out of `attempts` is more than the reference sample explains
/// (`reference_attempts`, `reference_overloads`: the background share's own evidence), when
/// that share is at most `most`; above it, `most` is the background
/// ([`excess_overloads`]). A reference of a few hundred attempts knows the background
/// share only roughly, so the test is the conditional one for two Poisson counts: of all
/// `overloads + reference_overloads`, how likely are `overloads` or more to fall among the
/// attempts under test, given their share of all attempts. Against a large reference it is
/// the plain Poisson test; against a small one it asks for more evidence (a start whose
/// first levels saw few attempts must not take a 2 % background for a 0.5 % one).
pub(super) fn excess_over_reference(
    overloads: u32,
    attempts: u32,
    (reference_attempts, reference_overloads): (f64, f64),
    most: f64,
) -> bool {
    if overloads == 0 {
        return false;
    }
    if most <= 0.0 || reference_attempts <= 0.0 {
        return excess_overloads(overloads, attempts, 0.0);
    }
    if reference_overloads / reference_attempts >= most {
        return excess_overloads(overloads, attempts, most);
    }
    let tested = f64::from(attempts);
    let share = tested / (tested + reference_attempts);
    let total = overloads.saturating_add(reference_overloads.round() as u32);
    binomial_tail(overloads, total, share) < OVERLOAD_SIGNIFICANCE
}

/// `P(X ≥ k)` for `X ~ Binomial(n, p)`, summed in log space from `k` up.
fn binomial_tail(k: u32, n: u32, p: f64) -> f64 {
    if k == 0 {
        return 1.0;
    }
    if k > n || p <= 0.0 {
        return 0.0;
    }
    if p >= 1.0 {
        return 1.0;
    }
    let (ln_p, ln_q) = (p.ln(), (1.0 - p).ln());
    let ln_n = ln_gamma(f64::from(n) + 1.0);
    let mut sum = 0.0;
    for i in k..=n {
        let (i, n) = (f64::from(i), f64::from(n));
        let ln_term = ln_n - ln_gamma(i + 1.0) - ln_gamma(n - i + 1.0) + i * ln_p + (n - i) * ln_q;
        let term = ln_term.exp();
        sum += term;
        // Past the mode the terms only shrink: stop once they no longer count.
        if i > n * p && term < sum * 1e-12 {
            break;
        }
    }
    sum.min(1.0)
}

/// `ln Γ(x)` for `x ≥ 1` (Lanczos, g = 7: about 15 digits).
fn ln_gamma(x: f64) -> f64 {
    const COEFFICIENTS: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    let x = x - 1.0;
    let mut sum = COEFFICIENTS[0];
    for (i, c) in COEFFICIENTS.iter().enumerate().skip(1) {
        sum += c / (x + i as f64);
    }
    let t = x + 7.5;
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + sum.ln()
}

/// `P(K ≥ k)` for `K ~ Poisson(mean)`.
fn poisson_tail(k: u32, mean: f64) -> f64 {
    if mean <= 0.0 {
        return 0.0;
    }
    if mean > 50.0 {
        // Normal approximation with continuity correction.
        let z = (f64::from(k) - 0.5 - mean) / mean.sqrt();
        return 0.5 * erfc(z / std::f64::consts::SQRT_2);
    }
    // 1 − P(K ≤ k − 1), summing the terms (k is small wherever mean is).
    let mut term = (-mean).exp();
    let mut below = 0.0;
    for i in 0..k {
        below += term;
        term *= mean / f64::from(i + 1);
        if term < 1e-300 && i as f64 > mean {
            break;
        }
    }
    (1.0 - below).max(0.0)
}

/// Complementary error function (Abramowitz & Stegun 7.1.26, |error| < 1.5e-7).
fn erfc(x: f64) -> f64 {
    let t = 1.0 / (1.0 + 0.327_591_1 * x.abs());
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    let value = poly * (-x * x).exp();
    if x >= 0.0 {
        value
    } else {
        2.0 - value
    }
}

/// The median of `values` and a distribution-free confidence interval around it: the order
/// statistics at ranks `n/2 ∓ z·√n/2` (z = 2, about 95 %). Works for any latency
/// distribution, heavy tails included, where a mean and its standard error do not.
/// `values` is reordered. `None` when empty.
pub(super) fn median_interval(values: &mut [f64]) -> Option<(f64, f64, f64)> {
    let n = values.len();
    if n == 0 {
        return None;
    }
    let half_width = (n as f64).sqrt();
    let rank = |r: f64| (r.max(0.0) as usize).min(n - 1);
    let low = rank(n as f64 / 2.0 - half_width);
    let middle = rank(n as f64 / 2.0);
    let high = rank((n as f64 / 2.0 + half_width).ceil());
    let (_, &mut median, _) = values.select_nth_unstable_by(middle, f64::total_cmp);
    let (_, &mut lower, _) = values[..=middle].select_nth_unstable_by(low, f64::total_cmp);
    let (_, &mut upper, _) = values[middle..].select_nth_unstable_by(high - middle, f64::total_cmp);
    Some((lower, median, upper))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_overload_threshold_grows_with_the_square_root_of_the_sample() {
        // With 1 % background: the smallest significant count, by attempts.
        let threshold = |attempts: u32| {
            (0..)
                .find(|&k| excess_overloads(k, attempts, 0.01))
                .unwrap()
        };
        assert_eq!(threshold(100), 7);
        let (t1k, t10k, t100k) = (threshold(1_000), threshold(10_000), threshold(100_000));
        // Excess over the mean: ~3.7 σ, so about 15, 38, 119.
        assert!((23..=27).contains(&t1k), "{t1k}");
        assert!((135..=141).contains(&t10k), "{t10k}");
        assert!((1_110..=1_125).contains(&t100k), "{t100k}");
        // No background known: a single overload is significant.
        assert!(excess_overloads(1, 1_000, 0.0));
        assert!(!excess_overloads(0, 1_000, 0.5));
    }

    #[test]
    fn a_small_reference_asks_for_more_evidence() {
        // 2 % background; the reference holds only the prior and 100 attempts (3 overloads).
        let small = (300.0, 4.0);
        // 8 of 400 is the background: no alarm. 18 of 400 is not either, though a share
        // of 4 in 300 known exactly would call it excess (P = 1e-5).
        assert!(!excess_over_reference(8, 400, small, 0.05));
        assert!(excess_overloads(18, 400, 4.0 / 300.0));
        assert!(!excess_over_reference(18, 400, small, 0.05));
        // A cap refusing a quarter is excess at once, even against the prior alone.
        assert!(excess_over_reference(19, 75, (200.0, 1.0), 0.05));
        assert!(excess_over_reference(100, 400, small, 0.05));
        // Against a large reference it is the Poisson test.
        let large = (1e6, 1e4);
        for k in [5, 10, 11, 12, 13, 14, 20] {
            assert_eq!(
                excess_over_reference(k, 400, large, 0.05),
                excess_overloads(k, 400, 0.01),
                "{k}"
            );
        }
        // Above `most`, `most` is the background; at 0 every overload counts.
        assert_eq!(
            excess_over_reference(40, 400, (100.0, 20.0), 0.05),
            excess_overloads(40, 400, 0.05)
        );
        assert!(excess_over_reference(1, 400, small, 0.0));
        assert!(!excess_over_reference(0, 400, small, 0.05));
        assert!((binomial_tail(3, 10, 0.5) - 0.945_312_5).abs() < 1e-9);
        assert!((ln_gamma(10.0) - 362_880f64.ln()).abs() < 1e-9);
    }

    #[test]
    fn false_alarms_are_rare_under_the_background() {
        let mut rng = fastrand_like(7);
        let (attempts, background) = (400, 0.02);
        let alarms = (0..10_000)
            .filter(|_| {
                let k = (0..attempts).filter(|_| rng() < background).count() as u32;
                excess_overloads(k, attempts, background)
            })
            .count();
        assert!(alarms <= 20, "{alarms} false alarms in 10,000 windows");
    }

    /// A tiny xorshift, so the test needs no RNG crate outside the `sim` feature.
    fn fastrand_like(seed: u64) -> impl FnMut() -> f64 {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    #[test]
    fn the_median_interval_brackets_the_median() {
        let mut values: Vec<f64> = (1..=100).map(f64::from).collect();
        let (low, median, high) = median_interval(&mut values).unwrap();
        assert_eq!(median, 51.0);
        assert!((40.0..=41.0).contains(&low), "{low}");
        assert!((60.0..=61.0).contains(&high), "{high}");
        let mut one = [3.0];
        assert_eq!(median_interval(&mut one), Some((3.0, 3.0, 3.0)));
        assert_eq!(median_interval(&mut []), None);
    }
}
