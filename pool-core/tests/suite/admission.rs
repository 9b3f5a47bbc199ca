//! An admission policy is one piece: the permit it grants comes back to it with how the
//! attempt ended (`Admission::complete`), on every executor.

use crate::support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pool_core::{
    Admission, AdmissionPermit, AttemptResult, BoxFuture, ErrorClass, Precheck, Rejection,
    RejectionKind, Retryable, TaskError, TaskId, TaskInfo, TaskOptions,
};
use support::Env;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("test error ({0:?})")]
struct Oops(ErrorClass);

impl Retryable for Oops {
    fn error_class(&self) -> ErrorClass {
        self.0
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Grants each attempt a permit naming its task, and writes down what each permit learns.
#[derive(Debug, Clone, Default)]
struct Ledger {
    granted: Arc<Mutex<Vec<TaskId>>>,
    completed: Arc<Mutex<Vec<(TaskId, AttemptResult)>>>,
}

impl Admission for Ledger {
    fn acquire(&self, task: &TaskInfo) -> BoxFuture<Result<AdmissionPermit, Rejection>> {
        self.granted.lock().unwrap().push(task.id);
        let permit = AdmissionPermit::holding(task.id);
        Box::pin(std::future::ready(Ok(permit)))
    }

    fn complete(&self, permit: AdmissionPermit, result: &AttemptResult) {
        let task = permit
            .downcast::<TaskId>()
            .expect("the permit this policy granted");
        self.completed.lock().unwrap().push((task, *result));
    }
}

impl Ledger {
    fn results_of(&self, task: TaskId) -> Vec<AttemptResult> {
        let completed = self.completed.lock().unwrap();
        completed
            .iter()
            .filter(|(id, _)| *id == task)
            .map(|(_, result)| *result)
            .collect()
    }
}

/// Refuses every attempt.
#[derive(Debug)]
struct Refuse;

impl Admission for Refuse {
    fn acquire(&self, _task: &TaskInfo) -> BoxFuture<Result<AdmissionPermit, Rejection>> {
        let refusal = Rejection::new(RejectionKind::RateLimited, "no");
        Box::pin(std::future::ready(Err(refusal)))
    }
}

/// Answers through `try_acquire` for tasks of priority 1 (a permit) and 2 (a refusal), and
/// leaves the others to `acquire`; counts the calls of each.
#[derive(Debug, Clone, Default)]
struct AtOnce {
    tried: Arc<Mutex<Vec<TaskId>>>,
    acquired: Arc<Mutex<Vec<TaskId>>>,
    completed: Arc<Mutex<Vec<(TaskId, AttemptResult)>>>,
}

impl Admission for AtOnce {
    fn acquire(&self, task: &TaskInfo) -> BoxFuture<Result<AdmissionPermit, Rejection>> {
        self.acquired.lock().unwrap().push(task.id);
        Box::pin(std::future::ready(Ok(AdmissionPermit::holding(task.id))))
    }

    fn try_acquire(&self, task: &TaskInfo) -> Option<Result<AdmissionPermit, Rejection>> {
        self.tried.lock().unwrap().push(task.id);
        match task.priority {
            1 => Some(Ok(AdmissionPermit::holding(task.id))),
            2 => Some(Err(Rejection::new(RejectionKind::RateLimited, "not now"))),
            _ => None,
        }
    }

    fn complete(&self, permit: AdmissionPermit, result: &AttemptResult) {
        let task = permit.downcast::<TaskId>().expect("this policy's permit");
        self.completed.lock().unwrap().push((task, *result));
    }
}

/// Answers through `try_admit` for tasks of priority 1 (a permit) and 2 (a refusal); notes
/// every call by name.
#[derive(Debug, Clone, Default)]
struct Combined {
    calls: Arc<Mutex<Vec<(&'static str, i32)>>>,
}

impl Combined {
    fn note(&self, call: &'static str, task: &TaskInfo) {
        self.calls.lock().unwrap().push((call, task.priority));
    }

    fn calls(&self, priority: i32) -> Vec<&'static str> {
        let calls = self.calls.lock().unwrap();
        calls
            .iter()
            .filter(|(_, p)| *p == priority)
            .map(|(call, _)| *call)
            .collect()
    }
}

impl Admission for Combined {
    fn acquire(&self, task: &TaskInfo) -> BoxFuture<Result<AdmissionPermit, Rejection>> {
        self.note("acquire", task);
        Box::pin(std::future::ready(Ok(AdmissionPermit::empty())))
    }

    fn try_admit(
        &self,
        task: &TaskInfo,
        _now: Option<Instant>,
    ) -> Option<Result<AdmissionPermit, Rejection>> {
        self.note("try_admit", task);
        match task.priority {
            1 => Some(Ok(AdmissionPermit::empty())),
            2 => Some(Err(Rejection::new(RejectionKind::RateLimited, "not now"))),
            _ => None,
        }
    }

    fn precheck(&self, task: &TaskInfo) -> Precheck {
        self.note("precheck", task);
        Precheck::Proceed
    }
}

/// Says it learns nothing from its attempts (`wants_complete`: false), so its `complete`,
/// which counts its calls, must never be called. Each permit holds a guard (counted while
/// alive) unless `empty`; through `try_admit` when `at_once`, else through `acquire`.
#[derive(Debug, Clone, Default)]
struct Forgetful {
    alive: Arc<AtomicUsize>,
    completed: Arc<AtomicUsize>,
    empty: bool,
    at_once: bool,
}

/// Counted in [`Forgetful::alive`] until dropped.
struct Guard(Arc<AtomicUsize>);

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Forgetful {
    fn permit(&self) -> AdmissionPermit {
        if self.empty {
            return AdmissionPermit::empty();
        }
        self.alive.fetch_add(1, Ordering::SeqCst);
        AdmissionPermit::holding(Guard(self.alive.clone()))
    }
}

impl Admission for Forgetful {
    fn acquire(&self, _task: &TaskInfo) -> BoxFuture<Result<AdmissionPermit, Rejection>> {
        Box::pin(std::future::ready(Ok(self.permit())))
    }

    fn try_admit(
        &self,
        _task: &TaskInfo,
        _now: Option<Instant>,
    ) -> Option<Result<AdmissionPermit, Rejection>> {
        self.at_once.then(|| Ok(self.permit()))
    }

    fn complete(&self, permit: AdmissionPermit, _result: &AttemptResult) {
        self.completed.fetch_add(1, Ordering::SeqCst);
        drop(permit);
    }

    fn wants_complete(&self) -> bool {
        false
    }
}

on_every_executor!(
    a_lone_policy_answers_precheck_and_acquire_in_one_try_admit,
    each_permit_learns_how_its_attempt_ended,
    a_permit_granted_before_a_refusal_learns_the_attempt_was_rejected,
    an_answer_from_try_acquire_stands_for_acquire,
    a_policy_that_wants_no_complete_is_not_called_and_its_permit_lives_as_long_as_the_attempt,
);

async fn a_lone_policy_answers_precheck_and_acquire_in_one_try_admit(env: Env) {
    let lone = Combined::default();
    let pool = env.builder().admission(lone.clone()).build().unwrap();
    let task = |priority| {
        pool.enqueue(
            || async { Ok::<_, Oops>(()) },
            TaskOptions::new().priority(priority).retries(0),
        )
    };
    let (admitted, refused, asked_on) = (task(1), task(2), task(0));
    assert!(admitted.await.is_ok());
    assert!(matches!(refused.await, Err(TaskError::Rejected(_))));
    assert!(asked_on.await.is_ok());
    assert_eq!(lone.calls(1), ["try_admit"], "admitted in one call");
    assert_eq!(lone.calls(2), ["try_admit"], "refused in one call");
    assert_eq!(lone.calls(0), ["try_admit", "precheck", "acquire"]);

    // Beside another policy, each is asked the usual way: prechecks first, then acquires.
    let (first, second) = (Combined::default(), Combined::default());
    let pool = env
        .builder()
        .admission(first.clone())
        .admission(second.clone())
        .build()
        .unwrap();
    let handle = pool.enqueue(
        || async { Ok::<_, Oops>(()) },
        TaskOptions::new().priority(1),
    );
    assert!(handle.await.is_ok());
    assert_eq!(first.calls(1), ["precheck", "acquire"]);
    assert_eq!(second.calls(1), ["precheck", "acquire"]);
}

async fn each_permit_learns_how_its_attempt_ended(env: Env) {
    let ledger = Ledger::default();
    let pool = env
        .builder()
        .retries(1)
        .retry_delay(ms(1))
        .timeout(ms(50))
        .admission(ledger.clone())
        .build()
        .unwrap();
    let succeeds = pool.enqueue(|| async { Ok::<_, Oops>(()) }, TaskOptions::new());
    let fatal = pool.enqueue(
        || async { Err::<(), _>(Oops(ErrorClass::Fatal)) },
        TaskOptions::new(),
    );
    let throttled_twice = pool.enqueue(
        || async { Err::<(), _>(Oops(ErrorClass::Throttled)) },
        TaskOptions::new(),
    );
    let sleeper = env.clone();
    let times_out = pool.enqueue(
        move || {
            let env = sleeper.clone();
            async move {
                env.sleep(ms(500)).await;
                Ok::<_, Oops>(())
            }
        },
        TaskOptions::new().retries(0),
    );
    let panics = pool.enqueue(
        || async {
            panic!("boom");
            #[allow(unreachable_code)]
            Ok::<(), Oops>(())
        },
        TaskOptions::new().retries(0),
    );
    let ids = [
        succeeds.id(),
        fatal.id(),
        throttled_twice.id(),
        times_out.id(),
        panics.id(),
    ];
    assert!(succeeds.await.is_ok());
    assert!(fatal.await.is_err());
    assert!(throttled_twice.await.is_err());
    assert!(matches!(times_out.await, Err(TaskError::TimedOut { .. })));
    assert!(matches!(panics.await, Err(TaskError::Panicked(_))));
    pool.drain().await;

    let expected = [
        vec![AttemptResult::Succeeded],
        vec![AttemptResult::Failed(ErrorClass::Fatal)],
        vec![AttemptResult::Failed(ErrorClass::Throttled); 2],
        vec![AttemptResult::TimedOut],
        vec![AttemptResult::Panicked],
    ];
    for (id, expected) in ids.into_iter().zip(expected) {
        assert_eq!(ledger.results_of(id), expected, "task {id}");
    }
    assert_eq!(
        ledger.granted.lock().unwrap().len(),
        ledger.completed.lock().unwrap().len(),
        "every permit granted came back once"
    );
}

async fn a_permit_granted_before_a_refusal_learns_the_attempt_was_rejected(env: Env) {
    let ledger = Ledger::default();
    let pool = env
        .builder()
        .admission(ledger.clone())
        .admission(Refuse)
        .build()
        .unwrap();
    let handle = pool.enqueue(|| async { Ok::<_, Oops>(()) }, TaskOptions::new());
    let id = handle.id();
    assert!(matches!(handle.await, Err(TaskError::Rejected(_))));
    assert_eq!(ledger.results_of(id), [AttemptResult::Rejected]);
}

async fn an_answer_from_try_acquire_stands_for_acquire(env: Env) {
    let policy = AtOnce::default();
    let pool = env.builder().admission(policy.clone()).build().unwrap();
    let task = |priority| {
        pool.enqueue(
            || async { Ok::<_, Oops>(()) },
            TaskOptions::new().priority(priority),
        )
    };
    let (at_once, refused, waited) = (task(1), task(2), task(0));
    let ids = [at_once.id(), refused.id(), waited.id()];
    assert!(at_once.await.is_ok());
    assert!(matches!(refused.await, Err(TaskError::Rejected(_))));
    assert!(waited.await.is_ok());
    pool.drain().await;

    let mut tried = policy.tried.lock().unwrap().clone();
    tried.sort();
    let mut all = ids.to_vec();
    all.sort();
    assert_eq!(tried, all, "every attempt asks try_acquire first");
    assert_eq!(
        *policy.acquired.lock().unwrap(),
        [ids[2]],
        "acquire only when try_acquire did not answer"
    );
    let mut completed = policy.completed.lock().unwrap().clone();
    completed.sort_by_key(|(id, _)| *id);
    let mut expected = vec![
        (ids[0], AttemptResult::Succeeded),
        (ids[2], AttemptResult::Succeeded),
    ];
    expected.sort_by_key(|(id, _)| *id);
    assert_eq!(completed, expected, "each permit granted comes back once");
}

async fn a_policy_that_wants_no_complete_is_not_called_and_its_permit_lives_as_long_as_the_attempt(
    env: Env,
) {
    for (empty, at_once) in [(false, false), (false, true), (true, true)] {
        let forgetful = Forgetful {
            empty,
            at_once,
            ..Forgetful::default()
        };
        let lone = env
            .builder()
            .concurrency(1)
            .retries(0)
            .admission(forgetful.clone())
            .build()
            .unwrap();
        // Beside a policy that learns: it still hears of every attempt, the other not.
        let ledger = Ledger::default();
        let paired = env
            .builder()
            .concurrency(1)
            .retries(1)
            .retry_delay(ms(1))
            .admission(forgetful.clone())
            .admission(ledger.clone())
            .build()
            .unwrap();
        let mut ids = Vec::new();
        // One pool after the other, one attempt at a time: only this attempt's permit lives.
        for pool in [&lone, &paired] {
            let handles: Vec<_> = [false, true]
                .into_iter()
                .map(|fails| {
                    let alive = forgetful.alive.clone();
                    let handle = pool.enqueue(
                        move || {
                            let held = alive.load(Ordering::SeqCst);
                            async move {
                                assert_eq!(held, usize::from(!empty), "the permit is held");
                                if fails {
                                    Err(Oops(ErrorClass::Retryable))
                                } else {
                                    Ok(())
                                }
                            }
                        },
                        TaskOptions::new(),
                    );
                    (handle, fails)
                })
                .collect();
            for (handle, fails) in handles {
                ids.push(handle.id());
                let result = handle.await;
                assert_eq!(result.is_err(), fails, "{result:?}");
            }
            pool.drain().await;
        }
        assert_eq!(
            forgetful.completed.load(Ordering::SeqCst),
            0,
            "never called"
        );
        assert_eq!(
            forgetful.alive.load(Ordering::SeqCst),
            0,
            "every permit dropped when its attempt ended"
        );
        assert_eq!(ledger.results_of(ids[2]), [AttemptResult::Succeeded]);
        assert_eq!(
            ledger.results_of(ids[3]),
            [AttemptResult::Failed(ErrorClass::Retryable); 2]
        );
    }
}
