//! `POST /v1/apps/secrets/delete`: removes the live secret with this name in the scope and
//! answers it as it was, with `"deleted": true` (its payload only when asked). Parameters:
//! `name`, `scope`, optionally `expand`.

use secretstore_core::{
    Access, DeleteRequest, Namespace, RequestContext, SecretName, SecretService,
};

use super::Operation;
use crate::error::ApiError;
use crate::idempotency::Answered;
use crate::params::{self, Params};
use crate::render;

#[derive(Debug)]
pub struct Delete;

impl Operation for Delete {
    type Request = DeleteRequest;
    const NAME: &'static str = "secrets.delete";

    fn parse(params: Params, namespace: &Namespace) -> Result<DeleteRequest, ApiError> {
        let (address, reveal) = params::named(params, namespace)?;
        Ok(DeleteRequest { address, reveal })
    }

    fn access(request: &DeleteRequest) -> Access<'_> {
        request.access()
    }

    fn secret_name(request: &DeleteRequest) -> Option<&SecretName> {
        Some(&request.address.name)
    }

    async fn run(
        service: SecretService,
        ctx: RequestContext,
        request: DeleteRequest,
    ) -> Result<Answered, ApiError> {
        let secret = service.delete(&ctx, request).await?;
        Ok(Answered::kept_as(
            render::deleted(&secret),
            render::without_payload(&secret, true),
        ))
    }
}
