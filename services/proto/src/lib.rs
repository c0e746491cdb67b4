//! Protobuf contracts for every Shopstream gRPC surface and event payload.
//!
//! The `.proto` sources live in `services/proto/proto/shopstream/`; `build.rs`
//! compiles them with protox (no system `protoc`) into prost messages and
//! tonic clients/servers. Modules mirror the protobuf packages with the
//! leading `shopstream.` dropped: package `shopstream.orders.v1` is
//! [`orders::v1`], whose client is
//! `orders::v1::orders_service_client::OrdersServiceClient` and whose server
//! trait and wrapper are `orders::v1::orders_service_server::{OrdersService,
//! OrdersServiceServer}`.
//!
//! Cross-cutting conventions (see `common.proto` for the full list):
//! the tenant id travels in gRPC metadata under [`TENANT_METADATA_KEY`], never
//! in request messages; instants are `int64` Unix milliseconds in fields
//! ending in `_ms`; money is `common::v1::Money` (integer minor units plus an
//! ISO 4217 code), never a float.

/// gRPC metadata key (and Kafka header) that carries the tenant id of a call
/// or event.
pub const TENANT_METADATA_KEY: &str = "x-tenant-id";

/// The encoded `google.protobuf.FileDescriptorSet` of every Shopstream proto
/// file (with source info), e.g. for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/shopstream_descriptor.bin"));

/// Generates `pub mod $name { pub mod v1 { ... } }` around the prost/tonic
/// output for package `shopstream.$name.v1`.
macro_rules! proto_package {
    ($(#[$doc:meta])* $name:ident, $package:literal) => {
        $(#[$doc])*
        pub mod $name {
            /// Version 1 of the package. Evolve compatibly; breaking changes go
            /// in a new `v2` package.
            pub mod v1 {
                tonic::include_proto!($package);
            }
        }
    };
}

proto_package!(
    /// Shared types: `Money`, `ProductRef`, `User`, `ErrorDetail`, pagination.
    common,
    "shopstream.common.v1"
);
proto_package!(
    /// Identity: `GetUser`, `ValidateToken`.
    identity,
    "shopstream.identity.v1"
);
proto_package!(
    /// Catalog: `GetProduct`, `ListProducts`, `UpdateStock`.
    catalog,
    "shopstream.catalog.v1"
);
proto_package!(
    /// Inventory: `Reserve`, `Release`, `Commit`.
    inventory,
    "shopstream.inventory.v1"
);
proto_package!(
    /// Orders: `CreateOrder`, `GetOrder`, `ListOrders`.
    orders,
    "shopstream.orders.v1"
);
proto_package!(
    /// Payments: `CreateIntent`, `Capture`, `Refund`.
    payments,
    "shopstream.payments.v1"
);
proto_package!(
    /// Media: `StartIngest`, `GetAsset`.
    media,
    "shopstream.media.v1"
);
proto_package!(
    /// Feed: `PublishActivity`, `GetPage`, `ListActivities`, `Recommend`, `Backfill`.
    feed,
    "shopstream.feed.v1"
);
proto_package!(
    /// Search: `Query`.
    search,
    "shopstream.search.v1"
);
proto_package!(
    /// Notifications: `RegisterChannel`, `PushTest`.
    notifications,
    "shopstream.notifications.v1"
);
proto_package!(
    /// Analytics: `GetDailyStats`.
    analytics,
    "shopstream.analytics.v1"
);
proto_package!(
    /// Compliance: `StartDSAR`, `GetDSAR`.
    compliance,
    "shopstream.compliance.v1"
);
proto_package!(
    /// The DSAR participant contract: `Export`, `Erase`, `Scan` of one
    /// subject, served by every service that holds personal data.
    dsar,
    "shopstream.dsar.v1"
);
proto_package!(
    /// Event payloads for the Kafka topics (`product.events`,
    /// `order.lifecycle`, `payment.events`, `media.events`, `analytics.raw`,
    /// `activity.raw`).
    events,
    "shopstream.events.v1"
);

impl orders::v1::OrderState {
    /// The state as the REST API, the CLI and reports spell it: `completed`
    /// (prost's `as_str_name` gives the proto spelling, `ORDER_STATE_COMPLETED`).
    pub fn name(self) -> &'static str {
        use orders::v1::OrderState as S;
        match self {
            S::Unspecified => "unspecified",
            S::Pending => "pending",
            S::Reserved => "reserved",
            S::Authorized => "authorized",
            S::Captured => "captured",
            S::Completed => "completed",
            S::Cancelled => "cancelled",
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use prost::Message;

    use super::{FILE_DESCRIPTOR_SET, common, orders};

    #[test]
    fn create_order_request_round_trips() {
        let request = orders::v1::CreateOrderRequest {
            idempotency_key: "idem-7f3a".to_owned(),
            user_id: "user-1".to_owned(),
            payment_method: "pm_card_visa".to_owned(),
            items: vec![
                orders::v1::CreateOrderItem {
                    sku: Some(common::v1::ProductRef {
                        product_id: "prod-1".to_owned(),
                        sku_id: "sku-1".to_owned(),
                    }),
                    quantity: 2,
                },
                orders::v1::CreateOrderItem {
                    sku: Some(common::v1::ProductRef {
                        product_id: "prod-2".to_owned(),
                        sku_id: "sku-9".to_owned(),
                    }),
                    quantity: 1,
                },
            ],
        };

        let bytes = request.encode_to_vec();
        assert!(!bytes.is_empty());
        let decoded = orders::v1::CreateOrderRequest::decode(bytes.as_slice()).unwrap();
        assert_eq!(decoded, request);

        // Enums decode to their generated variants; 0 is always UNSPECIFIED.
        let order = orders::v1::Order {
            state: orders::v1::OrderState::Cancelled as i32,
            cancel_reason: orders::v1::CancelReason::PaymentDeclined as i32,
            ..Default::default()
        };
        let decoded = orders::v1::Order::decode(order.encode_to_vec().as_slice()).unwrap();
        assert_eq!(decoded.state(), orders::v1::OrderState::Cancelled);
        assert_eq!(
            decoded.cancel_reason(),
            orders::v1::CancelReason::PaymentDeclined
        );
        assert_eq!(
            orders::v1::Order::default().state(),
            orders::v1::OrderState::Unspecified
        );
    }

    #[test]
    fn descriptor_set_has_every_service() {
        let fds = prost_types::FileDescriptorSet::decode(FILE_DESCRIPTOR_SET).unwrap();
        let services: BTreeSet<String> = fds
            .file
            .iter()
            .flat_map(|file| {
                let package = file.package().to_owned();
                file.service
                    .iter()
                    .map(move |service| format!("{package}.{}", service.name()))
            })
            .collect();

        let expected: BTreeSet<String> = [
            "shopstream.identity.v1.IdentityService",
            "shopstream.catalog.v1.CatalogService",
            "shopstream.inventory.v1.InventoryService",
            "shopstream.orders.v1.OrdersService",
            "shopstream.payments.v1.PaymentsService",
            "shopstream.media.v1.MediaService",
            "shopstream.feed.v1.FeedService",
            "shopstream.search.v1.SearchService",
            "shopstream.notifications.v1.NotificationsService",
            "shopstream.analytics.v1.AnalyticsService",
            "shopstream.compliance.v1.ComplianceService",
            "shopstream.dsar.v1.Participant",
        ]
        .into_iter()
        .map(str::to_owned)
        .collect();

        assert_eq!(services, expected);
        assert_eq!(services.len(), 12);
    }

    #[test]
    fn generated_service_names_match_descriptors() {
        use tonic::server::NamedService;

        assert_eq!(
            <orders::v1::orders_service_server::OrdersServiceServer<()> as NamedService>::NAME,
            "shopstream.orders.v1.OrdersService"
        );
    }
}
