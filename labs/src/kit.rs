//! The lab kit: a lab is a named script of numbered steps with narration.
//!
//! Step kinds:
//! - **action** — do something and record what it returned;
//! - **fault** — inject a fault and register its cleanup; every registered
//!   cleanup runs when the lab ends, whether it passed, failed, returned an
//!   error, panicked or was interrupted (Ctrl-C);
//! - **checkpoint** — poll a condition until a deadline, printing progress
//!   while waiting; it never hangs: every probe is bounded by what is left of
//!   the deadline;
//! - **assertion** — check once and record expected vs actual;
//!
//! plus [`Lab::measure`] for numbers worth reporting. A failed checkpoint
//! stops the script (what follows usually depends on it); a failed assertion
//! is recorded and the script goes on, so one run shows every verdict.
//!
//! Human output goes to the writer the lab is given (stdout, or stderr when
//! the caller prints the JSON [`Report`] on stdout). The report decides the
//! exit code: [`EXIT_PASSED`], [`EXIT_FAILED`], [`EXIT_NOT_READY`].

use std::{
    fmt::Debug,
    future::Future,
    io::Write,
    panic::AssertUnwindSafe,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use futures::{FutureExt, future::BoxFuture};
use serde::Serialize;
// Tokio's clock, so tests can pause time and deadlines follow it.
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Every checkpoint and assertion passed (and every cleanup ran cleanly).
pub const EXIT_PASSED: u8 = 0;
/// A checkpoint, assertion, action or cleanup failed, or the lab was interrupted.
pub const EXIT_FAILED: u8 = 1;
/// The system (or a part the lab needs) is not reachable or not ready.
pub const EXIT_NOT_READY: u8 = 4;

/// Narration is wrapped to this many columns.
pub const NARRATION_WIDTH: usize = 88;
/// An action or a fault injection that takes longer than this fails.
pub const DEFAULT_ACTION_TIMEOUT: Duration = Duration::from_secs(30);
/// Each cleanup gets this long; a stuck one is reported, the next still runs.
pub const CLEANUP_TIMEOUT: Duration = Duration::from_secs(15);
/// A waiting checkpoint repeats its progress line at least this often.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// Why a step (and with it, usually, the lab) failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabError {
    /// The system, or a part of it the lab needs, cannot be reached or is not
    /// ready (exit 4). Inside a checkpoint's probe it means "try again".
    #[error("{0}")]
    NotReady(String),
    /// Something the lab did failed (exit 1).
    #[error("{0}")]
    Failed(String),
    /// A checkpoint did not pass before its deadline (already recorded).
    #[error("checkpoint failed: {0}")]
    Checkpoint(String),
    /// Ctrl-C (or the caller's interrupt) stopped the lab.
    #[error("interrupted")]
    Interrupted,
}

/// What a checkpoint's probe saw on one poll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe<T> {
    /// The condition holds; the string says what was seen.
    Ready(T, String),
    /// Not yet; the string says what is seen so far (printed as progress).
    Waiting(String),
    /// The condition can no longer hold (e.g. a terminal, wrong state): stop now.
    Failed(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StepKind {
    Action,
    Fault,
    Checkpoint,
    Assertion,
    Cleanup,
}

impl StepKind {
    fn label(self) -> &'static str {
        match self {
            StepKind::Action => "action",
            StepKind::Fault => "fault",
            StepKind::Checkpoint => "checkpoint",
            StepKind::Assertion => "assert",
            StepKind::Cleanup => "cleanup",
        }
    }

    /// Checkpoints and assertions are the lab's verdicts.
    pub fn is_check(self) -> bool {
        matches!(self, StepKind::Checkpoint | StepKind::Assertion)
    }
}

/// One step as the report records it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepRecord {
    pub name: String,
    pub kind: StepKind,
    pub passed: bool,
    pub elapsed_ms: u64,
    pub detail: String,
    /// Assertions only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected: Option<String>,
    /// Assertions only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actual: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Measurement {
    pub name: String,
    pub value: f64,
    pub unit: String,
}

/// How the lab ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Passed,
    Failed,
    NotReady,
}

/// The whole run: what `--json` prints.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub lab: String,
    pub passed: bool,
    pub outcome: Outcome,
    pub steps: Vec<StepRecord>,
    pub measurements: Vec<Measurement>,
    pub elapsed_ms: u64,
    /// Why the script stopped early, if it did.
    pub error: Option<String>,
}

impl Report {
    pub fn exit_code(&self) -> u8 {
        match self.outcome {
            Outcome::Passed => EXIT_PASSED,
            Outcome::Failed => EXIT_FAILED,
            Outcome::NotReady => EXIT_NOT_READY,
        }
    }
}

type CleanupFn = Box<dyn FnOnce() -> BoxFuture<'static, Result<String, LabError>> + Send>;

struct Inner {
    out: Box<dyn Write + Send>,
    started: Instant,
    step_no: usize,
    steps: Vec<StepRecord>,
    measurements: Vec<Measurement>,
    /// Run in reverse registration order (last injected, first undone).
    cleanups: Vec<(String, CleanupFn)>,
    action_timeout: Duration,
}

/// A handle on a running lab; cheap to clone. Steps are awaited one after
/// another by the script; the handle is shared so probes and cleanups can
/// print and record too.
#[derive(Clone)]
pub struct Lab {
    name: Arc<str>,
    inner: Arc<Mutex<Inner>>,
}

impl std::fmt::Debug for Lab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lab").field("name", &self.name).finish()
    }
}

/// Run `script` as lab `name`: print the title, run the steps, run every
/// registered cleanup (also after an error, a panic or `interrupt`), print the
/// summary and return the report.
pub async fn run<F, Fut>(
    name: &str,
    title: &str,
    out: Box<dyn Write + Send>,
    interrupt: CancellationToken,
    script: F,
) -> Report
where
    F: FnOnce(Lab) -> Fut,
    Fut: Future<Output = Result<(), LabError>>,
{
    run_with_timeout(name, title, out, interrupt, DEFAULT_ACTION_TIMEOUT, script).await
}

/// [`run`] with another bound on actions and fault injections.
pub async fn run_with_timeout<F, Fut>(
    name: &str,
    title: &str,
    out: Box<dyn Write + Send>,
    interrupt: CancellationToken,
    action_timeout: Duration,
    script: F,
) -> Report
where
    F: FnOnce(Lab) -> Fut,
    Fut: Future<Output = Result<(), LabError>>,
{
    let lab = Lab {
        name: name.into(),
        inner: Arc::new(Mutex::new(Inner {
            out,
            started: Instant::now(),
            step_no: 0,
            steps: Vec::new(),
            measurements: Vec::new(),
            cleanups: Vec::new(),
            action_timeout,
        })),
    };
    lab.line(&format!("lab {name}: {title}"));
    let body = AssertUnwindSafe(script(lab.clone())).catch_unwind();
    let result = tokio::select! {
        r = body => match r {
            Ok(r) => r,
            Err(panic) => Err(LabError::Failed(format!("the lab panicked: {}", panic_text(panic.as_ref())))),
        },
        _ = interrupt.cancelled() => Err(LabError::Interrupted),
    };
    if let Err(e) = &result {
        match e {
            LabError::Checkpoint(_) => {}
            LabError::Interrupted => lab.line("\ninterrupted: undoing what the lab changed"),
            e => lab.line(&format!("\nstopped: {e}")),
        }
    }
    lab.run_cleanups().await;
    lab.finish(result.err())
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

impl Lab {
    pub fn name(&self) -> &str {
        &self.name
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Plain data behind the lock: a panic elsewhere leaves it usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn line(&self, text: &str) {
        let mut inner = self.lock();
        let _ = writeln!(inner.out, "{text}");
        let _ = inner.out.flush();
    }

    /// Time since the lab started.
    pub fn elapsed(&self) -> Duration {
        self.lock().started.elapsed()
    }

    /// A paragraph of explanation, wrapped to [`NARRATION_WIDTH`] columns.
    pub fn narrate(&self, text: &str) {
        let lines = wrap(text, NARRATION_WIDTH, "  ");
        self.line(&format!("\n{}", lines.join("\n")));
    }

    /// A line under the current step (e.g. each saga step as it appears).
    pub fn note(&self, text: &str) {
        self.line(&format!("      {text}"));
    }

    fn begin(&self, kind: StepKind, name: &str) -> Instant {
        let mut inner = self.lock();
        inner.step_no += 1;
        let n = inner.step_no;
        let _ = writeln!(inner.out, "\n{n:>2}. {:<10} {name}", kind.label());
        let _ = inner.out.flush();
        Instant::now()
    }

    #[allow(clippy::too_many_arguments)]
    fn end(
        &self,
        kind: StepKind,
        name: &str,
        started: Instant,
        passed: bool,
        detail: String,
        expected: Option<String>,
        actual: Option<String>,
    ) {
        let elapsed = started.elapsed();
        let mut inner = self.lock();
        let mark = match (kind.is_check(), passed) {
            (_, false) => "✗",
            (true, true) => "✓",
            (false, true) => "→",
        };
        let when = if kind == StepKind::Assertion {
            format!("at +{:.1}s", inner.started.elapsed().as_secs_f64())
        } else {
            format!("{:.1}s", elapsed.as_secs_f64())
        };
        let text = format!("{mark} {detail}  ({when})");
        let lines = wrap(&text, NARRATION_WIDTH, "    ");
        let _ = writeln!(inner.out, "{}", lines.join("\n"));
        let _ = inner.out.flush();
        inner.steps.push(StepRecord {
            name: name.to_string(),
            kind,
            passed,
            elapsed_ms: elapsed.as_millis() as u64,
            detail,
            expected,
            actual,
        });
    }

    fn action_timeout(&self) -> Duration {
        self.lock().action_timeout
    }

    /// Do something and record what it returned: the future yields the value
    /// for the script and a one-line description for the report.
    pub async fn action<T>(
        &self,
        name: &str,
        fut: impl Future<Output = Result<(T, String), LabError>>,
    ) -> Result<T, LabError> {
        let started = self.begin(StepKind::Action, name);
        let limit = self.action_timeout();
        let result = tokio::time::timeout(limit, fut)
            .await
            .unwrap_or_else(|_| Err(LabError::Failed(format!("no answer within {limit:?}"))));
        match result {
            Ok((value, detail)) => {
                self.end(StepKind::Action, name, started, true, detail, None, None);
                Ok(value)
            }
            Err(e) => {
                self.end(
                    StepKind::Action,
                    name,
                    started,
                    false,
                    e.to_string(),
                    None,
                    None,
                );
                Err(e)
            }
        }
    }

    /// Inject a fault. `cleanup` is registered before `inject` runs (an
    /// injection that half-worked is undone too) and runs when the lab ends,
    /// whatever the ending.
    pub async fn fault<C, CF>(
        &self,
        name: &str,
        inject: impl Future<Output = Result<String, LabError>>,
        cleanup_name: &str,
        cleanup: C,
    ) -> Result<(), LabError>
    where
        C: FnOnce() -> CF + Send + 'static,
        CF: Future<Output = Result<String, LabError>> + Send + 'static,
    {
        self.lock().cleanups.push((
            cleanup_name.to_string(),
            Box::new(move || Box::pin(cleanup()) as BoxFuture<'static, _>),
        ));
        let started = self.begin(StepKind::Fault, name);
        let limit = self.action_timeout();
        let result = tokio::time::timeout(limit, inject)
            .await
            .unwrap_or_else(|_| Err(LabError::Failed(format!("no answer within {limit:?}"))));
        match result {
            Ok(detail) => {
                self.end(StepKind::Fault, name, started, true, detail, None, None);
                Ok(())
            }
            Err(e) => {
                self.end(
                    StepKind::Fault,
                    name,
                    started,
                    false,
                    e.to_string(),
                    None,
                    None,
                );
                Err(e)
            }
        }
    }

    /// Poll `probe` every `poll` until it reports [`Probe::Ready`], or fail
    /// when it reports [`Probe::Failed`], returns [`LabError::Failed`], or
    /// `deadline` passes. [`LabError::NotReady`] from a probe counts as
    /// "not yet" (a service restarting). Progress is printed when it changes
    /// and every [`PROGRESS_EVERY`]. A failure stops the script:
    /// [`LabError::Checkpoint`].
    pub async fn checkpoint<T, P, PF>(
        &self,
        name: &str,
        deadline: Duration,
        poll: Duration,
        mut probe: P,
    ) -> Result<T, LabError>
    where
        P: FnMut() -> PF,
        PF: Future<Output = Result<Probe<T>, LabError>>,
    {
        let started = self.begin(StepKind::Checkpoint, name);
        self.note(&format!("(deadline {}s)", deadline.as_secs_f64()));
        let mut last_progress = String::new();
        let mut last_printed = started;
        let failure = loop {
            let left = deadline.saturating_sub(started.elapsed());
            if left.is_zero() {
                break format!(
                    "deadline of {:.0}s exceeded; last seen: {}",
                    deadline.as_secs_f64(),
                    if last_progress.is_empty() {
                        "nothing"
                    } else {
                        &last_progress
                    }
                );
            }
            let seen = match tokio::time::timeout(left, probe()).await {
                Err(_) => continue, // the deadline passed during the probe
                Ok(Ok(seen)) => seen,
                Ok(Err(LabError::NotReady(why))) => Probe::Waiting(why),
                Ok(Err(e)) => break e.to_string(),
            };
            match seen {
                Probe::Ready(value, detail) => {
                    self.end(
                        StepKind::Checkpoint,
                        name,
                        started,
                        true,
                        detail,
                        None,
                        None,
                    );
                    return Ok(value);
                }
                Probe::Failed(why) => break why,
                Probe::Waiting(progress) => {
                    if progress != last_progress || last_printed.elapsed() >= PROGRESS_EVERY {
                        self.note(&format!(
                            "… {progress} (+{:.1}s)",
                            started.elapsed().as_secs_f64()
                        ));
                        last_printed = Instant::now();
                        last_progress = progress;
                    }
                }
            }
            let left = deadline.saturating_sub(started.elapsed());
            tokio::time::sleep(poll.min(left)).await;
        };
        self.end(
            StepKind::Checkpoint,
            name,
            started,
            false,
            failure.clone(),
            None,
            None,
        );
        Err(LabError::Checkpoint(format!("{name}: {failure}")))
    }

    /// Check `expected == actual` and record both. Returns whether it held;
    /// the script goes on either way.
    pub fn assert_eq<T: PartialEq + Debug>(&self, name: &str, expected: T, actual: T) -> bool {
        let passed = expected == actual;
        self.check(name, passed, format!("{expected:?}"), format!("{actual:?}"))
    }

    /// Record an assertion decided by the caller, with what was expected and
    /// what was seen.
    pub fn check(
        &self,
        name: &str,
        passed: bool,
        expected: impl Into<String>,
        actual: impl Into<String>,
    ) -> bool {
        let (expected, actual) = (expected.into(), actual.into());
        let started = self.begin(StepKind::Assertion, name);
        let detail = format!("expected {expected}, got {actual}");
        self.end(
            StepKind::Assertion,
            name,
            started,
            passed,
            detail,
            Some(expected),
            Some(actual),
        );
        passed
    }

    /// A number worth reporting (units last in names elsewhere; here as a field).
    pub fn measure(&self, name: &str, value: f64, unit: &str) {
        let mut inner = self.lock();
        let _ = writeln!(inner.out, "    ≈ {name}: {} {unit}", fmt_value(value));
        let _ = inner.out.flush();
        inner.measurements.push(Measurement {
            name: name.to_string(),
            value,
            unit: unit.to_string(),
        });
    }

    async fn run_cleanups(&self) {
        loop {
            let next = self.lock().cleanups.pop();
            let Some((name, cleanup)) = next else { break };
            let started = self.begin(StepKind::Cleanup, &name);
            let result = match tokio::time::timeout(CLEANUP_TIMEOUT, cleanup()).await {
                Ok(r) => r,
                Err(_) => Err(LabError::Failed(format!(
                    "no answer within {CLEANUP_TIMEOUT:?}"
                ))),
            };
            let (passed, detail) = match result {
                Ok(d) => (true, d),
                Err(e) => (false, format!("{e} — undo it by hand")),
            };
            self.end(
                StepKind::Cleanup,
                &name,
                started,
                passed,
                detail,
                None,
                None,
            );
        }
    }

    fn finish(&self, error: Option<LabError>) -> Report {
        let mut inner = self.lock();
        let elapsed = inner.started.elapsed();
        let checks: Vec<&StepRecord> = inner.steps.iter().filter(|s| s.kind.is_check()).collect();
        let checks_passed = checks.iter().filter(|s| s.passed).count();
        let checks_total = checks.len();
        let all_steps_passed = inner.steps.iter().all(|s| s.passed);
        let outcome = match &error {
            Some(LabError::NotReady(_)) => Outcome::NotReady,
            Some(_) => Outcome::Failed,
            None if all_steps_passed => Outcome::Passed,
            None => Outcome::Failed,
        };
        let mut summary = String::new();
        if !inner.measurements.is_empty() {
            summary.push_str("\nmeasurements\n");
            let width = inner
                .measurements
                .iter()
                .map(|m| m.name.chars().count())
                .max()
                .unwrap_or(0);
            for m in &inner.measurements {
                summary.push_str(&format!(
                    "  {:<width$}  {:>10} {}\n",
                    m.name,
                    fmt_value(m.value),
                    m.unit
                ));
            }
        }
        let verdict = match outcome {
            Outcome::Passed => "PASSED",
            Outcome::Failed => "FAILED",
            Outcome::NotReady => "NOT READY",
        };
        summary.push_str(&format!(
            "\n{verdict}: {checks_passed} of {checks_total} checks passed in {:.1}s",
            elapsed.as_secs_f64()
        ));
        if let Some(e) = &error {
            summary.push_str(&format!("\n  {e}"));
        }
        for s in inner.steps.iter().filter(|s| !s.passed) {
            summary.push_str(&format!(
                "\n  ✗ {} {}: {}",
                s.kind.label(),
                s.name,
                s.detail
            ));
        }
        let _ = writeln!(inner.out, "{summary}");
        let _ = inner.out.flush();
        Report {
            lab: self.name.to_string(),
            passed: outcome == Outcome::Passed,
            outcome,
            steps: inner.steps.clone(),
            measurements: inner.measurements.clone(),
            elapsed_ms: elapsed.as_millis() as u64,
            error: error.map(|e| e.to_string()),
        }
    }
}

fn fmt_value(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v:.1}")
    }
}

/// Greedy word wrap to `width` columns (indent included). Blank lines
/// separate paragraphs and are kept; a word longer than a line gets its own.
pub fn wrap(text: &str, width: usize, indent: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, para) in text.split("\n\n").enumerate() {
        if i > 0 {
            out.push(String::new());
        }
        let mut line = String::from(indent);
        let mut empty = true;
        for word in para.split_whitespace() {
            let len = line.chars().count() + usize::from(!empty) + word.chars().count();
            if !empty && len > width {
                out.push(std::mem::replace(&mut line, String::from(indent)));
                empty = true;
            }
            if !empty {
                line.push(' ');
            }
            line.push_str(word);
            empty = false;
        }
        if !empty {
            out.push(line);
        }
    }
    out
}

/// A writer into shared memory, for tests and for callers that want the
/// human output as a string.
#[derive(Debug, Clone, Default)]
pub struct SharedBuf(pub Arc<Mutex<Vec<u8>>>);

impl SharedBuf {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
    }
}

impl Write for SharedBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

    use super::*;

    async fn run_test<F, Fut>(script: F) -> (Report, String)
    where
        F: FnOnce(Lab) -> Fut,
        Fut: Future<Output = Result<(), LabError>>,
    {
        let buf = SharedBuf::default();
        let report = run(
            "demo",
            "a lab for tests",
            Box::new(buf.clone()),
            CancellationToken::new(),
            script,
        )
        .await;
        (report, buf.text())
    }

    #[tokio::test(start_paused = true)]
    async fn a_lab_whose_checks_hold_passes_with_exit_0() {
        let polls = Arc::new(AtomicU32::new(0));
        let p = polls.clone();
        let (report, out) = run_test(|lab| async move {
            lab.narrate("This lab shows nothing at all.");
            let n = lab
                .action("compute", async { Ok((41 + 1, "got 42".to_string())) })
                .await?;
            let seen = lab
                .checkpoint(
                    "the counter reaches 3",
                    Duration::from_secs(10),
                    Duration::from_millis(100),
                    || {
                        let p = p.clone();
                        async move {
                            let n = p.fetch_add(1, Ordering::SeqCst) + 1;
                            Ok(if n >= 3 {
                                Probe::Ready(n, format!("counter at {n}"))
                            } else {
                                Probe::Waiting(format!("counter at {n}"))
                            })
                        }
                    },
                )
                .await?;
            lab.assert_eq("the answer", 42, n);
            lab.measure("polls", f64::from(seen), "polls");
            Ok(())
        })
        .await;
        assert!(report.passed, "{out}");
        assert_eq!(report.exit_code(), EXIT_PASSED);
        let kinds: Vec<_> = report.steps.iter().map(|s| s.kind).collect();
        assert_eq!(
            kinds,
            [StepKind::Action, StepKind::Checkpoint, StepKind::Assertion]
        );
        assert_eq!(report.steps[0].detail, "got 42");
        assert_eq!(report.steps[2].expected.as_deref(), Some("42"));
        assert_eq!(report.measurements[0].value, 3.0);
        assert!(out.contains(" 1. action     compute"), "{out}");
        assert!(out.contains("✓ counter at 3"), "{out}");
        assert!(out.contains("… counter at 1"), "{out}");
        assert!(out.contains("PASSED: 2 of 2 checks passed"), "{out}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_assertion_fails_the_lab_but_the_script_goes_on() {
        let (report, out) = run_test(|lab| async move {
            lab.assert_eq("stock is back", 25, 24);
            lab.check("something else", true, "yes", "yes");
            Ok(())
        })
        .await;
        assert!(!report.passed);
        assert_eq!(report.exit_code(), EXIT_FAILED);
        assert_eq!(report.steps.len(), 2);
        assert!(!report.steps[0].passed);
        assert_eq!(report.steps[0].detail, "expected 25, got 24");
        assert!(report.steps[1].passed);
        assert!(out.contains("✗ expected 25, got 24"), "{out}");
        assert!(out.contains("FAILED: 1 of 2 checks passed"), "{out}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_checkpoint_past_its_deadline_fails_and_stops_the_script() {
        let after = Arc::new(AtomicBool::new(false));
        let a = after.clone();
        let started = tokio::time::Instant::now();
        let (report, out) = run_test(|lab| async move {
            lab.checkpoint(
                "never happens",
                Duration::from_secs(3),
                Duration::from_millis(500),
                || async { Ok(Probe::<()>::Waiting("still pending".into())) },
            )
            .await?;
            a.store(true, Ordering::SeqCst);
            Ok(())
        })
        .await;
        assert!(!after.load(Ordering::SeqCst), "the script went on");
        assert!(started.elapsed() >= Duration::from_secs(3));
        assert!(started.elapsed() < Duration::from_secs(4));
        assert_eq!(report.exit_code(), EXIT_FAILED);
        let step = &report.steps[0];
        assert!(!step.passed);
        assert!(
            step.detail
                .contains("deadline of 3s exceeded; last seen: still pending"),
            "{}",
            step.detail
        );
        assert!(out.contains("✗ deadline of 3s exceeded"), "{out}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_probe_that_never_answers_cannot_hang_a_checkpoint() {
        let (report, _) = run_test(|lab| async move {
            lab.checkpoint(
                "a stuck probe",
                Duration::from_secs(2),
                Duration::from_millis(100),
                futures::future::pending::<Result<Probe<()>, LabError>>,
            )
            .await?;
            Ok(())
        })
        .await;
        assert_eq!(report.exit_code(), EXIT_FAILED);
        assert!(report.steps[0].detail.contains("deadline of 2s exceeded"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_probe_reporting_failure_stops_waiting_at_once() {
        let started = tokio::time::Instant::now();
        let (report, _) = run_test(|lab| async move {
            lab.checkpoint(
                "order cancelled",
                Duration::from_secs(60),
                Duration::from_millis(100),
                || async { Ok(Probe::<()>::Failed("order completed instead".into())) },
            )
            .await?;
            Ok(())
        })
        .await;
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!(report.steps[0].detail, "order completed instead");
        assert_eq!(report.exit_code(), EXIT_FAILED);
    }

    #[tokio::test(start_paused = true)]
    async fn cleanups_run_when_a_checkpoint_fails() {
        let cleaned = Arc::new(AtomicBool::new(false));
        let c = cleaned.clone();
        let (report, out) = run_test(|lab| async move {
            lab.fault(
                "break something",
                async { Ok("broken".to_string()) },
                "repair it",
                move || async move {
                    c.store(true, Ordering::SeqCst);
                    Ok("repaired".to_string())
                },
            )
            .await?;
            lab.checkpoint(
                "it heals by itself",
                Duration::from_secs(1),
                Duration::from_millis(100),
                || async { Ok(Probe::<()>::Waiting("still broken".into())) },
            )
            .await?;
            Ok(())
        })
        .await;
        assert!(cleaned.load(Ordering::SeqCst));
        assert_eq!(report.exit_code(), EXIT_FAILED);
        let last = report.steps.last().unwrap();
        assert_eq!(last.kind, StepKind::Cleanup);
        assert!(last.passed);
        assert_eq!(last.detail, "repaired");
        assert!(out.contains(" 3. cleanup    repair it"), "{out}");
    }

    #[tokio::test(start_paused = true)]
    async fn cleanups_run_when_the_lab_is_interrupted_or_panics() {
        let cleaned = Arc::new(AtomicU32::new(0));
        let interrupt = CancellationToken::new();
        let i = interrupt.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(2)).await;
            i.cancel();
        });
        let c = cleaned.clone();
        let report = run(
            "demo",
            "interrupted",
            Box::new(SharedBuf::default()),
            interrupt,
            |lab| async move {
                lab.fault(
                    "break",
                    async { Ok(String::new()) },
                    "repair",
                    move || async move {
                        c.fetch_add(1, Ordering::SeqCst);
                        Ok("repaired".into())
                    },
                )
                .await?;
                lab.checkpoint(
                    "wait a long time",
                    Duration::from_secs(600),
                    Duration::from_secs(1),
                    || async { Ok(Probe::<()>::Waiting("waiting".into())) },
                )
                .await
            },
        )
        .await;
        assert_eq!(cleaned.load(Ordering::SeqCst), 1);
        assert_eq!(report.error.as_deref(), Some("interrupted"));
        assert_eq!(report.exit_code(), EXIT_FAILED);

        let c = cleaned.clone();
        let (report, _) = run_test(|lab| async move {
            lab.fault(
                "break",
                async { Ok(String::new()) },
                "repair",
                move || async move {
                    c.fetch_add(1, Ordering::SeqCst);
                    Ok("repaired".into())
                },
            )
            .await?;
            panic!("a bug in the lab");
        })
        .await;
        assert_eq!(cleaned.load(Ordering::SeqCst), 2);
        assert!(report.error.unwrap().contains("a bug in the lab"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_injection_is_cleaned_up_too_and_a_failed_cleanup_fails_the_lab() {
        let (report, out) = run_test(|lab| async move {
            lab.fault(
                "half-inject",
                async { Err::<String, _>(LabError::Failed("boom".into())) },
                "undo",
                || async { Err(LabError::NotReady("stripe-sim is gone".into())) },
            )
            .await?;
            Ok(())
        })
        .await;
        assert_eq!(report.steps.len(), 2);
        assert_eq!(report.steps[1].kind, StepKind::Cleanup);
        assert!(!report.steps[1].passed);
        assert!(out.contains("undo it by hand"), "{out}");
        assert_eq!(report.exit_code(), EXIT_FAILED);
    }

    #[tokio::test(start_paused = true)]
    async fn an_unreachable_system_is_exit_4() {
        let (report, out) = run_test(|lab| async move {
            lab.action::<()>("reach the gateway", async {
                Err(LabError::NotReady("cannot reach the gateway".into()))
            })
            .await?;
            Ok(())
        })
        .await;
        assert_eq!(report.outcome, Outcome::NotReady);
        assert_eq!(report.exit_code(), EXIT_NOT_READY);
        assert!(out.contains("NOT READY"), "{out}");
    }

    #[tokio::test(start_paused = true)]
    async fn the_json_report_has_the_documented_shape() {
        let (report, _) = run_test(|lab| async move {
            lab.action("act", async { Ok(((), "done".to_string())) })
                .await?;
            lab.assert_eq("same", "a", "a");
            lab.measure("latency", 12.5, "ms");
            Ok(())
        })
        .await;
        let v = serde_json::to_value(&report).unwrap();
        assert_eq!(v["lab"], "demo");
        assert_eq!(v["passed"], true);
        let step = &v["steps"][0];
        for key in ["name", "kind", "passed", "elapsed_ms", "detail"] {
            assert!(step.get(key).is_some(), "missing {key}: {step}");
        }
        assert_eq!(step["kind"], "action");
        assert!(step.get("expected").is_none());
        assert_eq!(v["steps"][1]["expected"], "\"a\"");
        assert_eq!(
            v["measurements"][0],
            serde_json::json!({"name": "latency", "value": 12.5, "unit": "ms"})
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_action_fails_after_the_action_timeout() {
        let report = run_with_timeout(
            "demo",
            "slow",
            Box::new(SharedBuf::default()),
            CancellationToken::new(),
            Duration::from_secs(1),
            |lab| async move {
                lab.action::<()>("hang", futures::future::pending()).await?;
                Ok(())
            },
        )
        .await;
        assert_eq!(report.exit_code(), EXIT_FAILED);
        assert!(report.steps[0].detail.contains("no answer within"));
    }

    #[test]
    fn narration_wraps_at_the_width_and_keeps_paragraphs() {
        let text = "one two three four five six seven eight nine ten\n\nnext paragraph";
        let lines = wrap(text, 20, "  ");
        assert!(lines.iter().all(|l| l.chars().count() <= 20), "{lines:?}");
        assert_eq!(lines[0], "  one two three four");
        assert!(lines.contains(&String::new()));
        assert_eq!(lines.last().unwrap(), "  next paragraph");
        let long = wrap("a supercalifragilisticexpialidocious word", 10, "");
        assert_eq!(long, ["a", "supercalifragilisticexpialidocious", "word"]);
    }
}
