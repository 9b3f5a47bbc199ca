//! The queue's order: priority, aging, fair share between lanes, deadlines, removal.

use std::time::Duration;

use super::*;

fn queue(max_boost: f64) -> (AgingQueue<u32>, Ticks) {
    let aging = AgingSettings {
        interval: Duration::from_millis(250),
        max_boost,
    };
    (AgingQueue::new(aging, false), Ticks::default())
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn pop_all(q: &mut AgingQueue<u32>, now: Ticks) -> Vec<u32> {
    std::iter::from_fn(|| q.pop(now, |_| true).map(|p| p.job)).collect()
}

#[test]
fn higher_priority_pops_first_and_ties_are_fifo() {
    let (mut q, t0) = queue(10.0);
    q.push(1, Placement::plain(0), t0);
    q.push(2, Placement::plain(5), t0);
    q.push(3, Placement::plain(0), t0);
    q.push(4, Placement::plain(5), t0);
    assert_eq!(pop_all(&mut q, t0), vec![2, 4, 1, 3]);
}

#[test]
fn waiting_earns_one_point_per_interval() {
    let (mut q, t0) = queue(10.0);
    q.push(1, Placement::plain(0), t0); // waits 1 s = 4 intervals => effective 4
    q.push(2, Placement::plain(3), t0 + ms(1000)); // fresh, priority 3
    assert_eq!(pop_all(&mut q, t0 + ms(1000)), vec![1, 2]);

    q.push(3, Placement::plain(0), t0 + ms(1000)); // waits 0.5 s => effective 2 < 3
    q.push(4, Placement::plain(3), t0 + ms(1500));
    assert_eq!(pop_all(&mut q, t0 + ms(1500)), vec![4, 3]);
}

#[test]
fn boost_is_capped() {
    let (mut q, t0) = queue(2.0);
    q.push(1, Placement::plain(0), t0); // waited 10 s but boost capped at 2
    let later = t0 + ms(10_000);
    q.push(2, Placement::plain(3), later);
    assert_eq!(pop_all(&mut q, later), vec![2, 1]);
    assert_eq!(q.effective(0, t0, later), 2.0);
}

#[test]
fn capped_tasks_keep_fifo_among_equals() {
    let (mut q, t0) = queue(1.0);
    for i in 0..5 {
        q.push(i, Placement::plain(0), t0 + ms(u64::from(i)));
    }
    assert_eq!(pop_all(&mut q, t0 + ms(60_000)), vec![0, 1, 2, 3, 4]);
}

#[test]
fn aging_off_is_plain_priority_fifo() {
    let (mut q, t0) = queue(0.0);
    q.push(1, Placement::plain(0), t0);
    q.push(2, Placement::plain(1), t0 + ms(100_000));
    q.push(3, Placement::plain(0), t0 + ms(1));
    assert_eq!(pop_all(&mut q, t0 + ms(200_000)), vec![2, 1, 3]);
}

#[test]
fn removed_tasks_never_pop() {
    let (mut q, t0) = queue(10.0);
    let a = q.push(1, Placement::plain(0), t0);
    q.push(2, Placement::plain(0), t0);
    assert_eq!(q.remove(a).map(|p| p.job), Some(1));
    assert!(q.remove(a).is_none());
    assert_eq!(q.len(), 1);
    assert_eq!(pop_all(&mut q, t0), vec![2]);
    assert!(q.is_empty());
}

#[test]
fn a_reused_slot_is_not_confused_with_the_removed_task() {
    let (mut q, t0) = queue(10.0);
    let a = q.push(1, Placement::plain(0), t0);
    q.remove(a);
    let b = q.push(2, Placement::plain(0), t0);
    assert!(
        q.remove(a).is_none(),
        "old key must not remove the new task"
    );
    assert_eq!(q.remove(b).map(|p| p.job), Some(2));
}

#[test]
fn a_key_of_a_swept_level_does_not_remove_from_its_successor() {
    let (mut q, t0) = queue(10.0);
    let old = q.push(1, Placement::plain(0), t0);
    assert_eq!(pop_all(&mut q, t0), vec![1]);
    // Empty more levels than are kept, so level 0 is swept away, then made again.
    for p in 1..=(MAX_EMPTY_LEVELS as i32 + 1) {
        q.push(100, Placement::plain(p), t0);
    }
    pop_all(&mut q, t0);
    let new = q.push(2, Placement::plain(0), t0);
    assert!(
        q.remove(old).is_none(),
        "a key of the old level must not remove"
    );
    assert_eq!(q.remove(new).map(|p| p.job), Some(2));
}

#[test]
fn multiplier_change_rescoring_keeps_the_formula() {
    let (mut q, t0) = queue(10.0);
    q.push(1, Placement::plain(0), t0);
    q.push(2, Placement::plain(2), t0 + ms(400));
    let now = t0 + ms(500);
    // multiplier 1: task 1 has 2 points, task 2 has 2 + 0.4 => task 2 first.
    // multiplier 0.25: task 1 has 8 points, task 2 has 2 + 1.6 => task 1 first.
    q.set_multiplier(0.25);
    assert_eq!(pop_all(&mut q, now), vec![1, 2]);
}

#[test]
fn pop_order_matches_a_brute_force_model() {
    // Strict priority, a cap that lower levels reach, and one that stops the scan early.
    for max_boost in [0.0, 1.0, 3.0, 10.0] {
        pop_order_matches_the_model_with(max_boost);
    }
}

/// Which of the model's tasks (priority, enqueued at, arrival number) should pop next: the
/// highest effective priority, then the oldest, then the higher base priority, then FIFO.
/// Effective priorities are compared exactly, in integers: times the aging step (250 ms at
/// multiplier 1, the tests' queue), `base + min(max_boost, waited / step)` is
/// `base × step + min(max_boost × step, waited)` nanoseconds (for a whole `max_boost`).
fn model_next(max_boost: f64, tasks: impl Iterator<Item = (i32, Ticks, u64)>, now: Ticks) -> usize {
    const STEP: i128 = 250_000_000;
    assert_eq!(max_boost.fract(), 0.0, "the model takes whole caps");
    let cap = max_boost as i128 * STEP;
    let times_step = |priority: i32, at: Ticks| {
        i128::from(priority) * STEP + i128::from(now.nanos_since(at)).min(cap)
    };
    tasks
        .enumerate()
        .max_by(|(_, a), (_, b)| {
            times_step(a.0, a.1)
                .cmp(&times_step(b.0, b.1))
                .then(b.1.cmp(&a.1))
                .then(a.0.cmp(&b.0))
                .then(b.2.cmp(&a.2))
        })
        .map(|(i, _)| i)
        .expect("model has tasks")
}

fn pop_order_matches_the_model_with(max_boost: f64) {
    let (mut q, t0) = queue(max_boost);
    let mut rng = fastrand::Rng::with_seed(7);
    let mut model: Vec<(u32, i32, Ticks, u64)> = Vec::new();
    let mut now = t0;
    let mut seq = 0;
    for id in 0..2_000u32 {
        now += ms(rng.u64(0..40));
        if rng.u8(0..3) == 0 && !model.is_empty() {
            let popped = q.pop(now, |_| true).expect("queue has tasks").job;
            let best = model_next(max_boost, model.iter().map(|t| (t.1, t.2, t.3)), now);
            let expected = model.remove(best).0;
            assert_eq!(popped, expected, "at step {id}, max boost {max_boost}");
        } else {
            let priority = rng.i32(-3..4);
            q.push(id, Placement::plain(priority), now);
            model.push((id, priority, now, seq));
            seq += 1;
        }
    }
}

#[test]
fn pop_order_with_removals_matches_the_model() {
    for max_boost in [0.0, 3.0, 10.0] {
        pop_order_with_removals_matches_the_model_with(max_boost, false);
    }
}

/// A hundred levels, all waiting at once (more than a short scan of levels would be tuned
/// for), filled and drained twice: the pop order still follows the model.
#[test]
fn pop_order_with_a_hundred_levels_matches_the_model() {
    for max_boost in [0.0, 10.0] {
        let (mut q, t0) = queue(max_boost);
        let mut rng = fastrand::Rng::with_seed(5);
        let mut model: Vec<(u32, i32, Ticks, u64)> = Vec::new();
        let mut now = t0;
        for id in 0..4_000u32 {
            now += ms(rng.u64(0..40));
            // Filling for a while, then draining, twice.
            let fill = if id % 2_000 < 1_000 { 4 } else { 1 };
            if rng.u8(0..5) >= fill && !model.is_empty() {
                let popped = q.pop(now, |_| true).expect("queue has tasks").job;
                let best = model_next(max_boost, model.iter().map(|t| (t.1, t.2, t.3)), now);
                assert_eq!(popped, model.remove(best).0, "at step {id}");
            } else {
                let priority = rng.i32(0..100);
                q.push(id, Placement::plain(priority), now);
                model.push((id, priority, now, u64::from(id)));
            }
        }
    }
}

/// Levels whose tasks are a tenant's (every even priority its own tenant: one lane per
/// level, so the model's order still holds) beside levels without tenants: the scan asks the
/// former and reads the latter's heads.
#[test]
fn pop_order_with_tenants_levels_matches_the_model() {
    for max_boost in [0.0, 3.0, 10.0] {
        pop_order_with_removals_matches_the_model_with(max_boost, true);
    }
}

fn pop_order_with_removals_matches_the_model_with(max_boost: f64, tenants: bool) {
    let (mut q, t0) = queue(max_boost);
    let mut rng = fastrand::Rng::with_seed(11);
    let mut model: Vec<(u32, i32, Ticks, u64, QueueKey)> = Vec::new();
    let mut now = t0;
    for id in 0..3_000u32 {
        now += ms(rng.u64(0..40));
        match rng.u8(0..6) {
            // Removal, often of a level's head (the oldest of its priority).
            0 | 1 if !model.is_empty() => {
                let victim = if rng.bool() {
                    rng.usize(0..model.len())
                } else {
                    let priority = model[rng.usize(0..model.len())].1;
                    model.iter().position(|t| t.1 == priority).expect("exists")
                };
                let (job, .., key) = model.remove(victim);
                assert_eq!(q.remove(key).map(|p| p.job), Some(job), "at step {id}");
            }
            2 if !model.is_empty() => {
                let popped = q.pop(now, |_| true).expect("queue has tasks").job;
                let best = model_next(max_boost, model.iter().map(|t| (t.1, t.2, t.3)), now);
                assert_eq!(
                    popped,
                    model.remove(best).0,
                    "at step {id}, max boost {max_boost}"
                );
            }
            _ => {
                // Few priorities at times, many at others: levels empty, are swept and
                // come back.
                let spread = if id % 1_000 < 500 { 2 } else { 12 };
                let priority = rng.i32(0..spread);
                let placement = match priority % 2 {
                    0 if tenants => Placement {
                        lane: LaneId(priority as u32 + 1),
                        ..Placement::plain(priority)
                    },
                    _ => Placement::plain(priority),
                };
                let key = q.push(id, placement, now);
                model.push((id, priority, now, u64::from(id), key));
            }
        }
    }
}

#[test]
fn tombstones_do_not_accumulate() {
    let (mut q, t0) = queue(1.0);
    let keys: Vec<_> = (0..1_000)
        .map(|i| q.push(i, Placement::plain(i as i32 % 3), t0))
        .collect();
    for key in keys.iter().skip(1) {
        assert!(q.remove(*key).is_some());
    }
    assert_eq!(q.len(), 1);
    assert_eq!(pop_all(&mut q, t0), vec![0]);
    assert!(
        q.levels.iter().all(|level| level.slots() == 0),
        "emptied levels hold no tombstones"
    );
}

fn tenant(lane: u32, weight: u32) -> Placement {
    Placement {
        priority: 0,
        lane: LaneId(lane),
        weight,
        deadline: None,
    }
}

/// The lanes of the next `n` pops (tasks are numbered by lane × 1000 + index).
fn lanes_of_pops(q: &mut AgingQueue<u32>, now: Ticks, n: usize) -> Vec<u32> {
    (0..n)
        .map_while(|_| q.pop(now, |_| true))
        .map(|p| p.lane.0)
        .collect()
}

#[test]
fn tenants_of_one_level_take_turns_by_weight() {
    let (mut q, t0) = queue(10.0);
    for lane in 1..=3 {
        let weight = [1, 2, 5][lane as usize - 1];
        for i in 0..100 {
            q.push(lane * 1000 + i, tenant(lane, weight), t0);
        }
    }
    // One round: lane 1 once, lane 2 twice, lane 3 five times; then again.
    assert_eq!(
        lanes_of_pops(&mut q, t0, 16),
        vec![1, 2, 2, 3, 3, 3, 3, 3, 1, 2, 2, 3, 3, 3, 3, 3]
    );
    // Within a lane, FIFO.
    let firsts: Vec<_> = (0..8)
        .filter_map(|_| q.pop(t0, |_| true))
        .map(|p| p.job)
        .collect();
    assert_eq!(firsts, vec![1002, 2004, 2005, 3010, 3011, 3012, 3013, 3014]);
}

#[test]
fn a_newcomer_starts_within_one_round_and_an_idle_tenant_leaves_it() {
    let (mut q, t0) = queue(10.0);
    for i in 0..50 {
        q.push(1000 + i, tenant(1, 3), t0);
        q.push(2000 + i, tenant(2, 3), t0);
    }
    assert_eq!(lanes_of_pops(&mut q, t0, 2), vec![1, 1]);
    q.push(3000, tenant(3, 1), t0);
    // Lane 1 finishes its turn, lane 2 takes its own, then the newcomer.
    assert_eq!(lanes_of_pops(&mut q, t0, 5), vec![1, 2, 2, 2, 3]);
    // Lane 3 is dry: the round is lanes 1 and 2 again, nothing wasted on lane 3.
    assert_eq!(lanes_of_pops(&mut q, t0, 6), vec![1, 1, 1, 2, 2, 2]);
}

#[test]
fn the_lane_without_a_tenant_shares_the_round_once_a_tenant_comes_and_goes() {
    let (mut q, t0) = queue(10.0);
    for i in 0..6 {
        q.push(i, Placement::plain(0), t0);
    }
    assert_eq!(lanes_of_pops(&mut q, t0, 2), vec![0, 0]);
    q.push(1000, tenant(1, 1), t0);
    q.push(1001, tenant(1, 1), t0);
    // The default lane (weight 1) and the newcomer take turns; then the default lane alone.
    let order: Vec<_> = std::iter::from_fn(|| q.pop(t0, |_| true).map(|p| p.job)).collect();
    assert_eq!(order, vec![2, 1000, 3, 1001, 4, 5]);
    // A lane the default one held while alone is kept, and FIFO again.
    let removed = q.push(6, Placement::plain(0), t0);
    q.push(7, Placement::plain(0), t0);
    assert_eq!(q.remove(removed).map(|p| p.job), Some(6));
    assert_eq!(pop_all(&mut q, t0), vec![7]);
    assert!(q.is_empty());
}

#[test]
fn a_tenant_that_may_not_start_keeps_its_place_and_others_go_on() {
    let (mut q, t0) = queue(10.0);
    for i in 0..10 {
        q.push(1000 + i, tenant(1, 1), t0);
        q.push(2000 + i, tenant(2, 1), t0);
    }
    let blocked = |lane: LaneId| lane != LaneId(1);
    let lanes: Vec<_> = (0..3)
        .filter_map(|_| q.pop(t0, blocked))
        .map(|p| p.lane.0)
        .collect();
    assert_eq!(
        lanes,
        vec![2, 2, 2],
        "work-conserving: lane 2 runs while 1 may not"
    );
    assert_eq!(q.pop(t0, |_| false).map(|p| p.job), None);
    // Lane 1 kept its turn: it goes first once it may.
    assert_eq!(lanes_of_pops(&mut q, t0, 3), vec![1, 2, 1]);
}

#[test]
fn aging_picks_the_level_and_fair_share_the_tenant_within_it() {
    let (mut q, t0) = queue(10.0);
    // Priority 0: two tenants, entered long ago; priority 3: fresh tasks.
    q.push(1, tenant(1, 1), t0);
    q.push(2, tenant(2, 1), t0);
    let later = t0 + ms(2000); // 8 points of aging for the old ones
    q.push(3, Placement::plain(3), later);
    assert_eq!(pop_all(&mut q, later), vec![1, 2, 3]);
}

#[test]
fn removal_finds_a_task_in_its_lane_and_not_in_a_later_lane() {
    let (mut q, t0) = queue(10.0);
    let a = q.push(1, tenant(5, 2), t0);
    q.push(2, tenant(6, 1), t0);
    assert_eq!(q.remove(a).map(|p| (p.job, p.lane)), Some((1, LaneId(5))));
    // Lane 5 ran dry; a pop passes it and drops it; a new lane 5 is another lane.
    assert_eq!(pop_all(&mut q, t0), vec![2]);
    let b = q.push(3, tenant(5, 2), t0);
    assert!(
        q.remove(a).is_none(),
        "a key of the old lane removes nothing"
    );
    assert_eq!(q.remove(b).map(|p| p.job), Some(3));
    assert!(q.is_empty());
}

#[test]
fn earliest_deadline_first_orders_each_lane_by_deadline() {
    let epoch = Ticks::default();
    let aging = AgingSettings {
        interval: Duration::from_millis(250),
        max_boost: 10.0,
    };
    let mut q = AgingQueue::new(aging, true);
    let due = |job: u32, deadline: Option<u64>| {
        (
            job,
            Placement {
                deadline: deadline.map(|d| epoch + ms(d)),
                ..Placement::plain(0)
            },
        )
    };
    let mut keys = Vec::new();
    for (job, placement) in [
        due(1, None),
        due(2, Some(50)),
        due(3, Some(10)),
        due(4, None),
        due(5, Some(30)),
    ] {
        keys.push(q.push(job, placement, epoch));
    }
    assert_eq!(q.remove(keys[4]).map(|p| p.job), Some(5));
    assert_eq!(pop_all(&mut q, epoch), vec![3, 2, 1, 4]);
}

#[test]
fn drain_gives_every_task_of_every_lane() {
    let (mut q, t0) = queue(10.0);
    for i in 0..30u32 {
        q.push(i, tenant(i % 3, 1 + i % 2), t0);
    }
    let mut drained: Vec<_> = q.drain_all().into_iter().map(|p| p.job).collect();
    drained.sort_unstable();
    assert_eq!(drained, (0..30).collect::<Vec<_>>());
    assert!(q.is_empty());
}

#[test]
fn the_formula_holds_at_its_extremes() {
    // Waits past 2^63 ns (292 years) count as 2^63 ns.
    let as_float = |waited: u64| waited.min(1 << 63) as f64;
    let reference =
        |step_nanos: f64, cap: f64, waited: u64| 1.0 + (as_float(waited) / step_nanos).min(cap);
    // Steps of 250 ms, 1 ns, 1e-3 ns, 10^21 ns.
    for (interval, multiplier, cap) in [
        (250e6, 1.0, 10.0),
        (1.0, 1.0, 3.0),
        (1.0, 1e-3, 2.0),
        (1e21, 1.0, 5.0),
    ] {
        let scale = Scale::new(interval, cap, multiplier);
        let step = interval * multiplier;
        for waited in [
            0,
            1,
            999,
            1 << 40,
            i64::MAX as u64,
            (i64::MAX as u64) + 1,
            u64::MAX,
        ] {
            let expected = reference(step, cap, waited);
            let effective = scale.effective(1, 0, waited);
            assert!(
                (effective - expected).abs() <= expected * 1e-15,
                "step {step}, cap {cap}, waited {waited}: {effective} against {expected}"
            );
            // The rank is the effective priority times the step.
            assert_eq!(
                scale.rank(scale.base(1), 0, waited),
                step + as_float(waited).min(cap * step)
            );
        }
    }
    // A task stamped after `now` (another thread's clock read) has waited nothing.
    assert_eq!(Scale::new(250e6, 10.0, 1.0).effective(2, 10, 5), 2.0);
    // No aging: the base priority alone.
    assert_eq!(Scale::new(250e6, 0.0, 1.0).effective(2, 0, u64::MAX), 2.0);
}

#[test]
fn equal_effective_priorities_tie_exactly() {
    // Priority 0 after 250 ms and priority 1 fresh are both at 1: the earlier enqueued wins.
    let (mut q, t0) = queue(10.0);
    q.push(1, Placement::plain(1), t0 + ms(250));
    q.push(2, Placement::plain(0), t0);
    assert_eq!(pop_all(&mut q, t0 + ms(250)), vec![2, 1]);
    // At multiplier 0.4 (100 ms per point), 0 after 250 ms, 1 after 150 ms and 2 after 50 ms
    // are all at 2.5; one more nanosecond of wait would put the latest first.
    q.set_multiplier(0.4);
    let now = t0 + ms(250);
    q.push(3, Placement::plain(0), t0);
    q.push(4, Placement::plain(1), t0 + ms(100));
    q.push(5, Placement::plain(2), t0 + ms(200));
    assert_eq!(pop_all(&mut q, now), vec![3, 4, 5]);
    q.push(6, Placement::plain(0), t0);
    q.push(
        7,
        Placement::plain(2),
        t0 + Duration::from_nanos(199_999_999),
    );
    assert_eq!(pop_all(&mut q, now), vec![7, 6]);
}

#[test]
fn tasks_stamped_at_the_last_ticks_still_pop() {
    // A clock 584 years on saturates at the last tick: such tasks are waiting like any other
    // (a head that took the last tick for "empty" left them queued forever).
    let (mut q, _) = queue(10.0);
    let last = Ticks::from_nanos(u64::MAX);
    let before = Ticks::from_nanos(u64::MAX - 1);
    q.push(1, Placement::plain(i32::MIN), last);
    q.push(2, Placement::plain(i32::MAX), before);
    q.push(3, Placement::plain(0), last);
    q.push(4, tenant(7, 1), before);
    assert_eq!(pop_all(&mut q, last), vec![2, 3, 4, 1]);
    assert!(q.is_empty());
}
