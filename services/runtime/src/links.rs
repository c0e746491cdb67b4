//! The links of a native stack: which environment variable each component
//! reads for the address of each peer it talks to. A chaos run puts a link
//! through a [`crate::fault_proxy`] by starting a proxy in front of the
//! link's [`Link::upstream`] and overriding the variable for the `from`
//! component only ([`crate::Stack::set_overrides`], then a restart) with
//! [`Link::rewrite_url`] of its [`Link::default_url`].
//!
//! [`ROUTES`] is the table, checked against the services' sources by this
//! module's tests. Two limits of routing by address: a Kafka client only
//! bootstraps through the proxy (the broker then advertises its own address,
//! and produce/fetch go there directly), and S3 URLs presigned by a service
//! whose S3 link is proxied name the proxy.

use std::{fmt, net::SocketAddr};

use shopstream_platform::config::{Endpoints, Ports};

use crate::components::Kind;

/// Which listener of `to` a route reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// The service's HTTP port; the URL is `http://host:port` plus a path.
    Http,
    /// The service's gRPC port; the URL is `http://host:port`.
    Grpc,
    /// mail-sim's SMTP port (its gRPC slot); the value is `host:port`.
    Smtp,
    /// An infrastructure component's port; the URL is its endpoint.
    Backend,
}

/// One variable `from` reads to find `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub from: Kind,
    pub to: Kind,
    pub var: &'static str,
    pub listener: Listener,
    /// Path of the default URL (only stripe-sim's webhook URL has one).
    pub path: &'static str,
}

const fn service(from: Kind, to: Kind, var: &'static str, listener: Listener) -> Route {
    Route {
        from,
        to,
        var,
        listener,
        path: "",
    }
}

const fn backend(from: Kind, to: Kind) -> Route {
    let var = match to {
        Kind::Postgres => POSTGRES_URL,
        Kind::Redis => REDIS_URL,
        Kind::Kafka => KAFKA_BROKERS,
        Kind::Temporal => TEMPORAL_URL,
        _ => S3_ENDPOINT,
    };
    Route {
        from,
        to,
        var,
        listener: Listener::Backend,
        path: "",
    }
}

// The variables of `shopstream_platform::config::Endpoints::from_env`, read
// by every service through `ServiceConfig::from_env`.
const POSTGRES_URL: &str = "SHOPSTREAM_POSTGRES_URL";
const REDIS_URL: &str = "SHOPSTREAM_REDIS_URL";
const KAFKA_BROKERS: &str = "SHOPSTREAM_KAFKA_BROKERS";
const TEMPORAL_URL: &str = "SHOPSTREAM_TEMPORAL_URL";
const S3_ENDPOINT: &str = "SHOPSTREAM_S3_ENDPOINT";

use Kind::*;
use Listener::{Grpc, Http, Smtp};

/// Every link of the native stack, one row per variable. A link with two
/// rows (gateway→catalog: gRPC and HTTP) has its primary row first.
#[rustfmt::skip]
pub const ROUTES: &[Route] = &[
    // gateway: the edge calls every service behind it.
    service(Gateway, Identity, "SHOPSTREAM_IDENTITY_URL", Http),
    service(Gateway, Catalog, "SHOPSTREAM_CATALOG_GRPC_URL", Grpc),
    service(Gateway, Catalog, "SHOPSTREAM_CATALOG_URL", Http),
    service(Gateway, Inventory, "SHOPSTREAM_INVENTORY_GRPC_URL", Grpc),
    service(Gateway, Orders, "SHOPSTREAM_ORDERS_GRPC_URL", Grpc),
    service(Gateway, Payments, "SHOPSTREAM_PAYMENTS_GRPC_URL", Grpc),
    service(Gateway, Payments, "SHOPSTREAM_PAYMENTS_URL", Http),
    service(Gateway, Search, "SHOPSTREAM_SEARCH_GRPC_URL", Grpc),
    service(Gateway, Analytics, "SHOPSTREAM_ANALYTICS_GRPC_URL", Grpc),
    service(Gateway, Media, "SHOPSTREAM_MEDIA_GRPC_URL", Grpc),
    service(Gateway, Feed, "SHOPSTREAM_FEED_GRPC_URL", Grpc),
    service(Gateway, Compliance, "SHOPSTREAM_COMPLIANCE_GRPC_URL", Grpc),
    backend(Gateway, Redis),
    backend(Gateway, Kafka),
    // identity
    backend(Identity, Postgres),
    backend(Identity, Redis),
    // catalog
    backend(Catalog, Postgres),
    // inventory
    backend(Inventory, Postgres),
    // orders: the saga calls catalog, inventory and payments.
    service(Orders, Catalog, "SHOPSTREAM_ORDERS_CATALOG_URL", Grpc),
    service(Orders, Inventory, "SHOPSTREAM_ORDERS_INVENTORY_URL", Grpc),
    service(Orders, Payments, "SHOPSTREAM_ORDERS_PAYMENTS_URL", Grpc),
    backend(Orders, Postgres),
    backend(Orders, Kafka),
    backend(Orders, Temporal),
    // payments and the Stripe emulator call each other.
    service(Payments, StripeSim, "SHOPSTREAM_STRIPE_API_BASE", Http),
    backend(Payments, Postgres),
    backend(Payments, Kafka),
    Route {
        from: StripeSim,
        to: Payments,
        var: "SHOPSTREAM_STRIPE_SIM_WEBHOOK_URL",
        listener: Http,
        path: "/webhooks/stripe",
    },
    // cdc
    backend(Cdc, Postgres),
    backend(Cdc, Kafka),
    // search
    service(Search, Catalog, "SHOPSTREAM_SEARCH_CATALOG_URL", Grpc),
    backend(Search, Kafka),
    // notifications
    service(Notifications, Identity, "SHOPSTREAM_IDENTITY_GRPC_URL", Grpc),
    service(Notifications, MailSim, "SHOPSTREAM_NOTIFICATIONS_SMTP", Smtp),
    service(Notifications, MailSim, "SHOPSTREAM_NOTIFICATIONS_MAIL_SINK_URL", Http),
    backend(Notifications, Postgres),
    backend(Notifications, Redis),
    backend(Notifications, Kafka),
    // analytics
    backend(Analytics, Postgres),
    backend(Analytics, Kafka),
    // media
    backend(Media, Postgres),
    backend(Media, Kafka),
    backend(Media, Temporal),
    backend(Media, S3),
    // feed
    backend(Feed, Postgres),
    backend(Feed, Redis),
    backend(Feed, Kafka),
    // compliance: every DSAR participant at SHOPSTREAM_<NAME>_GRPC_URL.
    service(Compliance, Identity, "SHOPSTREAM_IDENTITY_GRPC_URL", Grpc),
    service(Compliance, Orders, "SHOPSTREAM_ORDERS_GRPC_URL", Grpc),
    service(Compliance, Notifications, "SHOPSTREAM_NOTIFICATIONS_GRPC_URL", Grpc),
    service(Compliance, Analytics, "SHOPSTREAM_ANALYTICS_GRPC_URL", Grpc),
    service(Compliance, Feed, "SHOPSTREAM_FEED_GRPC_URL", Grpc),
    service(Compliance, Media, "SHOPSTREAM_MEDIA_GRPC_URL", Grpc),
    service(Compliance, Gateway, "SHOPSTREAM_GATEWAY_GRPC_URL", Grpc),
    backend(Compliance, Postgres),
    backend(Compliance, Redis),
    backend(Compliance, Kafka),
    backend(Compliance, Temporal),
    backend(Compliance, S3),
];

impl Route {
    /// The address the route reaches on a stack's `ports`.
    pub fn upstream(&self, ports: &Ports) -> SocketAddr {
        match self.listener {
            Listener::Backend => SocketAddr::from(([127, 0, 0, 1], self.to.port(ports))),
            Listener::Http | Listener::Grpc | Listener::Smtp => {
                let (http, grpc) = self
                    .to
                    .service_addrs(ports)
                    .expect("service routes lead to services");
                if self.listener == Listener::Http {
                    http
                } else {
                    grpc
                }
            }
        }
    }

    /// The variable's value on a native stack (what the service uses when
    /// the variable is not set).
    pub fn default_url(&self, ports: &Ports) -> String {
        let upstream = self.upstream(ports);
        match self.listener {
            Listener::Http => format!("http://{upstream}{}", self.path),
            Listener::Grpc => format!("http://{upstream}"),
            Listener::Smtp => upstream.to_string(),
            Listener::Backend => {
                let e = Endpoints::native(*ports);
                match self.to {
                    Kind::Postgres => e.postgres_url,
                    Kind::Redis => e.redis_url,
                    Kind::Kafka => e.kafka_brokers,
                    Kind::Temporal => e.temporal_url,
                    _ => e.s3_endpoint,
                }
            }
        }
    }

    /// `(variable, value)` that sends this route through a proxy at `proxy`.
    pub fn proxied(&self, ports: &Ports, proxy: SocketAddr) -> (String, String) {
        (
            self.var.to_string(),
            rewrite_url(&self.default_url(ports), proxy),
        )
    }
}

/// Why a link was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("`{0}` is not a link: write FROM->TO, e.g. payments->stripe-sim")]
    Syntax(String),
    #[error("unknown component `{name}` in `{link}`; valid components: {valid}")]
    UnknownComponent {
        link: String,
        name: String,
        valid: String,
    },
    #[error("{from} does not talk to {to}; {from} talks to: {talks_to}")]
    NoSuchLink {
        from: &'static str,
        to: &'static str,
        talks_to: String,
    },
}

/// A connection from one component to another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Link {
    pub from: Kind,
    pub to: Kind,
}

impl fmt::Display for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}->{}", self.from.name(), self.to.name())
    }
}

impl std::str::FromStr for Link {
    type Err = LinkError;
    fn from_str(s: &str) -> Result<Link, LinkError> {
        Link::parse(s)
    }
}

fn valid_components() -> String {
    Kind::ALL.map(Kind::name).join(", ")
}

impl Link {
    /// `"payments->stripe-sim"`. Only the names are checked here; whether
    /// `from` talks to `to` is [`Link::env_var`]'s question.
    pub fn parse(s: &str) -> Result<Link, LinkError> {
        let (from, to) = s
            .split_once("->")
            .ok_or_else(|| LinkError::Syntax(s.to_string()))?;
        let kind = |name: &str| {
            let name = name.trim();
            if name.is_empty() {
                return Err(LinkError::Syntax(s.to_string()));
            }
            Kind::parse(name).ok_or_else(|| LinkError::UnknownComponent {
                link: s.trim().to_string(),
                name: name.to_string(),
                valid: valid_components(),
            })
        };
        Ok(Link {
            from: kind(from)?,
            to: kind(to)?,
        })
    }

    /// Every link of the stack, in table order.
    pub fn all() -> Vec<Link> {
        let mut out: Vec<Link> = Vec::new();
        for r in ROUTES {
            let link = Link {
                from: r.from,
                to: r.to,
            };
            if !out.contains(&link) {
                out.push(link);
            }
        }
        out
    }

    /// The components `from` talks to, in table order.
    pub fn peers(from: Kind) -> Vec<Kind> {
        Link::all()
            .into_iter()
            .filter(|l| l.from == from)
            .map(|l| l.to)
            .collect()
    }

    /// Every variable of this link, primary first.
    pub fn routes(&self) -> Result<Vec<&'static Route>, LinkError> {
        let routes: Vec<&'static Route> = ROUTES
            .iter()
            .filter(|r| r.from == self.from && r.to == self.to)
            .collect();
        if routes.is_empty() {
            let peers = Link::peers(self.from);
            return Err(LinkError::NoSuchLink {
                from: self.from.name(),
                to: self.to.name(),
                talks_to: if peers.is_empty() {
                    "nothing".into()
                } else {
                    peers
                        .iter()
                        .map(|k| k.name())
                        .collect::<Vec<_>>()
                        .join(", ")
                },
            });
        }
        Ok(routes)
    }

    fn primary(&self) -> Result<&'static Route, LinkError> {
        Ok(self.routes()?[0])
    }

    /// The variable `from` reads for `to`'s address (the primary one where
    /// there are two, see [`Link::routes`]).
    pub fn env_var(&self) -> Result<&'static str, LinkError> {
        Ok(self.primary()?.var)
    }

    /// The address behind [`Link::env_var`] on a stack's `ports`: what a
    /// proxy for this link forwards to.
    pub fn upstream(&self, ports: &Ports) -> Result<SocketAddr, LinkError> {
        Ok(self.primary()?.upstream(ports))
    }

    /// The value of [`Link::env_var`] on a native stack.
    pub fn default_url(&self, ports: &Ports) -> Result<String, LinkError> {
        Ok(self.primary()?.default_url(ports))
    }

    /// `original_url` pointed at `proxy`: see [`rewrite_url`].
    pub fn rewrite_url(&self, original_url: &str, proxy: SocketAddr) -> String {
        rewrite_url(original_url, proxy)
    }
}

/// `url` with its host and port replaced by `proxy`; scheme, credentials,
/// path, query and fragment are kept. A value without a scheme is an address
/// list (`host:port[,host:port]`, as Kafka's bootstrap servers and SMTP
/// take) and becomes the proxy's address.
pub fn rewrite_url(url: &str, proxy: SocketAddr) -> String {
    let Some(scheme_end) = url.find("://") else {
        return proxy.to_string();
    };
    let authority_start = scheme_end + 3;
    let rest = &url[authority_start..];
    let authority_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_len];
    let userinfo = authority.rfind('@').map_or("", |at| &authority[..=at]);
    format!(
        "{}{userinfo}{proxy}{}",
        &url[..authority_start],
        &rest[authority_len..]
    )
}

#[cfg(test)]
mod tests {
    use std::{collections::BTreeSet, path::Path};

    use super::*;

    const PROXY: &str = "127.0.0.1:40001";

    fn proxy() -> SocketAddr {
        PROXY.parse().unwrap()
    }

    #[test]
    fn rewrites_keep_scheme_credentials_and_path() {
        let p = proxy();
        let cases = [
            ("http://127.0.0.1:18085", "http://127.0.0.1:40001"),
            (
                "http://127.0.0.1:18086/webhooks/stripe?x=1#f",
                "http://127.0.0.1:40001/webhooks/stripe?x=1#f",
            ),
            (
                "postgres://shopstream:secret@127.0.0.1:15432/orders?sslmode=disable",
                "postgres://shopstream:secret@127.0.0.1:40001/orders?sslmode=disable",
            ),
            (
                "postgres://shopstream@127.0.0.1:15432",
                "postgres://shopstream@127.0.0.1:40001",
            ),
            ("redis://[::1]:16379/0", "redis://127.0.0.1:40001/0"),
            ("https://api.stripe.com", "https://127.0.0.1:40001"),
            ("127.0.0.1:19092", "127.0.0.1:40001"),
            ("127.0.0.1:19092,127.0.0.1:19093", "127.0.0.1:40001"),
        ];
        for (from, want) in cases {
            assert_eq!(rewrite_url(from, p), want, "{from}");
        }
        let v6: SocketAddr = "[::1]:40001".parse().unwrap();
        assert_eq!(rewrite_url("http://h:1/p", v6), "http://[::1]:40001/p");
    }

    #[test]
    fn parse_names_valid_components_and_links_name_their_peers() {
        let link = Link::parse(" payments -> stripe-sim ").unwrap();
        assert_eq!(
            link,
            Link {
                from: Kind::Payments,
                to: Kind::StripeSim
            }
        );
        assert_eq!(link.to_string(), "payments->stripe-sim");
        assert_eq!(link.to_string().parse::<Link>().unwrap(), link);

        let err = Link::parse("payments->stripe").unwrap_err().to_string();
        assert!(
            err.contains("`stripe`") && err.contains("stripe-sim, payments"),
            "{err}"
        );
        assert!(matches!(Link::parse("payments"), Err(LinkError::Syntax(_))));
        assert!(matches!(Link::parse("->redis"), Err(LinkError::Syntax(_))));

        let err = Link::parse("payments->redis")
            .unwrap()
            .env_var()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "payments does not talk to redis; payments talks to: stripe-sim, postgres, kafka"
        );
        let err = Link::parse("mail-sim->orders")
            .unwrap()
            .env_var()
            .unwrap_err();
        assert!(err.to_string().ends_with("talks to: nothing"), "{err}");
    }

    #[test]
    fn upstreams_and_default_urls_follow_the_ports() {
        let ports = Ports::DEV;
        let link = Link::parse("payments->stripe-sim").unwrap();
        assert_eq!(link.env_var().unwrap(), "SHOPSTREAM_STRIPE_API_BASE");
        let (stripe_http, _) = Kind::StripeSim.service_addrs(&ports).unwrap();
        assert_eq!(link.upstream(&ports).unwrap(), stripe_http);
        assert_eq!(
            link.default_url(&ports).unwrap(),
            format!("http://{stripe_http}")
        );

        let link = Link::parse("orders->inventory").unwrap();
        let (_, inventory_grpc) = Kind::Inventory.service_addrs(&ports).unwrap();
        assert_eq!(link.upstream(&ports).unwrap(), inventory_grpc);

        let link = Link::parse("orders->postgres").unwrap();
        assert_eq!(link.env_var().unwrap(), "SHOPSTREAM_POSTGRES_URL");
        assert_eq!(link.upstream(&ports).unwrap().port(), ports.postgres);
        assert_eq!(
            link.rewrite_url(&link.default_url(&ports).unwrap(), proxy()),
            format!("postgres://shopstream@{PROXY}")
        );

        let webhook = Link::parse("stripe-sim->payments")
            .unwrap()
            .routes()
            .unwrap()[0];
        let (payments_http, _) = Kind::Payments.service_addrs(&ports).unwrap();
        assert_eq!(
            webhook.default_url(&ports),
            format!("http://{payments_http}/webhooks/stripe")
        );
        assert_eq!(
            webhook.proxied(&ports, proxy()),
            (
                "SHOPSTREAM_STRIPE_SIM_WEBHOOK_URL".to_string(),
                format!("http://{PROXY}/webhooks/stripe")
            )
        );

        let smtp = Link::parse("notifications->mail-sim").unwrap();
        let (_, mail_smtp) = Kind::MailSim.service_addrs(&ports).unwrap();
        assert_eq!(smtp.default_url(&ports).unwrap(), mail_smtp.to_string());
        assert_eq!(smtp.routes().unwrap().len(), 2);
    }

    #[test]
    fn the_table_has_no_duplicates_and_only_real_components() {
        let mut seen = BTreeSet::new();
        for r in ROUTES {
            assert!(r.from.is_service(), "{r:?}: links start at services");
            assert_ne!(r.from, r.to, "{r:?}");
            assert_eq!(r.listener == Listener::Backend, !r.to.is_service(), "{r:?}");
            assert!(seen.insert((r.from, r.var)), "{r:?}: {} read twice", r.var);
        }
        for r in ROUTES {
            assert_ne!(r.upstream(&Ports::TEST).port(), 0, "{r:?}");
        }
    }

    /// All Rust source of one service crate.
    fn source_of(service: Kind) -> String {
        if service == Kind::Otel {
            // The collector is a module of this crate, not a crate of its own.
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/otel.rs");
            return std::fs::read_to_string(&path).unwrap();
        }
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(service.name())
            .join("src");
        let mut out = String::new();
        let mut dirs = vec![dir.clone()];
        while let Some(d) = dirs.pop() {
            for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|x| x == "rs") {
                    out.push_str(&std::fs::read_to_string(&path).unwrap());
                }
            }
        }
        out
    }

    /// Evidence in a service's source that it connects to `backend`.
    fn uses_backend(src: &str, backend: Kind) -> bool {
        let marks: &[&str] = match backend {
            Kind::Postgres => &["db::connect"],
            Kind::Redis => &["cache::connect", "redis_url"],
            Kind::Kafka => &["KafkaBus", "kafka_brokers"],
            Kind::Temporal => &["temporal::connect", "temporal_url", "temporal::worker"],
            _ => &["object_store::client", "s3_endpoint"],
        };
        marks.iter().any(|m| src.contains(m))
    }

    /// Each `grpc_url_of("peer", "VAR")` / `http_url_of("peer", "VAR")` call
    /// with literal arguments in `src`.
    fn url_reads(src: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for part in src.split("_url_of(").skip(1) {
            let args: Vec<&str> = part.splitn(5, '"').collect();
            // `"peer", "VAR"` splits into ["", peer, ", ", VAR, ...].
            if args.len() == 5 && args[0].trim().is_empty() && args[2].trim() == "," {
                out.push((args[1].to_string(), args[3].to_string()));
            }
        }
        out
    }

    #[test]
    fn the_table_names_the_variables_the_services_read() {
        let platform = source_of_platform_config();
        for var in [
            POSTGRES_URL,
            REDIS_URL,
            KAFKA_BROKERS,
            TEMPORAL_URL,
            S3_ENDPOINT,
        ] {
            assert!(
                platform.contains(&format!("\"{var}\"")),
                "Endpoints reads no {var}"
            );
        }
        let compliance = source_of(Kind::Compliance);
        for r in ROUTES {
            let src = source_of(r.from);
            match r.listener {
                Listener::Backend => assert!(
                    uses_backend(&src, r.to),
                    "{} shows no use of {}",
                    r.from.name(),
                    r.to.name()
                ),
                _ if r.from == Kind::Compliance => {
                    // Participants' variables are built from their names.
                    assert!(compliance.contains("\"SHOPSTREAM_{}_GRPC_URL\""));
                    let upper = r.to.name().to_ascii_uppercase().replace('-', "_");
                    assert_eq!(r.var, format!("SHOPSTREAM_{upper}_GRPC_URL"));
                    assert!(
                        compliance.contains(&format!("\"{}\",", r.to.name())),
                        "{} is not a DSAR participant",
                        r.to.name()
                    );
                }
                _ => assert!(
                    src.contains(&format!("\"{}\"", r.var)),
                    "{} never reads {}",
                    r.from.name(),
                    r.var
                ),
            }
        }
        // And the other way round: every peer address and backend a service
        // reads is in the table.
        let mut reads = 0;
        for from in Kind::SERVICES {
            let src = source_of(from);
            for (peer, var) in url_reads(&src) {
                reads += 1;
                let to = Kind::parse(&peer).unwrap_or_else(|| panic!("{peer}?"));
                assert!(
                    ROUTES
                        .iter()
                        .any(|r| r.from == from && r.to == to && r.var == var),
                    "{}->{peer} via {var} is missing from ROUTES",
                    from.name()
                );
            }
            for b in Kind::INFRA {
                if uses_backend(&src, b) {
                    assert!(
                        ROUTES.iter().any(|r| r.from == from && r.to == b),
                        "{}->{} is missing from ROUTES",
                        from.name(),
                        b.name()
                    );
                }
            }
        }
        // The scan itself works: the gateway alone reads twelve addresses.
        assert!(
            reads >= 20,
            "only {reads} peer addresses found in the sources"
        );
    }

    fn source_of_platform_config() -> String {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../platform/src/config.rs");
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    #[test]
    fn every_link_parses_back_from_its_name() {
        for link in Link::all() {
            assert_eq!(Link::parse(&link.to_string()).unwrap(), link);
            assert!(link.env_var().is_ok());
        }
    }
}
