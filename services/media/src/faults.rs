//! Media's fault switch: make the next N attempts of a step fail, slow a
//! step down, or make moderation reject the next N assets. Set over media's
//! HTTP port (`PUT /faults/{step}`, `GET /faults`, `DELETE /faults`); held in
//! the process, so a restart clears it. The fault catalog's
//! `media-thumbnail-failing` acts through the same decision: every thumbnail
//! attempt fails while it is on.

use std::{collections::BTreeMap, sync::Mutex, time::Duration};

use axum::{
    Json, Router,
    extract::{Path, State},
    http::StatusCode,
    routing::{get, put},
};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

use crate::domain::Step;

/// The fault set on one step.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StepFault {
    /// The next this many attempts fail (then the step works again).
    pub fail: u32,
    /// Every attempt waits this long before working.
    pub delay_ms: u64,
    /// Moderation only: the next this many assets are rejected.
    pub reject: u32,
}

#[derive(Debug, Default)]
pub struct Faults {
    steps: Mutex<BTreeMap<Step, StepFault>>,
}

/// The catalog fault that fails every thumbnail attempt.
pub const THUMBNAIL_FAILING: &str = "media-thumbnail-failing";
/// [`Decision::fail`] when the catalog fails the attempt: failures go on
/// until the fault is cleared.
pub const UNTIL_CLEARED: u32 = u32::MAX;

/// What the fault switch decides for one attempt.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Decision {
    pub delay: Duration,
    /// Fail this attempt; how many failures remain after it.
    pub fail: Option<u32>,
    pub reject: bool,
}

impl Faults {
    pub fn set(&self, step: Step, f: StepFault) {
        let mut m = self.steps.lock().unwrap_or_else(|e| e.into_inner());
        if f == StepFault::default() {
            m.remove(&step);
        } else {
            m.insert(step, f);
        }
    }

    pub fn clear(&self) {
        self.steps.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    pub fn all(&self) -> BTreeMap<Step, StepFault> {
        self.steps.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Consume what applies to one attempt of `step`: the switch's faults,
    /// and the catalog's `media-thumbnail-failing`.
    pub fn take(&self, step: Step) -> Decision {
        let mut d = self.take_switched(step);
        if step == Step::Thumbnail
            && shopstream_platform::faults::hits(THUMBNAIL_FAILING, "media").is_some()
        {
            tracing::warn!(fault = THUMBNAIL_FAILING, "thumbnail attempt fails");
            d.fail = Some(UNTIL_CLEARED);
        }
        d
    }

    fn take_switched(&self, step: Step) -> Decision {
        let mut m = self.steps.lock().unwrap_or_else(|e| e.into_inner());
        let Some(f) = m.get_mut(&step) else {
            return Decision::default();
        };
        let mut d = Decision {
            delay: Duration::from_millis(f.delay_ms),
            ..Decision::default()
        };
        if f.fail > 0 {
            f.fail -= 1;
            d.fail = Some(f.fail);
        }
        if f.reject > 0 {
            f.reject -= 1;
            d.reject = true;
        }
        if *f == StepFault::default() {
            m.remove(&step);
        }
        d
    }
}

/// `GET /faults`, `DELETE /faults`, `PUT /faults/{step}`.
pub fn routes(faults: Arc<Faults>) -> Router {
    Router::new()
        .route("/faults", get(list).delete(clear))
        .route("/faults/{step}", put(set))
        .with_state(faults)
}

async fn list(State(f): State<Arc<Faults>>) -> Json<BTreeMap<Step, StepFault>> {
    Json(f.all())
}

async fn clear(State(f): State<Arc<Faults>>) -> StatusCode {
    f.clear();
    tracing::info!("media faults cleared");
    StatusCode::NO_CONTENT
}

async fn set(
    State(f): State<Arc<Faults>>,
    Path(step): Path<String>,
    Json(fault): Json<StepFault>,
) -> Result<Json<BTreeMap<Step, StepFault>>, (StatusCode, String)> {
    let step = Step::parse(&step).ok_or_else(|| {
        (
            StatusCode::NOT_FOUND,
            format!("no step {step:?}: one of ingest, moderate, thumbnail, transcode, ready"),
        )
    })?;
    if fault.reject > 0 && step != Step::Moderate {
        return Err((
            StatusCode::UNPROCESSABLE_ENTITY,
            "reject applies to the moderate step only".into(),
        ));
    }
    tracing::warn!(step = step.as_str(), ?fault, "media fault set");
    f.set(step, fault);
    Ok(Json(f.all()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_consumed_one_attempt_at_a_time() {
        let f = Faults::default();
        f.set(
            Step::Thumbnail,
            StepFault {
                fail: 2,
                ..StepFault::default()
            },
        );
        assert_eq!(f.take(Step::Thumbnail).fail, Some(1));
        assert_eq!(f.take(Step::Ingest), Decision::default());
        assert_eq!(f.take(Step::Thumbnail).fail, Some(0));
        assert_eq!(f.take(Step::Thumbnail), Decision::default());
        assert!(f.all().is_empty());
    }
}
