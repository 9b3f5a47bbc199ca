//! An admission policy is one piece: the permit it grants comes back to it with how the
//! attempt ended (`Admission::complete`), on every executor.

use crate::support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use pool_core::{
    Admission, AdmissionPermit, AttemptResult, BoxFuture, ErrorClass, Rejection, RejectionKind,
    Retryable, TaskError, TaskId, TaskInfo, TaskOptions,
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

on_every_executor!(
    each_permit_learns_how_its_attempt_ended,
    a_permit_granted_before_a_refusal_learns_the_attempt_was_rejected,
);

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
