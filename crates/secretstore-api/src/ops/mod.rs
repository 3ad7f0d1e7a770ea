//! The Secret Store's operations, one file each (as mini-redis has one file per command): each
//! says how its parameters are parsed into a core request and how it runs. Every operation goes
//! through the same pipeline, in Stripe's order: the caller is authenticated and rate limited
//! (`Caller`), the `Idempotency-Key` header is checked (`KeyHeader`), the parameters are read
//! and decoded (`StripeForm`), then parsed by the operation, authorised (`authorize`, before
//! anything is looked up), and run under the idempotency protocol.
//!
//! Adding an operation is one file implementing `Operation` and one line in `routes!` below.

mod delete;
mod find;
mod list;
mod set;

use std::future::Future;
use std::sync::{Arc, OnceLock};

use axum::extract::State;
use axum::response::Response;
use axum::routing::MethodRouter;
use axum::{Extension, Router};
use secretstore_core::{
    authorize, Access, AuditSlot, AuditTicket, Namespace, Payload, RequestContext, RequestId,
    SecretName, SecretService,
};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::StripeForm;
use crate::idempotency::{Answered, KeyHeader};
use crate::params::Params;
use crate::AppState;

pub use delete::Delete;
pub use find::Find;
pub use list::List;
pub use set::Set;

/// One operation of the API.
pub trait Operation: Send + Sync + 'static {
    /// The operation's parsed request, as the service takes it.
    type Request: Send + 'static;

    /// The operation's name in the audit log (`secrets.set`).
    const NAME: &'static str;

    /// Takes the operation's parameters (in the caller's namespace); refuses what the contract
    /// refuses, including any parameter left over.
    fn parse(params: Params, namespace: &Namespace) -> Result<Self::Request, ApiError>;

    /// What the request would do, for `authorize`.
    fn access(request: &Self::Request) -> Access<'_>;

    /// The secret the request names, for the audit log; none for a list.
    fn secret_name(_request: &Self::Request) -> Option<&SecretName> {
        None
    }

    /// The payload a replay of this request shows, where the answer kept for it has none
    /// (`Answered`): a set's own, which the request carries. None by default: a delete's
    /// secret is gone, and its replay shows `"payload": null`.
    fn replayed_payload(_request: &Self::Request) -> Option<Payload> {
        None
    }

    /// Runs the request; the answer is the 200 body (which may hold a payload, hence wiped),
    /// and how it is kept for a replay.
    fn run(
        service: SecretService,
        ctx: RequestContext,
        request: Self::Request,
    ) -> impl Future<Output = Result<Answered, ApiError>> + Send;
}

/// The pipeline every operation runs through.
pub async fn handle<O: Operation>(
    State(state): State<AppState>,
    request_id: Option<Extension<RequestId>>,
    slot: Option<Extension<Arc<AuditSlot>>>,
    Caller(principal): Caller,
    key: KeyHeader,
    form: StripeForm,
) -> Result<Response, ApiError> {
    let keyed = state
        .idempotency
        .keyed(key, &form, &principal.namespace.account);
    let request = O::parse(Params::new(form.form.root), &principal.namespace)?;
    let slot = slot.map(|Extension(slot)| slot);
    if let Some(slot) = &slot {
        let access = O::access(&request);
        let name = O::secret_name(&request);
        slot.note(|event| {
            event.scope_type = Some(access.scope.type_str().into());
            event.user = access.scope.user().map(|u| u.as_str().to_owned());
            event.secret_name = name.map(|n| n.as_str().to_owned());
        });
    }
    authorize(&principal, &O::access(&request))?;
    let request_id = request_id.map(|Extension(id)| id);
    let audit = match (slot, &state.auditor) {
        (Some(slot), Some(auditor)) => Some(AuditTicket {
            slot,
            chain: Arc::clone(auditor.chain()),
        }),
        _ => None,
    };
    let ctx = RequestContext {
        request_id,
        credential: principal.credential,
        audit,
    };
    let replayed_payload = keyed
        .is_keyed()
        .then(|| O::replayed_payload(&request))
        .flatten();
    // Boxed: a future is copied whole each time it moves, and the operation's (2.5 KB for a
    // find) nested in the pipeline's made it 6.4 KB, moved several times a request (memcpy
    // was 10% of a find's instructions; 7% boxed).
    let work = Box::pin(O::run(state.service.clone(), ctx, request));
    state
        .idempotency
        .run(&principal, keyed, request_id, replayed_payload, work)
        .await
}

/// An operation served at a method and path.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    /// `Operation::NAME`.
    pub name: &'static str,
}

/// The name of the operation a request reaches, for the audit log; `unknown` for none.
pub fn operation_name(method: &http::Method, path: &str) -> &'static str {
    ROUTES
        .iter()
        .find(|route| route.path == path && route.method == method.as_str())
        .map_or("unknown", |route| route.name)
}

/// Where secrets are set and listed; also the `url` of a list.
pub const SECRETS_PATH: &str = "/v1/apps/secrets";

macro_rules! routes {
    ($($method:ident $path:expr => $op:ty;)*) => {
        /// Every operation, by method and path.
        pub const ROUTES: &[Route] = &[$(Route {
            method: stringify!($method),
            path: $path,
            name: <$op as Operation>::NAME,
        },)*];

        /// The router of every operation.
        pub fn router() -> Router<AppState> {
            let mut router = Router::new();
            $(
                router = router.route($path, method_router::<$op>(stringify!($method)));
            )*
            router
        }
    };
}

routes! {
    POST SECRETS_PATH => Set;
    GET SECRETS_PATH => List;
    GET "/v1/apps/secrets/find" => Find;
    POST "/v1/apps/secrets/delete" => Delete;
}

fn method_router<O: Operation>(method: &str) -> MethodRouter<AppState> {
    match method {
        "POST" => axum::routing::post(handle::<O>),
        _ => axum::routing::get(handle::<O>),
    }
}

/// "POST and GET on /v1/apps/secrets, GET on /v1/apps/secrets/find and ...", from `ROUTES`,
/// for the answer to an unknown route.
pub fn routes_sentence() -> &'static str {
    static SENTENCE: OnceLock<String> = OnceLock::new();
    SENTENCE.get_or_init(|| {
        let mut paths: Vec<(&str, Vec<&str>)> = Vec::new();
        for route in ROUTES {
            match paths.iter_mut().find(|(path, _)| *path == route.path) {
                Some((_, methods)) => methods.push(route.method),
                None => paths.push((route.path, vec![route.method])),
            }
        }
        let parts: Vec<String> = paths
            .iter()
            .map(|(path, methods)| format!("{} on {path}", methods.join(" and ")))
            .collect();
        match parts.split_last() {
            Some((last, [])) => last.clone(),
            Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
            None => String::new(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_routes_sentence_names_every_route() {
        assert_eq!(
            routes_sentence(),
            "POST and GET on /v1/apps/secrets, GET on /v1/apps/secrets/find and POST on \
             /v1/apps/secrets/delete"
        );
    }
}
