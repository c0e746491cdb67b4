//! gRPC: `Reserve`, `Release`, `Commit` (all idempotent), `GetStock`, `SetStock`.

use shopstream_platform::{ErrorCode, Problem, grpc::tenant};
use shopstream_proto::inventory::v1::{
    CommitRequest, CommitResponse, GetStockRequest, GetStockResponse, ReleaseRequest,
    ReleaseResponse, ReservationState, ReserveRequest, ReserveResponse, SetStockRequest,
    SetStockResponse, Stock, inventory_service_server::InventoryService,
};
use tonic::{Request, Response, Status};

use crate::{
    domain::{Line, State},
    ports::StoreError,
    service::{Inventory, InventoryError},
};

#[derive(Debug, Clone)]
pub struct GrpcApi {
    pub inventory: Inventory,
    pub default_tenant: String,
}

fn state(s: State) -> i32 {
    (match s {
        State::Held => ReservationState::Held,
        State::Committed => ReservationState::Committed,
        State::Released => ReservationState::Released,
        State::Expired => ReservationState::Expired,
    }) as i32
}

impl From<InventoryError> for Problem {
    fn from(e: InventoryError) -> Problem {
        match e {
            InventoryError::Invalid(fields) => Problem::invalid("invalid reservation", fields),
            InventoryError::Store(s) => match s {
                StoreError::InsufficientStock { .. }
                | StoreError::Conflict(_)
                | StoreError::OrderMismatch(_) => Problem::new(ErrorCode::Conflict, s.to_string()),
                StoreError::UnknownSku(_) | StoreError::NotFound => {
                    Problem::new(ErrorCode::NotFound, s.to_string())
                }
                StoreError::Storage(detail) => {
                    tracing::error!(%detail, "inventory storage error");
                    Problem::new(ErrorCode::Unavailable, "inventory storage is unavailable")
                }
            },
        }
    }
}

fn stock(sku_id: String, s: crate::ports::Stock) -> Stock {
    Stock {
        sku_id,
        on_hand: s.on_hand,
        reserved: s.reserved,
        available: s.available(),
        committed: s.committed,
    }
}

fn id(raw: &str) -> Result<uuid::Uuid, Status> {
    raw.parse()
        .map_err(|_| Problem::new(ErrorCode::Unprocessable, "reservation_id is not a UUID").into())
}

#[tonic::async_trait]
impl InventoryService for GrpcApi {
    async fn reserve(
        &self,
        req: Request<ReserveRequest>,
    ) -> Result<Response<ReserveResponse>, Status> {
        let tenant = tenant(&req, &self.default_tenant);
        let r = req.into_inner();
        let lines: Vec<Line> = r
            .items
            .iter()
            .map(|i| Line {
                sku_id: i.sku.as_ref().map(|s| s.sku_id.clone()).unwrap_or_default(),
                quantity: i.quantity,
            })
            .collect();
        let res = self
            .inventory
            .reserve(&tenant, &r.order_id, &lines, r.ttl_s)
            .await
            .map_err(Problem::from)?;
        Ok(Response::new(ReserveResponse {
            reservation_id: res.id.to_string(),
            state: state(res.state),
            expires_at_ms: res.expires_at_ms,
        }))
    }

    async fn release(
        &self,
        req: Request<ReleaseRequest>,
    ) -> Result<Response<ReleaseResponse>, Status> {
        let tenant = tenant(&req, &self.default_tenant);
        let msg = req.get_ref();
        let r = if msg.reservation_id.is_empty() {
            self.inventory.release_order(&tenant, &msg.order_id).await
        } else {
            self.inventory
                .release(&tenant, id(&msg.reservation_id)?)
                .await
        }
        .map_err(Problem::from)?;
        Ok(Response::new(ReleaseResponse {
            state: state(r.state),
        }))
    }

    async fn commit(
        &self,
        req: Request<CommitRequest>,
    ) -> Result<Response<CommitResponse>, Status> {
        let tenant = tenant(&req, &self.default_tenant);
        let r = self
            .inventory
            .commit(&tenant, id(&req.get_ref().reservation_id)?)
            .await
            .map_err(Problem::from)?;
        Ok(Response::new(CommitResponse {
            state: state(r.state),
        }))
    }

    async fn get_stock(
        &self,
        req: Request<GetStockRequest>,
    ) -> Result<Response<GetStockResponse>, Status> {
        let tenant = tenant(&req, &self.default_tenant);
        let sku = req.into_inner().sku_id;
        let s = self
            .inventory
            .stock(&tenant, &sku)
            .await
            .map_err(Problem::from)?;
        Ok(Response::new(GetStockResponse {
            stock: Some(stock(sku, s)),
        }))
    }

    async fn set_stock(
        &self,
        req: Request<SetStockRequest>,
    ) -> Result<Response<SetStockResponse>, Status> {
        let tenant = tenant(&req, &self.default_tenant);
        let r = req.into_inner();
        let s = self
            .inventory
            .set_stock(&tenant, &r.sku_id, r.on_hand)
            .await
            .map_err(Problem::from)?;
        Ok(Response::new(SetStockResponse {
            stock: Some(stock(r.sku_id, s)),
        }))
    }
}
