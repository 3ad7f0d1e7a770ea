//! `GET /v1/apps/secrets/find`: the live secret with this name in the scope, with its payload
//! only when asked (`expand[]=payload`). Parameters: `name`, `scope`, optionally `expand`.

use secretstore_core::{Access, FindRequest, Namespace, RequestContext, SecretName, SecretService};

use super::Operation;
use crate::error::ApiError;
use crate::idempotency::Answered;
use crate::params::{self, Params};
use crate::render;

#[derive(Debug)]
pub struct Find;

impl Operation for Find {
    type Request = FindRequest;
    const NAME: &'static str = "secrets.find";

    fn parse(params: Params, namespace: &Namespace) -> Result<FindRequest, ApiError> {
        let (address, reveal) = params::named(params, namespace)?;
        Ok(FindRequest { address, reveal })
    }

    fn access(request: &FindRequest) -> Access<'_> {
        request.access()
    }

    fn secret_name(request: &FindRequest) -> Option<&SecretName> {
        Some(&request.address.name)
    }

    async fn run(
        service: SecretService,
        ctx: RequestContext,
        request: FindRequest,
    ) -> Result<Answered, ApiError> {
        let secret = service.find(&ctx, request).await?;
        Ok(Answered::new(
            render::secret(&secret),
            secret.payload.is_some(),
        ))
    }
}
