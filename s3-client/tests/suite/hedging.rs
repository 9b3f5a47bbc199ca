//! Hedged reads over real HTTP: the loopback S3 server holds back some reads' responses
//! (a slow tail, or every read in a uniform slowdown); a late read gets a second request, the
//! first answer wins, the loser is cancelled and its response dropped; the budget holds in a
//! slowdown; nothing is hedged while the pool is saturated or the backend throttles. Counts
//! only: nothing here asserts on durations (the machine may be loaded).

use std::time::Duration;

use bytes::Bytes;
use object_store::path::Path;
use s3_client::testing::{InjectedResponse, S3TestServer};
use s3_client::{HedgeConfig, HedgeStats, S3Client};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn client(server: &S3TestServer, concurrency: usize, hedge: HedgeConfig) -> S3Client {
    S3Client::builder_arc(server.store().unwrap())
        .concurrency(concurrency)
        .retry_delay(ms(5))
        .hedged_reads(hedge)
        .build()
        .unwrap()
}

/// Puts `count` small objects; returns their paths and bodies.
async fn objects(client: &S3Client, count: usize) -> Vec<(Path, Bytes)> {
    let mut objects = Vec::new();
    for i in 0..count {
        let path = Path::from(format!("hedge/{i}"));
        let body = Bytes::from(format!("body of object {i} ").repeat(50));
        client.put(&path, body.clone()).await.unwrap();
        objects.push((path, body));
    }
    objects
}

/// Reads every object `rounds` times, one at a time, checking each body.
async fn read_all(client: &S3Client, objects: &[(Path, Bytes)], rounds: usize) {
    for _ in 0..rounds {
        for (path, body) in objects {
            assert_eq!(&client.get(path).await.unwrap(), body);
        }
    }
}

/// Waits (boundedly) until the server holds no response body open: every cancelled request's
/// response was dropped.
async fn no_response_left_open(server: &S3TestServer) {
    for _ in 0..400 {
        if server.faults().open_responses() == 0 {
            return;
        }
        tokio::time::sleep(ms(25)).await;
    }
    panic!(
        "{} response bodies still open after 10 s",
        server.faults().open_responses()
    );
}

/// Waits (boundedly) until the pool runs and queues nothing: a cancelled loser's pool task
/// ends on its own runner, possibly after the winner's answer came back.
async fn pool_settles(client: &S3Client) -> pool_core::Stats {
    for _ in 0..400 {
        let pool = client.stats().unwrap();
        if (pool.active, pool.queued) == (0, 0) {
            return pool;
        }
        tokio::time::sleep(ms(25)).await;
    }
    panic!(
        "the pool still runs or queues after 10 s: {:?}",
        client.stats().unwrap()
    );
}

fn stats(client: &S3Client) -> HedgeStats {
    client.hedge_stats().expect("the client hedges")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_tail_is_hedged_the_first_answer_wins_and_no_body_stays_open() {
    let server = S3TestServer::start().await.unwrap();
    // One read in five is slow here, so the trigger is the median: p95 would be the slow
    // mode itself once enough slow reads are known.
    let client = client(&server, 8, HedgeConfig::new().quantile(0.5).budget(0.5));
    let objects = objects(&client, 10).await;
    // Known first-byte times first: every read 5 ms.
    server.faults().set_read_latency(ms(5), ms(5), 0.0, 1);
    read_all(&client, &objects, 3).await;
    let warm = stats(&client);
    assert!(warm.trigger.is_some(), "{warm:?}");
    // Now one read in five waits 600 ms for its response; a hedge is likely answered in 5.
    server.faults().set_read_latency(ms(5), ms(600), 0.2, 7);
    let before = server.faults().requests();
    read_all(&client, &objects, 6).await;
    let after = stats(&client);
    let hedged = after.sent - warm.sent;
    assert!(hedged > 0, "late reads were hedged: {after:?}");
    assert!(after.won > 0, "some hedges answered first: {after:?}");
    // Each pair whose two requests both went out cancelled its loser (a hedge that starts
    // just as its read answers is cancelled before it sends anything).
    assert!(
        after.won <= after.cancelled && after.cancelled <= after.sent,
        "{after:?}"
    );
    // One request per read and at most one per hedge (a hedge cancelled as it started may
    // never reach the server): nothing hidden.
    let requests = server.faults().requests() - before;
    assert!(
        (60 + after.won..=60 + hedged).contains(&requests),
        "{requests} requests for 60 reads: {after:?}"
    );
    // Each read earns half a hedge; the bucket starts full (10).
    assert!(
        after.sent as f64 <= 10.0 + 0.5 * after.reads as f64,
        "{after:?}"
    );
    no_response_left_open(&server).await;
    pool_settles(&client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_and_get_range_are_hedged_too() {
    let server = S3TestServer::start().await.unwrap();
    let client = client(&server, 8, HedgeConfig::new().budget(1.0));
    let objects = objects(&client, 5).await;
    server.faults().set_read_latency(ms(5), ms(5), 0.0, 1);
    read_all(&client, &objects, 5).await;
    server.faults().set_read_latency(ms(5), ms(600), 0.3, 11);
    let warm = stats(&client);
    for _ in 0..4 {
        for (path, body) in &objects {
            let meta = client.head(path).await.unwrap();
            assert_eq!(meta.size, body.len() as u64);
            let part = client.get_range(path, 3..20).await.unwrap();
            assert_eq!(part, body.slice(3..20));
        }
    }
    let after = stats(&client);
    assert_eq!(after.reads - warm.reads, 40);
    assert!(after.sent > warm.sent, "{after:?}");
    no_response_left_open(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_uniform_slowdown_spends_no_more_than_the_budget() {
    let server = S3TestServer::start().await.unwrap();
    let client = client(&server, 8, HedgeConfig::new().burst(2.0));
    let objects = objects(&client, 10).await;
    server.faults().set_read_latency(ms(5), ms(5), 0.0, 1);
    read_all(&client, &objects, 3).await;
    // Every read is now far slower than the first-byte times known so far: at least 10× the
    // 5 ms asked, and 3× the trigger they gave (on a loaded machine a 5 ms read may take
    // 80 ms, and 50 ms reads would then not be late at all).
    let trigger = stats(&client)
        .trigger
        .expect("enough first-byte times are known");
    let slow = (trigger * 3).clamp(ms(50), ms(1_000));
    server.faults().set_read_latency(slow, slow, 0.0, 1);
    let before = server.faults().requests();
    read_all(&client, &objects, 10).await;
    let after = stats(&client);
    // 5 % of reads, plus the two hedges the bucket starts with.
    let allowed = 2.0 + 0.05 * after.reads as f64;
    assert!(after.sent as f64 <= allowed, "{after:?}, allowed {allowed}");
    assert!(after.over_budget > 0, "the budget said no: {after:?}");
    let requests = server.faults().requests() - before;
    assert!(
        requests <= 100 + after.sent,
        "{requests} requests: {after:?}"
    );
    no_response_left_open(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_hedged_while_the_pool_is_saturated_or_the_backend_throttles() {
    let server = S3TestServer::start().await.unwrap();
    // A cool-off of an hour: the two reads after the throttle must fall inside it however
    // slow the machine is (with the default 1 s, a loaded run hedged the second read).
    let hedge = HedgeConfig::new()
        .budget(1.0)
        .cool_off(Duration::from_secs(3_600));
    let client = client(&server, 2, hedge);
    let objects = objects(&client, 8).await;
    server.faults().set_read_latency(ms(5), ms(5), 0.0, 1);
    read_all(&client, &objects, 3).await;
    // A loaded machine may have hedged a warm-up read: count from here.
    let warm = stats(&client);
    // Eight slow reads at once on two slots: each is late, and while others wait for a slot
    // (or both slots run) none is hedged. Only the last ones may find a slot free.
    server.faults().set_read_latency(ms(200), ms(200), 0.0, 1);
    let reads = objects
        .iter()
        .map(|(path, _)| std::future::IntoFuture::into_future(client.get(path)));
    for (result, (_, body)) in futures::future::join_all(reads).await.iter().zip(&objects) {
        assert_eq!(result.as_ref().unwrap(), body);
    }
    let saturated = stats(&client);
    assert!(saturated.held_back - warm.held_back >= 6, "{saturated:?}");
    assert!(saturated.sent - warm.sent <= 2, "{saturated:?}");
    // A throttled read: no hedges for the cool-off, even with room in the pool.
    server.faults().fail_next(1, InjectedResponse::SlowDown);
    let (path, body) = &objects[0];
    assert_eq!(&client.get(path).await.unwrap(), body);
    client.get(path).await.unwrap();
    let throttled = stats(&client);
    assert_eq!(throttled.sent, saturated.sent, "{throttled:?}");
    assert!(throttled.held_back > saturated.held_back, "{throttled:?}");
    no_response_left_open(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_hedged_read_leaves_no_request_running() {
    let server = S3TestServer::start().await.unwrap();
    let client = client(&server, 4, HedgeConfig::new().budget(1.0));
    let objects = objects(&client, 4).await;
    server.faults().set_read_latency(ms(5), ms(5), 0.0, 1);
    read_all(&client, &objects, 6).await;
    // On a loaded machine a warm-up read may already have been hedged (the budget is 100 %)
    // and its loser cancelled: count from here.
    let sent_before = stats(&client).sent;
    let cancelled_before = pool_settles(&client).await.cancelled;
    server.faults().set_read_latency(ms(800), ms(800), 0.0, 1);
    let mut read = Box::pin(std::future::IntoFuture::into_future(
        client.get(&objects[0].0),
    ));
    // Polled until the hedge went out too (boundedly: the machine may be loaded), then
    // dropped.
    for _ in 0..100 {
        if stats(&client).sent == sent_before + 1 {
            break;
        }
        let answered = tokio::time::timeout(ms(10), read.as_mut()).await;
        assert!(answered.is_err(), "answered before it was hedged");
    }
    assert_eq!(stats(&client).sent, sent_before + 1);
    drop(read);
    let pool = pool_settles(&client).await;
    assert_eq!(
        pool.cancelled - cancelled_before,
        2,
        "both requests cancelled: {pool:?}"
    );
    no_response_left_open(&server).await;
}

#[test]
fn bad_settings_are_typed_errors() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        for config in [
            HedgeConfig::new().quantile(0.0),
            HedgeConfig::new().quantile(1.0),
            HedgeConfig::new().quantile(f64::NAN),
            HedgeConfig::new().budget(-0.1),
            HedgeConfig::new().budget(1.5),
            HedgeConfig::new().burst(0.0),
            HedgeConfig::new().burst(f64::INFINITY),
        ] {
            let built = S3Client::builder(object_store::memory::InMemory::new())
                .hedged_reads(config)
                .build();
            assert!(built.is_err(), "{config:?}");
        }
        let client = S3Client::builder(object_store::memory::InMemory::new())
            .hedged_reads(HedgeConfig::new().budget(0.0).floor(Duration::ZERO))
            .build()
            .unwrap();
        let path = Path::from("a");
        client.put(&path, "x").await.unwrap();
        assert_eq!(&client.get(&path).await.unwrap()[..], b"x");
        assert_eq!(stats(&client).reads, 1);
    });
}

/// The client's collector reports the hedger's counts (snapshot and Prometheus text).
#[cfg(feature = "metrics")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hedge_counts_reach_the_clients_metrics() {
    use s3_client::pool_metrics::{HedgeCounts, Metrics};

    let server = S3TestServer::start().await.unwrap();
    let metrics = Metrics::default();
    let client = S3Client::builder_arc(server.store().unwrap())
        .concurrency(8)
        .retry_delay(ms(5))
        .hedged_reads(HedgeConfig::new().quantile(0.5).budget(0.5))
        .metrics(metrics.clone())
        .build()
        .unwrap();
    let objects = objects(&client, 10).await;
    server.faults().set_read_latency(ms(5), ms(5), 0.0, 1);
    read_all(&client, &objects, 3).await;
    server.faults().set_read_latency(ms(5), ms(600), 0.2, 7);
    read_all(&client, &objects, 4).await;
    no_response_left_open(&server).await;
    pool_settles(&client).await;
    let hedge = stats(&client);
    assert!(hedge.sent > 0, "late reads were hedged: {hedge:?}");
    let reported = metrics.stats().hedges.expect("the client's hedger reports");
    assert_eq!(
        reported,
        HedgeCounts {
            reads: hedge.reads,
            sent: hedge.sent,
            won: hedge.won,
            cancelled: hedge.cancelled,
            over_budget: hedge.over_budget,
            held_back: hedge.held_back,
        }
    );
    assert_eq!(reported.reads, 70);
    let text = metrics.prometheus();
    assert!(
        text.contains(&format!("s3pool_hedges_sent_total {}\n", hedge.sent))
            && text.contains("s3pool_hedge_reads_total 70\n"),
        "{text}"
    );
}

/// A download's ranges are hedged like `get_range`: the same trigger and budget, one body
/// read per range, no retry counted for a hedge, nothing left open or running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_downloads_late_ranges_are_hedged_under_the_same_budget() {
    const PART: usize = 5 * 1024 * 1024;
    let server = S3TestServer::start().await.unwrap();
    let client = S3Client::builder_arc(server.store().unwrap())
        .concurrency(8)
        .retry_delay(ms(5))
        .part_size(PART)
        .multipart_threshold(PART)
        .max_bytes_in_flight(4 * PART as u64)
        .hedged_reads(HedgeConfig::new().quantile(0.5).budget(0.5))
        .build()
        .unwrap();
    // Known first-byte times first, from small reads.
    let objects = objects(&client, 10).await;
    server.faults().set_read_latency(ms(5), ms(5), 0.0, 1);
    read_all(&client, &objects, 3).await;
    assert!(stats(&client).trigger.is_some());
    // Three ranges: two whole parts and a short last one.
    let path = Path::from("hedge/large");
    let body = Bytes::from(
        (0..2 * PART + 100_000)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<_>>(),
    );
    client.put(&path, body.clone()).await.unwrap();
    // Half the ranges' first requests now wait 600 ms for their response; a hedge asks for
    // bytes asked for already and is answered in 5. Drawn per request in arrival order (as
    // before), a loaded run that hedged a fast range too shifted the draws so that every
    // hedge drew a slow answer as well: "won: 0" (once, under a load of about 9).
    server
        .faults()
        .set_first_read_latency(ms(5), ms(600), 0.5, 7);
    let before = stats(&client);
    let sent_before = server.faults().bytes_sent();
    let downloads = 6;
    for _ in 0..downloads {
        let sink = crate::support::Sink::default();
        let summary = client.download_to(&path, sink.clone()).await.unwrap();
        assert!(sink.bytes() == body, "the download differs");
        assert_eq!((summary.pieces, summary.retries), (3, 0), "{summary:?}");
    }
    let after = stats(&client);
    // Every range is a read that may be hedged, and earns its share of the budget.
    assert_eq!(after.reads - before.reads, 3 * downloads, "{after:?}");
    let hedged = after.sent - before.sent;
    assert!(hedged > 0, "late ranges were hedged: {after:?}");
    assert!(
        after.won > before.won,
        "some hedges answered first: {after:?}"
    );
    assert!(
        after.sent as f64 <= 10.0 + 0.5 * after.reads as f64,
        "{after:?}"
    );
    // A loser's response is dropped before its body is read: at most what the server had
    // written before the client let go of it, never a whole second copy per range.
    let sent = server.faults().bytes_sent() - sent_before;
    let bound = downloads * body.len() as u64 + hedged * PART as u64;
    assert!(sent <= bound, "{sent} bytes sent, bound {bound}");
    no_response_left_open(&server).await;
    pool_settles(&client).await;
}
