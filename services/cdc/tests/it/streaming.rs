//! Outbox rows to Kafka: order, envelope, trace, restart without loss,
//! metrics, latency.

use std::time::Duration;

use serde_json::Value;
use shopstream_cdc::{HEADER_COMMIT_TS_MS, HEADER_LSN};
use uuid::Uuid;

use crate::support::{EVENT_TYPE, Row, consume, dedupe, fixture, now_ms, percentile, start, write};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

#[tokio::test(flavor = "multi_thread")]
async fn outbox_writes_arrive_in_commit_order_with_the_envelope_and_trace() {
    let fx = fixture().await;
    let cdc = start(&fx.cfg).await;
    let consumer = consume(&fx.topic).await;

    // 20 transactions over 3 products, 1-3 rows each; every third traced.
    let products: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
    let mut written: Vec<Row> = Vec::new();
    for t in 0..20usize {
        let rows: Vec<Row> = (0..(t % 3 + 1))
            .map(|i| {
                let mut r = Row::new(products[(t + i) % 3], (t * 3 + i) as i64 + 1);
                if t % 3 == 0 {
                    r.traceparent = Some(format!("00-{TRACE_ID}-00f067aa0ba902b7-01"));
                }
                r
            })
            .collect();
        write(&fx.catalog, &rows).await;
        written.extend(rows);
    }

    let got = consumer
        .until_distinct(written.len(), Duration::from_secs(60))
        .await;
    let (got, dups) = dedupe(&got);
    assert_eq!(dups, 0, "no restart, no duplicates");
    let ids: Vec<Uuid> = got.iter().map(|r| r.envelope.id).collect();
    let want: Vec<Uuid> = written.iter().map(|r| r.id).collect();
    assert_eq!(ids, want, "events arrive in commit order");

    let mut last_lsn = 0u64;
    let mut last_commit_ts = 0i64;
    for (r, w) in got.iter().zip(&written) {
        let e = &r.envelope;
        assert_eq!(e.event_type, EVENT_TYPE);
        assert_eq!(e.tenant_id, "default");
        assert_eq!(e.key, w.product.to_string(), "keyed by product id");
        let lsn: u64 = e.headers[HEADER_LSN].parse().unwrap();
        let commit_ts: i64 = e.headers[HEADER_COMMIT_TS_MS].parse().unwrap();
        assert!(lsn > last_lsn, "lsn grows in commit order");
        assert!(commit_ts >= last_commit_ts);
        (last_lsn, last_commit_ts) = (lsn, commit_ts);
        assert!(commit_ts <= r.at_ms && r.at_ms - commit_ts < 30_000);
        match &w.traceparent {
            Some(tp) => assert_eq!(e.headers.get("traceparent"), Some(tp)),
            None => assert!(!e.headers.contains_key("traceparent")),
        }

        let v: Value = e.json().unwrap();
        assert_eq!(v["op"], "c");
        assert_eq!(v["before"], Value::Null);
        let after = &v["after"];
        assert_eq!(after["id"], w.id.to_string());
        assert_eq!(after["tenant_id"], "default");
        assert_eq!(after["aggregate_id"], w.product.to_string());
        assert_eq!(after["event_type"], EVENT_TYPE);
        assert_eq!(after["payload"]["version"], w.version, "payload is JSON");
        assert!(after["created_at"].as_str().unwrap().ends_with('Z'));
        let src = &v["source"];
        assert_eq!(src["db"], fx.cfg.sources[0].database.as_str());
        assert_eq!(src["table"], "outbox");
        assert_eq!(src["lsn"].as_u64(), Some(lsn));
        assert!(src["txId"].as_u64().unwrap() > 0);
        assert_eq!(src["ts_ms"].as_i64(), Some(commit_ts));
        assert!(v["ts_ms"].as_i64().unwrap() >= commit_ts);
    }
    let traced = got
        .iter()
        .filter(|r| r.envelope.trace_id().as_deref() == Some(TRACE_ID))
        .count();
    assert_eq!(
        traced,
        written.iter().filter(|w| w.traceparent.is_some()).count(),
        "the writer's trace continues in the event"
    );

    // Lag metrics: the ms lag of the last transaction, and the byte lag polled from the slot
    // (on the poller's own period, so it may appear a moment after the records).
    let series = [
        "shopstream_cdc_lag_ms{",
        "shopstream_cdc_lag_bytes{",
        "shopstream_cdc_last_commit_ts_ms{",
        "shopstream_cdc_records_published_total{",
        "shopstream_cdc_commit_to_ack_seconds_bucket{",
    ];
    let text = shopstream_runtime::testkit::try_eventually(
        shopstream_runtime::testkit::READY_TIMEOUT,
        || async {
            let text = cdc.metrics().await;
            series.iter().all(|s| text.contains(s)).then_some(text)
        },
    )
    .await;
    let text = match text {
        Some(t) => t,
        None => {
            let now = cdc.metrics().await;
            let missing: Vec<_> = series.iter().filter(|s| !now.contains(*s)).collect();
            panic!("{missing:?} missing:\n{now}");
        }
    };
    let published = text
        .lines()
        .find(|l| l.starts_with("shopstream_cdc_records_published_total{"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap();
    assert_eq!(published as usize, written.len());

    consumer.close().await;
    cdc.stop().await;
    assert!(
        fx.slot_state().await.is_some(),
        "the slot outlives the service"
    );
    fx.drop_slot().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_mid_stream_loses_nothing_and_the_slot_survives() {
    let fx = fixture().await;
    let cdc = start(&fx.cfg).await;
    let consumer = consume(&fx.topic).await;

    const TOTAL: usize = 300;
    let products: Vec<Uuid> = (0..10).map(|_| Uuid::now_v7()).collect();
    let rows: Vec<Row> = (0..TOTAL)
        .map(|i| Row::new(products[i % 10], i as i64 + 1))
        .collect();
    let pool = fx.catalog.clone();
    let to_write = rows.clone();
    let writer = tokio::spawn(async move {
        for r in to_write {
            write(&pool, std::slice::from_ref(&r)).await;
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
    });

    consumer.until_distinct(100, Duration::from_secs(60)).await;
    cdc.crash().await;
    let before_restart = consumer.snapshot().len();
    assert!(
        fx.slot_state().await.is_some(),
        "the slot survives the crash"
    );
    let cdc = start(&fx.cfg).await;
    writer.await.unwrap();

    let all = consumer
        .until_distinct(TOTAL, Duration::from_secs(120))
        .await;
    let (got, dups) = dedupe(&all);
    let ids: Vec<Uuid> = got.iter().map(|r| r.envelope.id).collect();
    let want: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    assert_eq!(ids, want, "nothing lost, first deliveries in commit order");
    println!(
        "cdc crash/restart: {TOTAL} rows, {} records received ({before_restart} before the restart), {dups} duplicates",
        all.len()
    );
    let text = cdc.metrics().await;
    assert!(
        text.contains("shopstream_cdc_transactions_total{"),
        "{text}"
    );

    consumer.close().await;
    cdc.stop().await;
    fx.drop_slot().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn commit_to_kafka_latency_is_measured() {
    let fx = fixture().await;
    let cdc = start(&fx.cfg).await;
    let consumer = consume(&fx.topic).await;
    // Let the consumer join its group before measuring.
    write(&fx.catalog, &[Row::new(Uuid::now_v7(), 0)]).await;
    consumer.until_distinct(1, Duration::from_secs(60)).await;

    const N: usize = 200;
    let product = Uuid::now_v7();
    for i in 0..N {
        write(&fx.catalog, &[Row::new(product, i as i64 + 1)]).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let all = consumer
        .until_distinct(N + 1, Duration::from_secs(60))
        .await;
    let (got, _) = dedupe(&all);
    let mut lat: Vec<i64> = got[1..]
        .iter()
        .map(|r| {
            r.at_ms
                - r.envelope.headers[HEADER_COMMIT_TS_MS]
                    .parse::<i64>()
                    .unwrap()
        })
        .collect();
    lat.sort_unstable();
    let (p50, p95, p99) = (
        percentile(&lat, 0.50),
        percentile(&lat, 0.95),
        percentile(&lat, 0.99),
    );
    println!(
        "cdc commit->consumed latency over {N} single-row transactions: p50 {p50} ms, p95 {p95} ms, p99 {p99} ms, max {} ms",
        lat.last().copied().unwrap_or_default()
    );
    assert!(p95 < 5_000, "p95 {p95} ms");
    // The service's own view: commit -> Kafka acknowledgement, mean over the run.
    let text = cdc.metrics().await;
    let series = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let (sum_s, count) = (
        series("shopstream_cdc_commit_to_ack_seconds_sum{"),
        series("shopstream_cdc_commit_to_ack_seconds_count{"),
    );
    println!(
        "cdc commit->kafka-ack (service histogram): mean {:.1} ms over {count} acknowledged batches",
        sum_s * 1_000.0 / count.max(1.0)
    );
    assert!(count > 0.0, "one observation per acknowledged batch");
    assert!(now_ms() > 0);

    consumer.close().await;
    cdc.stop().await;
    fx.drop_slot().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rows_written_before_the_first_start_arrive_once_as_snapshot_reads() {
    let fx = fixture().await;
    let product = Uuid::now_v7();
    let early: Vec<Row> = (0..5).map(|i| Row::new(product, i + 1)).collect();
    write(&fx.catalog, &early).await;
    let consumer = consume(&fx.topic).await;
    let cdc = start(&fx.cfg).await;
    let late = Row::new(product, 6);
    write(&fx.catalog, std::slice::from_ref(&late)).await;
    consumer.until_distinct(6, Duration::from_secs(60)).await;

    // A restart does not snapshot again.
    cdc.stop().await;
    let cdc = start(&fx.cfg).await;
    let last = Row::new(product, 7);
    write(&fx.catalog, std::slice::from_ref(&last)).await;
    let all = consumer.until_distinct(7, Duration::from_secs(60)).await;

    let (got, _) = dedupe(&all);
    let ids: Vec<Uuid> = got.iter().map(|r| r.envelope.id).collect();
    let want: Vec<Uuid> = early.iter().chain([&late, &last]).map(|r| r.id).collect();
    assert_eq!(ids, want);
    let op = |r: &crate::support::Received| r.envelope.json::<Value>().unwrap()["op"].clone();
    let ops: Vec<Value> = all.iter().map(op).collect();
    assert_eq!(
        ops.iter().filter(|o| *o == "r").count(),
        5,
        "the snapshot runs once: {ops:?}"
    );
    assert_eq!(op(&got[0]), "r");
    assert_eq!(op(&got[5]), "c");
    assert_eq!(got[0].envelope.key, product.to_string());
    let v: Value = got[0].envelope.json().unwrap();
    assert_eq!(v["after"]["payload"]["version"], 1);
    assert!(v["after"]["created_at"].as_str().unwrap().ends_with('Z'));

    consumer.close().await;
    cdc.stop().await;
    fx.drop_slot().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dropped_replication_connection_resumes_without_loss() {
    let fx = fixture().await;
    let cdc = start(&fx.cfg).await;
    let consumer = consume(&fx.topic).await;

    const TOTAL: usize = 200;
    let products: Vec<Uuid> = (0..5).map(|_| Uuid::now_v7()).collect();
    let rows: Vec<Row> = (0..TOTAL)
        .map(|i| Row::new(products[i % 5], i as i64 + 1))
        .collect();
    let pool = fx.catalog.clone();
    let to_write = rows.clone();
    let writer = tokio::spawn(async move {
        for r in to_write {
            write(&pool, std::slice::from_ref(&r)).await;
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
    });
    // What a Postgres restart looks like from here: the server ends the
    // walsender mid-stream, twice.
    let app = format!("shopstream-cdc-{}", fx.slot());
    for n in [50, 120] {
        consumer.until_distinct(n, Duration::from_secs(60)).await;
        // Under load the consumer can lag the stream: the records it has
        // seen may predate the previous kill, and cdc may still be
        // reconnecting. Wait for the walsender to be back, then end it.
        let killed = shopstream_runtime::testkit::eventually(
            "cdc's walsender streams again, to be ended",
            Duration::from_secs(30),
            || {
                let (pool, app) = (fx.catalog.clone(), app.clone());
                async move {
                    let killed: Vec<bool> = sqlx::query_scalar(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_replication \
                         WHERE application_name = $1",
                    )
                    .bind(&app)
                    .fetch_all(&pool)
                    .await
                    .ok()?;
                    (!killed.is_empty()).then_some(killed)
                }
            },
        )
        .await;
        assert_eq!(killed, [true], "one walsender ended");
    }
    writer.await.unwrap();
    let all = consumer
        .until_distinct(TOTAL, Duration::from_secs(120))
        .await;
    let (got, dups) = dedupe(&all);
    let ids: Vec<Uuid> = got.iter().map(|r| r.envelope.id).collect();
    let want: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    assert_eq!(ids, want, "nothing lost, first deliveries in commit order");
    let text = cdc.metrics().await;
    let errors = text
        .lines()
        .find(|l| l.starts_with("shopstream_cdc_session_errors_total{"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    println!(
        "cdc walsender terminated twice: {TOTAL} rows, {} records received, {dups} duplicates, {errors} session errors",
        all.len()
    );
    assert!(errors >= 2.0, "{text}");

    consumer.close().await;
    cdc.stop().await;
    fx.drop_slot().await;
}
