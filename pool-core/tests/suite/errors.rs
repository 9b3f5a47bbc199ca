//! Errors as a user's report prints them: how a task ended, then its own error as the
//! source, each message once; wrappers that add nothing are transparent.

use std::error::Error;

use pool_core::{BatchError, LastFailure, Permanent, Pool, TaskError, TaskOptions, Transient};

/// What anyhow's `{:#}` prints: the error, then each source after `: `.
fn report(error: &dyn Error) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(cause) = next {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        next = cause.source();
    }
    text
}

#[derive(Debug, thiserror::Error)]
#[error("upload of {key} failed")]
struct UploadError {
    key: &'static str,
    #[source]
    cause: std::io::Error,
}

fn upload_error() -> UploadError {
    UploadError {
        key: "a.jpg",
        cause: std::io::Error::other("connection reset"),
    }
}

#[test]
fn a_failed_task_sources_its_own_error_and_prints_it_once() {
    let error = TaskError::Failed {
        error: Transient(upload_error()),
        attempts: 4,
    };
    assert_eq!(error.to_string(), "task failed after 4 attempt(s)");
    let source = error.source().expect("the task's own error");
    assert!(source.downcast_ref::<Transient<UploadError>>().is_some());
    assert_eq!(
        report(&error),
        "task failed after 4 attempt(s): upload of a.jpg failed: connection reset"
    );
}

#[test]
fn transient_and_permanent_print_and_source_as_what_they_wrap() {
    let transient = Transient(upload_error());
    assert_eq!(
        report(&transient),
        "upload of a.jpg failed: connection reset"
    );
    let permanent = Permanent(upload_error());
    assert_eq!(
        report(&permanent),
        "upload of a.jpg failed: connection reset"
    );
}

#[test]
fn an_exhausted_budget_sources_the_last_error_or_says_the_attempt_timed_out() {
    let error = TaskError::RetryBudgetExhausted {
        last: LastFailure::Error(upload_error()),
        attempts: 2,
    };
    assert_eq!(
        report(&error),
        "task failed after 2 attempt(s): the retry budget had no token for another: \
         upload of a.jpg failed: connection reset"
    );
    let timed_out = TaskError::<UploadError>::RetryBudgetExhausted {
        last: LastFailure::TimedOut,
        attempts: 2,
    };
    assert!(timed_out.source().is_none());
    assert!(timed_out
        .to_string()
        .ends_with("(the last attempt timed out)"));
}

#[test]
fn a_batch_error_names_its_item_and_sources_the_task_error_s_cause() {
    let error = BatchError {
        index: 7,
        error: TaskError::Failed {
            error: upload_error(),
            attempts: 1,
        },
    };
    assert_eq!(
        report(&error),
        "item 7: task failed after 1 attempt(s): upload of a.jpg failed: connection reset"
    );
}

#[test]
fn errors_whose_contents_clone_are_clone() {
    fn clone<T: Clone>(value: &T) -> T {
        value.clone()
    }
    let error = TaskError::Failed {
        error: Permanent("gone"),
        attempts: 1,
    };
    assert!(matches!(
        clone(&error),
        TaskError::Failed { attempts: 1, .. }
    ));
    let batch = BatchError { index: 0, error };
    assert_eq!(clone(&batch).index, 0);
}

#[tokio::test(start_paused = true)]
async fn a_batch_is_a_future_for_spawn_and_join_all() {
    let pool = Pool::builder().concurrency(2).build().unwrap();
    let batch = |offset: u32| {
        pool.add_batch(
            (0..3u32).map(move |i| move || async move { Ok::<_, std::io::Error>(offset + i) }),
            TaskOptions::new(),
        )
    };
    let spawned = tokio::spawn(batch(10)).await.unwrap();
    assert_eq!(spawned.results, [Some(10), Some(11), Some(12)]);
    let joined = futures::future::join_all([batch(0), batch(100)]).await;
    assert_eq!(joined[1].results, [Some(100), Some(101), Some(102)]);
}
