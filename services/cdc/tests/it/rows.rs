//! A row table (not an outbox) beside the outbox on the same slot: inserts,
//! updates and deletes of a real table decode with typed columns.

use std::time::Duration;

use serde_json::Value;
use shopstream_cdc::TableRoute;
use shopstream_runtime::testkit;

use crate::support::{consume, fixture, start};

#[tokio::test(flavor = "multi_thread")]
async fn row_table_changes_stream_as_create_update_delete() {
    let mut fx = fixture().await;
    sqlx::query(
        "CREATE TABLE widget (
            tenant_id TEXT NOT NULL, id INT NOT NULL, name TEXT NOT NULL,
            qty BIGINT, ok BOOL, doc JSONB, at TIMESTAMPTZ,
            PRIMARY KEY (tenant_id, id))",
    )
    .execute(&fx.catalog)
    .await
    .unwrap();
    let topic = testkit::unique("cdc_it_widgets");
    fx.cfg.sources[0]
        .tables
        .push(TableRoute::new("public.widget", &topic));
    let cdc = start(&fx.cfg).await;
    let consumer = consume(&topic).await;

    for sql in [
        "INSERT INTO widget VALUES ('t1', 7, 'bolt', 3, true, '{\"a\": [1, 2]}', '2026-01-02 03:04:05.5+00')",
        "UPDATE widget SET qty = 4, name = 'big bolt' WHERE tenant_id = 't1' AND id = 7",
        "DELETE FROM widget WHERE tenant_id = 't1' AND id = 7",
    ] {
        sqlx::query(sql).execute(&fx.catalog).await.unwrap();
    }
    let got = consumer.until_distinct(3, Duration::from_secs(60)).await;
    let ops: Vec<Value> = got
        .iter()
        .map(|r| r.envelope.json::<Value>().unwrap())
        .collect();
    assert_eq!(
        ops.iter().map(|v| v["op"].clone()).collect::<Vec<_>>(),
        ["c", "u", "d"]
    );
    for r in &got {
        assert_eq!(r.envelope.key, "t1:7", "keyed by the primary key");
        assert_eq!(r.envelope.tenant_id, "t1");
    }
    let created = &ops[0]["after"];
    assert_eq!(created["id"], 7);
    assert_eq!(created["qty"], 3);
    assert_eq!(created["ok"], true);
    assert_eq!(created["doc"]["a"][1], 2);
    assert_eq!(created["at"], "2026-01-02T03:04:05.5Z");
    assert_eq!(ops[1]["after"]["name"], "big bolt");
    assert_eq!(
        ops[1]["before"],
        Value::Null,
        "REPLICA IDENTITY DEFAULT: no old row"
    );
    assert_eq!(ops[2]["after"], Value::Null);
    assert_eq!(
        ops[2]["before"],
        serde_json::json!({"tenant_id": "t1", "id": 7}),
        "a delete carries the key"
    );
    assert_eq!(ops[2]["source"]["table"], "widget");

    consumer.close().await;
    cdc.stop().await;
    fx.drop_slot().await;
}
