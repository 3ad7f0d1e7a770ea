//! `POST /v1/apps/secrets`: create a secret, or replace the payload and expiry of the live one
//! with the same name in the scope (keeping its id and `created`). Parameters: `name`,
//! `payload`, `scope`, and optionally `expires_at` and `expand`.

use secretstore_core::{
    Access, Namespace, Payload, RequestContext, SecretName, SecretService, SetRequest,
};

use super::Operation;
use crate::error::ApiError;
use crate::idempotency::Answered;
use crate::params::{self, Params, SECRET_FIELDS};
use crate::render;

#[derive(Debug)]
pub struct Set;

impl Operation for Set {
    type Request = SetRequest;
    const NAME: &'static str = "secrets.set";

    fn parse(mut params: Params, namespace: &Namespace) -> Result<SetRequest, ApiError> {
        let expand = params.expand()?;
        let scope = params.scope()?;
        let name = params.text("name")?;
        let payload = params.text("payload")?;
        let expires_at = params.text("expires_at")?;
        params.finish()?;
        let name = params::required(name, "name")?;
        let payload = params::required(payload, "payload")?;
        let scope = params::parse_scope(scope)?;
        let address = params::address(namespace, scope, &name)?;
        params::check_findable(&address)?;
        let payload =
            Payload::parse(&payload).map_err(|p| ApiError::invalid_value("payload", p))?;
        let expires_at = params::optional(expires_at)
            .map(|v| params::parse_integer(&v, "expires_at"))
            .transpose()?;
        let reveal = params::parse_expand(expand, SECRET_FIELDS)?;
        Ok(SetRequest {
            address,
            payload,
            expires_at,
            reveal,
        })
    }

    fn access(request: &SetRequest) -> Access<'_> {
        request.access()
    }

    fn secret_name(request: &SetRequest) -> Option<&SecretName> {
        Some(&request.address.name)
    }

    fn replayed_payload(request: &SetRequest) -> Option<Payload> {
        request.reveal.then(|| request.payload.clone())
    }

    async fn run(
        service: SecretService,
        ctx: RequestContext,
        request: SetRequest,
    ) -> Result<Answered, ApiError> {
        let secret = service.set(&ctx, request).await?;
        Ok(Answered::kept_as(
            render::secret(&secret),
            render::without_payload(&secret, false),
        ))
    }
}
