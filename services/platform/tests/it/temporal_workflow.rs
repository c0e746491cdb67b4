//! (d) run a Temporal workflow with an activity to completion through the
//! platform's client and worker helpers.

use std::time::Duration;

use shopstream_platform::temporal::{self, PollerBehavior, Worker, WorkerOptions};
use shopstream_runtime::testkit;
use temporalio_client::{WorkflowGetResultOptions, WorkflowStartOptions};
use temporalio_macros::{activities, workflow, workflow_methods};
use temporalio_sdk::{
    ActivityOptions, WorkflowContext, WorkflowResult,
    activities::{ActivityContext, ActivityError},
};

#[workflow]
#[derive(Default)]
pub struct PriceQuote;

#[workflow_methods]
impl PriceQuote {
    #[run]
    pub async fn run(ctx: &mut WorkflowContext<Self>, minor: i64) -> WorkflowResult<String> {
        let with_tax = ctx
            .execute_activity(
                QuoteActivities::add_tax,
                minor,
                ActivityOptions::start_to_close_timeout(Duration::from_secs(10)),
            )
            .await?;
        Ok(format!("{with_tax} EUR minor units"))
    }
}

pub struct QuoteActivities;

#[activities]
impl QuoteActivities {
    #[activity]
    pub async fn add_tax(_ctx: ActivityContext, minor: i64) -> Result<i64, ActivityError> {
        Ok(minor + minor / 5)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_workflow_with_an_activity_runs_to_completion() {
    let stack = testkit::stack().await;
    let e = &stack.endpoints;
    let client = temporal::connect(&e.temporal_url, &e.temporal_namespace, "it-worker")
        .await
        .unwrap();
    let queue = testkit::unique("it_quotes");
    let options = WorkerOptions::new(queue.clone())
        .register_workflow::<PriceQuote>()
        .unwrap()
        .register_activities(QuoteActivities)
        .workflow_task_poller_behavior(PollerBehavior::SimpleMaximum(temporal::POLLERS))
        .activity_task_poller_behavior(PollerBehavior::SimpleMaximum(temporal::POLLERS))
        .build();
    let runtime = temporal::runtime().unwrap();
    let mut worker = Worker::new(&runtime, client.clone(), options).unwrap();
    let shutdown = worker.shutdown_handle();

    let starter = async {
        let handle = client
            .start_workflow(
                PriceQuote::run,
                1000_i64,
                WorkflowStartOptions::new(queue.clone(), testkit::unique("quote")).build(),
            )
            .await
            .unwrap();
        let result = tokio::time::timeout(
            Duration::from_secs(60),
            handle.get_result(WorkflowGetResultOptions::default()),
        )
        .await
        .expect("workflow finished within 60 s")
        .unwrap();
        shutdown();
        result
    };
    // The worker is not Send: drive it and the starter together on this task.
    let (run, result) = tokio::join!(worker.run(), starter);
    run.unwrap();
    assert_eq!(result, "1200 EUR minor units");
}
