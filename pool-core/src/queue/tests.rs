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
fn model_next(
    q: &AgingQueue<u32>,
    tasks: impl Iterator<Item = (i32, Ticks, u64)>,
    now: Ticks,
) -> usize {
    tasks
        .enumerate()
        .max_by(|(_, a), (_, b)| {
            q.effective(a.0, a.1, now)
                .total_cmp(&q.effective(b.0, b.1, now))
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
            let best = model_next(&q, model.iter().map(|t| (t.1, t.2, t.3)), now);
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
                    let best = model_next(&q, model.iter().map(|t| (t.1, t.2, t.3)), now);
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
                    let key = q.push(id, Placement::plain(priority), now);
                    model.push((id, priority, now, u64::from(id), key));
                }
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
        q.levels.iter().all(|(_, level)| level.slots() == 0),
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
    let reference = |scale_step: f64, cap: f64, waited: u64| {
        (waited as f64 * (1.0 / (scale_step * 1e9))).min(cap)
    };
    for (step, cap) in [(0.25, 10.0), (1e-12, 3.0), (0.0, 2.0), (1e12, 5.0)] {
        let scale = Scale::new(step, cap);
        for waited in [
            0,
            1,
            999,
            1 << 40,
            i64::MAX as u64,
            (i64::MAX as u64) + 1,
            u64::MAX,
        ] {
            let expected = 1.0 + reference(step, cap, waited);
            assert_eq!(
                scale.effective(1, 0, waited),
                expected,
                "step {step}, cap {cap}, waited {waited}"
            );
        }
    }
    // A task stamped after `now` (another thread's clock read) has waited nothing.
    assert_eq!(Scale::new(0.25, 10.0).effective(2, 10, 5), 2.0);
}
