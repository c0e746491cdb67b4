//! Shopstream's labs: scripted, self-checking experiments against a running
//! system, run by `shopstream lab run NAME`. The [`kit`] is the framework
//! (steps, faults with guaranteed cleanup, checkpoints with deadlines,
//! assertions, measurements, human and JSON reports); each lab is a module
//! that talks to the system only through its public surfaces ([`target`],
//! [`stripe_sim`], [`lifecycle`]).

pub mod cdc_latency;
pub mod checkout_failure;
pub mod consistency;
pub mod dsar;
pub mod feed_cache;
pub mod kit;
pub mod lifecycle;
pub mod live;
pub mod media;
pub mod media_pipeline;
pub mod order_live;
pub mod stripe_sim;
pub mod target;

use std::io::Write;

use tokio_util::sync::CancellationToken;

pub use kit::{LabError, Report};
pub use target::Target;

/// A lab as `shopstream lab list` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct LabInfo {
    pub name: &'static str,
    pub title: &'static str,
    pub summary: &'static str,
    /// The book chapter that explains it.
    pub chapter: &'static str,
}

/// Every lab, in the order the book teaches them.
pub const LABS: &[LabInfo] = &[
    LabInfo {
        name: checkout_failure::NAME,
        title: checkout_failure::TITLE,
        summary: checkout_failure::SUMMARY,
        chapter: "book/src/labs/checkout-failure.md",
    },
    LabInfo {
        name: cdc_latency::NAME,
        title: cdc_latency::TITLE,
        summary: cdc_latency::SUMMARY,
        chapter: "book/src/labs/cdc-latency.md",
    },
    LabInfo {
        name: order_live::NAME,
        title: order_live::TITLE,
        summary: order_live::SUMMARY,
        chapter: "book/src/labs/order-live.md",
    },
    LabInfo {
        name: media_pipeline::NAME,
        title: media_pipeline::TITLE,
        summary: media_pipeline::SUMMARY,
        chapter: "book/src/labs/media-pipeline.md",
    },
    LabInfo {
        name: feed_cache::NAME,
        title: feed_cache::TITLE,
        summary: feed_cache::SUMMARY,
        chapter: "book/src/labs/feed-cache.md",
    },
    LabInfo {
        name: dsar::NAME,
        title: dsar::TITLE,
        summary: dsar::SUMMARY,
        chapter: "book/src/labs/dsar.md",
    },
];

pub fn find(name: &str) -> Option<&'static LabInfo> {
    LABS.iter().find(|l| l.name == name)
}

/// Run lab `name` against `target`, writing the human output to `out`.
/// `None` when there is no such lab. Cleanups run before this returns, also
/// when `interrupt` fires.
pub async fn run(
    name: &str,
    target: Target,
    out: Box<dyn Write + Send>,
    interrupt: CancellationToken,
) -> Option<Report> {
    let info = find(name)?;
    let report = match info.name {
        checkout_failure::NAME => {
            kit::run(info.name, info.title, out, interrupt, |lab| {
                checkout_failure::script(lab, target)
            })
            .await
        }
        cdc_latency::NAME => {
            // Two phases of edits plus convergence outlast the default bound.
            kit::run_with_timeout(
                info.name,
                info.title,
                out,
                interrupt,
                std::time::Duration::from_secs(60),
                |lab| cdc_latency::script(lab, target),
            )
            .await
        }
        order_live::NAME => {
            kit::run(info.name, info.title, out, interrupt, |lab| {
                order_live::script(lab, target)
            })
            .await
        }
        media_pipeline::NAME => {
            kit::run(info.name, info.title, out, interrupt, |lab| {
                media_pipeline::script(lab, target)
            })
            .await
        }
        feed_cache::NAME => {
            // Signups (argon2) and the recovery rounds outlast the default bound.
            kit::run_with_timeout(
                info.name,
                info.title,
                out,
                interrupt,
                std::time::Duration::from_secs(90),
                |lab| feed_cache::script(lab, target),
            )
            .await
        }
        dsar::NAME => {
            // An order, a photo's pipeline and three DSARs (each sweep reads
            // every topic) outlast the default bound.
            kit::run_with_timeout(
                info.name,
                info.title,
                out,
                interrupt,
                std::time::Duration::from_secs(240),
                |lab| dsar::script(lab, target),
            )
            .await
        }
        _ => return None,
    };
    Some(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_lab_has_a_unique_name_and_a_chapter() {
        let mut names: Vec<_> = LABS.iter().map(|l| l.name).collect();
        names.dedup();
        assert_eq!(names.len(), LABS.len());
        for l in LABS {
            let chapter = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join(l.chapter);
            assert!(
                chapter.exists(),
                "{} has no chapter at {}",
                l.name,
                l.chapter
            );
        }
        assert!(find("checkout-failure").is_some());
        assert!(find("cdc-latency").is_some());
        assert!(find("order-live").is_some());
        assert!(find("media-pipeline").is_some());
        assert!(find("feed-cache").is_some());
        assert!(find("dsar").is_some());
        assert!(find("nope").is_none());
    }

    #[tokio::test]
    async fn a_lab_against_nothing_is_not_ready_and_says_so() {
        // Port 9 (discard) on loopback: nothing listens there.
        let target = Target {
            gateway_url: "http://127.0.0.1:9".into(),
            stripe_sim_url: "http://127.0.0.1:9".into(),
            inventory_grpc_url: "http://127.0.0.1:9".into(),
            identity_grpc_url: "http://127.0.0.1:9".into(),
            orders_grpc_url: "http://127.0.0.1:9".into(),
            payments_grpc_url: "http://127.0.0.1:9".into(),
            analytics_grpc_url: "http://127.0.0.1:9".into(),
            kafka_brokers: "127.0.0.1:9".into(),
            search_http_url: "http://127.0.0.1:9".into(),
            mail_sim_url: "http://127.0.0.1:9".into(),
            notifications_http_url: "http://127.0.0.1:9".into(),
            media_http_url: "http://127.0.0.1:9".into(),
            feed_http_url: "http://127.0.0.1:9".into(),
            compliance_grpc_url: "http://127.0.0.1:9".into(),
            compliance_http_url: "http://127.0.0.1:9".into(),
            redis_url: "redis://127.0.0.1:9".into(),
            operator: None,
        };
        let buf = kit::SharedBuf::default();
        let report = run(
            "checkout-failure",
            target,
            Box::new(buf.clone()),
            CancellationToken::new(),
        )
        .await
        .unwrap();
        assert_eq!(report.exit_code(), kit::EXIT_NOT_READY, "{}", buf.text());
        assert!(report.error.unwrap().contains("cannot reach the gateway"));
        assert!(
            run(
                "nope",
                Target::from_ports(&shopstream_platform::config::Ports::DEV),
                Box::new(std::io::sink()),
                CancellationToken::new()
            )
            .await
            .is_none()
        );
    }
}
