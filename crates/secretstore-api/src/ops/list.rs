//! `GET /v1/apps/secrets`: one page of a scope's live secrets, newest first. Parameters:
//! `scope`, optionally `limit` (1 to 100, default 10), `starting_after` or `ending_before` (not
//! both) and `expand` (`data.payload`).

use secretstore_core::limits::{DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT, MIN_LIST_LIMIT};
use secretstore_core::{Access, ListCursor, ListRequest, Namespace, RequestContext, SecretService};

use super::Operation;
use crate::error::{ApiError, Code};
use crate::idempotency::Answered;
use crate::params::{self, Params, LIST_ITEM_FIELDS};
use crate::render;

#[derive(Debug)]
pub struct List;

impl Operation for List {
    type Request = ListRequest;
    const NAME: &'static str = "secrets.list";

    fn parse(mut params: Params, namespace: &Namespace) -> Result<ListRequest, ApiError> {
        let expand = params.expand()?;
        let scope = params.scope()?;
        let limit = params.text("limit")?;
        let starting_after = params.text("starting_after")?;
        let ending_before = params.text("ending_before")?;
        params.finish()?;
        let scope = params::parse_scope(scope)?;
        let limit = match params::optional(limit) {
            None => DEFAULT_LIST_LIMIT,
            Some(v) => {
                let n = params::parse_integer(&v, "limit")?;
                if !(i64::from(MIN_LIST_LIMIT)..=i64::from(MAX_LIST_LIMIT)).contains(&n) {
                    return Err(ApiError::out_of_range(
                        "limit",
                        format!(
                            "Invalid limit: must be between {MIN_LIST_LIMIT} and \
                             {MAX_LIST_LIMIT}."
                        ),
                    ));
                }
                n as u32
            }
        };
        if params::optional(starting_after.clone()).is_some()
            && params::optional(ending_before.clone()).is_some()
        {
            return Err(ApiError::new(
                Code::ParametersExclusive,
                "You may only specify one of these parameters: ending_before, starting_after.",
            )
            .with_param("ending_before"));
        }
        let cursor = match params::parse_cursor(starting_after, "starting_after")? {
            Some(id) => Some(ListCursor::StartingAfter(id)),
            None => {
                params::parse_cursor(ending_before, "ending_before")?.map(ListCursor::EndingBefore)
            }
        };
        let reveal = params::parse_expand(expand, LIST_ITEM_FIELDS)?;
        Ok(ListRequest {
            namespace: namespace.clone(),
            scope,
            limit,
            cursor,
            reveal,
        })
    }

    fn access(request: &ListRequest) -> Access<'_> {
        request.access()
    }

    async fn run(
        service: SecretService,
        ctx: RequestContext,
        request: ListRequest,
    ) -> Result<Answered, ApiError> {
        let page = service.list(&ctx, request).await?;
        let shows_payload = page.items.iter().any(|item| item.payload.is_some());
        Ok(Answered::new(render::list(&page), shows_payload))
    }
}
