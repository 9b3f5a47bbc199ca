//! Weighted fair share between tenants, on tokio (paused time) and on `SimExecutor`: shares
//! by weight in a saturated pool, a newcomer's first start within one round, an idle
//! tenant's share used by the others, a tenant's own limit, composition with priorities and
//! aging, and the per-tenant counts.

use crate::support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pool_core::{
    CancellationToken, Event, Pool, TaskError, TaskHandle, TaskOptions, Tenant, TenantConfig,
};
use support::{Env, InFlight, Recorder};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

type Handle = TaskHandle<(), std::io::Error>;

/// What the tasks of a run saw: the tenant of each start, in order, and each completion.
#[derive(Clone, Default)]
struct Log {
    starts: Arc<Mutex<Vec<&'static str>>>,
    completions: Arc<Mutex<Vec<(&'static str, Instant)>>>,
}

impl Log {
    fn starts(&self) -> Vec<&'static str> {
        self.starts.lock().unwrap().clone()
    }

    /// Completions per tenant within `[from, to)`.
    fn completed_between(&self, from: Instant, to: Instant) -> HashMap<&'static str, usize> {
        let mut counts = HashMap::new();
        for (tenant, at) in self.completions.lock().unwrap().iter() {
            if (from..to).contains(at) {
                *counts.entry(*tenant).or_default() += 1;
            }
        }
        counts
    }
}

/// Queues a task of `tenant` that takes `duration` (on the pool's clock), logging its start
/// and its completion.
fn task(env: &Env, pool: &Pool, log: &Log, tenant: &'static str, duration: Duration) -> Handle {
    let (env, log) = (env.clone(), log.clone());
    pool.enqueue(
        move || {
            log.starts.lock().unwrap().push(tenant);
            let (env, log) = (env.clone(), log.clone());
            async move {
                env.sleep(duration).await;
                log.completions.lock().unwrap().push((tenant, env.now()));
                Ok(())
            }
        },
        TaskOptions::new().tenant(tenant),
    )
}

/// Jain's fairness index of `values`: 1 when all are equal, 1/n when one has everything.
fn jain(values: &[f64]) -> f64 {
    let sum: f64 = values.iter().sum();
    let squares: f64 = values.iter().map(|v| v * v).sum();
    sum * sum / (values.len() as f64 * squares)
}

on_every_executor!(
    three_weighted_tenants_share_a_saturated_pool_by_weight,
    a_newcomer_tenant_starts_within_one_round,
    an_idle_tenant_share_goes_to_the_others,
    a_tenant_limit_caps_its_slots_without_holding_up_others,
    tenants_share_within_a_priority_level_and_aging_still_lifts_the_lower_one,
    per_tenant_counts_follow_queue_and_slots_and_forget_idle_tenants,
    events_name_the_tenant,
);

async fn three_weighted_tenants_share_a_saturated_pool_by_weight(env: Env) {
    let weights = [("a", 1u32), ("b", 2), ("c", 5)];
    let mut builder = env.builder().concurrency(8).no_pressure_rule();
    for (tenant, weight) in weights {
        builder = builder.tenant(tenant, TenantConfig::new().weight(weight));
    }
    let pool = builder.build().unwrap();
    let log = Log::default();
    let t0 = env.now();
    // Every tenant keeps far more tasks queued than the window serves (8 slots × 10 ms:
    // 800 completions a second), so the pool stays saturated by all three.
    let _handles: Vec<_> = (0..700)
        .flat_map(|_| weights.map(|(tenant, _)| task(&env, &pool, &log, tenant, ms(10))))
        .collect();
    env.sleep(ms(1_600)).await;
    let counts = log.completed_between(t0 + ms(100), t0 + ms(1_300));
    let total: usize = counts.values().sum();
    assert_eq!(
        total,
        8 * 120,
        "saturated: every slot busy through the window"
    );
    let mut weighted = Vec::new();
    for (tenant, weight) in weights {
        let share = counts[tenant] as f64 / total as f64;
        let expected = f64::from(weight) / 8.0;
        assert!(
            (share - expected).abs() <= 0.05 * expected,
            "{tenant}: share {share:.4}, expected {expected:.4} ± 5 %: {counts:?}"
        );
        weighted.push(counts[tenant] as f64 / f64::from(weight));
    }
    let index = jain(&weighted);
    assert!(index >= 0.99, "Jain index {index:.4}: {counts:?}");
    pool.stop_now();
}

async fn a_newcomer_tenant_starts_within_one_round(env: Env) {
    // One slot, so starts are a sequence; weights 1 + 2 + 5: a round is 8 starts.
    let pool = env
        .builder()
        .concurrency(1)
        .tenant("b", TenantConfig::new().weight(2))
        .tenant("c", TenantConfig::new().weight(5))
        .build()
        .unwrap();
    let log = Log::default();
    let _old: Vec<_> = (0..100)
        .flat_map(|_| ["a", "b", "c"].map(|tenant| task(&env, &pool, &log, tenant, ms(10))))
        .collect();
    env.sleep(ms(125)).await;
    let before = log.starts().len();
    let newcomer = task(&env, &pool, &log, "d", ms(10));
    env.sleep(ms(200)).await;
    let starts = log.starts();
    let at = starts
        .iter()
        .position(|tenant| *tenant == "d")
        .expect("the newcomer started");
    assert!(
        at - before <= 8,
        "the newcomer waited {} starts (a round is 8): {:?}",
        at - before,
        &starts[before..=at]
    );
    newcomer.await.unwrap();
    pool.stop_now();
}

async fn an_idle_tenant_share_goes_to_the_others(env: Env) {
    let pool = env
        .builder()
        .concurrency(4)
        .tenant("big", TenantConfig::new().weight(5))
        .build()
        .unwrap();
    let log = Log::default();
    let t0 = env.now();
    // "big" (weight 5) waits for nothing yet: "small" has every slot.
    let _small: Vec<_> = (0..400)
        .map(|_| task(&env, &pool, &log, "small", ms(10)))
        .collect();
    env.sleep(ms(500)).await;
    let alone = log.completed_between(t0, t0 + ms(500));
    // 4 slots each completing at 10, 20, …, 490 ms.
    assert_eq!(alone.get("small"), Some(&196), "every slot busy: {alone:?}");
    // Now "big" has work: 5 to 1.
    let _big: Vec<_> = (0..400)
        .map(|_| task(&env, &pool, &log, "big", ms(10)))
        .collect();
    env.sleep(ms(700)).await;
    let shared = log.completed_between(t0 + ms(600), t0 + ms(1_200));
    let (small, big) = (shared["small"], shared["big"]);
    assert_eq!(small + big, 240, "still saturated: {shared:?}");
    assert!(
        (35..=45).contains(&small),
        "small got {small} of 240 (1/6 is 40)"
    );
    pool.stop_now();
}

async fn a_tenant_limit_caps_its_slots_without_holding_up_others(env: Env) {
    let pool = env
        .builder()
        .concurrency(8)
        .tenant("capped", TenantConfig::new().weight(10).max_in_flight(2))
        .build()
        .unwrap();
    let (capped, other) = (InFlight::default(), InFlight::default());
    let enqueue = |tenant: &'static str, in_flight: &InFlight| {
        let (env, in_flight) = (env.clone(), in_flight.clone());
        pool.enqueue(
            move || {
                let (env, in_flight) = (env.clone(), in_flight.clone());
                async move {
                    let _running = in_flight.enter();
                    env.sleep(ms(10)).await;
                    Ok::<_, std::io::Error>(())
                }
            },
            TaskOptions::new().tenant(tenant),
        )
    };
    let capped_handles: Vec<_> = (0..10).map(|_| enqueue("capped", &capped)).collect();
    let other_handles: Vec<_> = (0..120).map(|_| enqueue("other", &other)).collect();
    env.settle().await;
    let stats = pool.tenants();
    let of = |name: &str| {
        stats
            .iter()
            .find(|s| s.tenant.as_ref().map(Tenant::as_str) == Some(name))
            .cloned()
            .expect("listed")
    };
    assert_eq!(of("capped").in_flight, 2);
    assert_eq!(of("capped").max_in_flight, Some(2));
    assert_eq!(
        of("other").in_flight,
        6,
        "the rest of the slots: work-conserving"
    );
    for handle in capped_handles.into_iter().chain(other_handles) {
        handle.await.unwrap();
    }
    assert_eq!(
        capped.max(),
        2,
        "never above its own limit, weight 10 or not"
    );
    assert_eq!(
        other.max(),
        8,
        "once capped had nothing left, other took every slot"
    );
    pool.drain().await;
    assert_eq!(pool.stats().succeeded, 130);
}

async fn tenants_share_within_a_priority_level_and_aging_still_lifts_the_lower_one(env: Env) {
    // Priority 5 has two tenants keeping one slot busy; a priority-0 task of a third tenant
    // must start once aging has lifted it (5 points at 250 ms each, multiplier in [0.25, 4]).
    let pool = env.builder().concurrency(1).build().unwrap();
    let log = Log::default();
    let started_at = Arc::new(Mutex::new(None::<Instant>));
    let t0 = env.now();
    let low = {
        let (env2, started_at) = (env.clone(), started_at.clone());
        pool.enqueue(
            move || {
                *started_at.lock().unwrap() = Some(env2.now());
                async { Ok::<_, std::io::Error>(()) }
            },
            TaskOptions::new().tenant("low").priority(0),
        )
    };
    let mut flood = Vec::new();
    for _ in 0..1_000 {
        if low.is_finished() {
            break;
        }
        for tenant in ["x", "y"] {
            let (env2, log2) = (env.clone(), log.clone());
            flood.push(pool.enqueue(
                move || {
                    log2.starts.lock().unwrap().push(tenant);
                    let env2 = env2.clone();
                    async move {
                        env2.sleep(ms(10)).await;
                        Ok::<_, std::io::Error>(())
                    }
                },
                TaskOptions::new().tenant(tenant).priority(5),
            ));
        }
        env.sleep(ms(10)).await;
    }
    let waited = started_at.lock().unwrap().expect("the low task ran") - t0;
    assert!(waited <= ms(5_200), "waited {waited:?}");
    let starts = log.starts();
    let xs = starts.iter().filter(|t| **t == "x").count();
    let ys = starts.len() - xs;
    assert!(xs.abs_diff(ys) <= 1, "x and y take turns: {xs} / {ys}");
    pool.stop_now();
}

async fn per_tenant_counts_follow_queue_and_slots_and_forget_idle_tenants(env: Env) {
    let pool = env.builder().concurrency(2).build().unwrap();
    let log = Log::default();
    let token = CancellationToken::new();
    let cancelled = {
        let options = TaskOptions::new().tenant("t").cancellation(token.clone());
        pool.enqueue(|| async { Ok::<_, std::io::Error>(()) }, options)
    };
    // Enqueued while paused, so everything waits.
    pool.pause();
    let handles: Vec<_> = (0..5)
        .map(|_| task(&env, &pool, &log, "t", ms(10)))
        .collect();
    let plain = pool.enqueue(|| async { Ok::<_, std::io::Error>(()) }, TaskOptions::new());
    let queued = |pool: &Pool, name: Option<&str>| {
        pool.tenants()
            .into_iter()
            .find(|s| s.tenant.as_ref().map(Tenant::as_str) == name)
            .map(|s| (s.queued, s.in_flight))
    };
    env.settle().await;
    assert_eq!(
        queued(&pool, Some("t")),
        Some((5, 0)),
        "the first task ran already"
    );
    assert_eq!(queued(&pool, None), Some((1, 0)));
    pool.resume();
    env.settle().await;
    assert_eq!(queued(&pool, Some("t")).map(|(q, r)| q + r), Some(5));
    token.cancel();
    assert!(matches!(
        cancelled.await,
        Ok(()) | Err(TaskError::Cancelled)
    ));
    for handle in handles {
        handle.await.unwrap();
    }
    plain.await.unwrap();
    pool.drain().await;
    assert_eq!(
        queued(&pool, Some("t")),
        None,
        "an idle tenant is forgotten"
    );
    assert_eq!(
        queued(&pool, None),
        Some((0, 0)),
        "tasks without a tenant stay listed"
    );
    // Stopped with tenants queued: every count back to nothing.
    pool.pause();
    let stopped: Vec<_> = (0..3)
        .map(|_| task(&env, &pool, &log, "u", ms(1)))
        .collect();
    pool.stop().await;
    for handle in stopped {
        assert!(matches!(handle.await, Err(TaskError::Stopped)));
    }
    assert_eq!(queued(&pool, Some("u")), None);
    assert!(pool.stats().in_balance());
}

async fn events_name_the_tenant(env: Env) {
    let recorder = Recorder::default();
    let pool = env.builder().observer(recorder.clone()).build().unwrap();
    let handle = pool.enqueue(
        || async { Ok::<_, std::io::Error>(()) },
        TaskOptions::new().tenant("acme"),
    );
    handle.await.unwrap();
    pool.enqueue(|| async { Ok::<_, std::io::Error>(()) }, TaskOptions::new())
        .await
        .unwrap();
    let tenants: Vec<_> = recorder
        .events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|event| match event {
            Event::TaskFinished(record) => Some(record.task.tenant.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(tenants, vec![Some(Tenant::from("acme")), None]);
}
