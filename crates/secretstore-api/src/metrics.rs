//! Prometheus metrics at the HTTP edge, and their exposition: `install` puts the Prometheus
//! recorder under the `metrics` facade (once a process, when the server has an admin listener),
//! `request_served` counts and times every answer of either listener, and `scrape` renders
//! everything on the admin listener's `GET /metrics` (behind the admin token, like every admin
//! route; docs/api.md §9). What each metric means, and the recording functions the other layers
//! call, are in `secretstore_core::metrics`.
//!
//! A request's `operation` label is the audit log's name for it (docs/audit.md: `secrets.find`,
//! `admin DELETE /v1/keys/{id}`), found by the same route look-ups; `healthz` and `readyz` for
//! the probes; `unknown` for anything no route serves, so what a client puts in a path never
//! becomes a label. The table of operations, and of statuses, is built once from the route
//! tables and the error table, and each (operation, status) pair registers its handle the first
//! time it is answered: a request costs a short walk of its listener's routes, two atomic loads
//! and the two recordings, with no allocation and no look-up by name.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, Method, StatusCode};
use metrics::{Counter, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use secretstore_core::metrics::{
    self as recorded, AuthFailure, BATCH_SIZE_BUCKETS, GROUP_COMMIT_BATCH_SIZE, HTTP_REQUESTS,
    HTTP_REQUEST_DURATION,
};
use secretstore_core::{Lifecycle, SecretStore};

use crate::admin::{AdminCaller, AdminState};
use crate::auth::AuthError;
use crate::error::Code;

/// The content type of Prometheus's text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// How often histogram samples are folded into their buckets when nobody scrapes: the
/// recorder keeps each sample until then, so this bounds the memory they take.
pub const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Bounds of the latency histogram's buckets, in seconds: a find from the read cache takes tens
/// of microseconds, a durable write a few milliseconds, a stalled database up to its timeouts.
pub const DURATION_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0,
];

static RECORDER: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the Prometheus recorder as the process's `metrics` recorder, the first time it is
/// called, and enables every recording function; answers the handle that renders it. Should
/// another recorder be installed already (a test harness's), this one renders nothing and
/// recording stays off, rather than feeding a recorder nobody scrapes here.
pub fn install() -> PrometheusHandle {
    RECORDER
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full(HTTP_REQUEST_DURATION.to_owned()),
                    DURATION_BUCKETS,
                )
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(GROUP_COMMIT_BATCH_SIZE.to_owned()),
                        BATCH_SIZE_BUCKETS,
                    )
                });
            // Only empty bucket lists are refused, and these are constants.
            let recorder = builder
                .unwrap_or_else(|_| PrometheusBuilder::new())
                .build_recorder();
            let handle = recorder.handle();
            match metrics::set_global_recorder(recorder) {
                Ok(()) => {
                    recorded::enable();
                    HTTP.get_or_init(Http::new);
                }
                Err(err) => tracing::warn!(
                    error = %err,
                    "another metrics recorder is installed: GET /metrics will be empty"
                ),
            }
            handle
        })
        .clone()
}

/// What `GET /metrics` renders: the recorder, and what the gauges read at scrape time come from.
#[derive(Debug, Clone)]
pub struct Exposition {
    handle: PrometheusHandle,
    secrets: Arc<dyn SecretStore>,
    storage: Arc<dyn Lifecycle>,
}

impl Exposition {
    pub fn new(
        handle: PrometheusHandle,
        secrets: Arc<dyn SecretStore>,
        storage: Arc<dyn Lifecycle>,
    ) -> Self {
        Self {
            handle,
            secrets,
            storage,
        }
    }

    /// Reads the scrape-time gauges, then renders every metric in the text format.
    pub async fn render(&self) -> String {
        match self.secrets.count_secrets().await {
            Ok(count) => recorded::secrets_stored(count),
            // The scrape still answers: every other metric is worth having, and the gauge keeps
            // its last value.
            Err(err) => tracing::warn!(error = %err, "counting the secrets for /metrics failed"),
        }
        self.storage.record_gauges();
        self.handle.render()
    }

    /// Folds the histograms' samples into their buckets (see `UPKEEP_EVERY`).
    pub fn run_upkeep(&self) {
        self.handle.run_upkeep();
    }
}

/// `GET /metrics` on the admin listener.
pub async fn scrape(_: AdminCaller, State(state): State<AdminState>) -> Response {
    let body = state.metrics.render().await;
    (
        StatusCode::OK,
        [(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static(CONTENT_TYPE),
        )],
        body,
    )
        .into_response()
}

/// Counts a refused credential (an `AuthError` on its way to becoming the answer), by reason;
/// a directory that could not be read is a storage error, not a refusal.
pub fn auth_failed(err: &AuthError) {
    let reason = match err {
        AuthError::Missing => AuthFailure::Missing,
        AuthError::InvalidKey { .. } => AuthFailure::Malformed,
        AuthError::Unknown { .. } => AuthFailure::Unknown,
        AuthError::Ended { .. } => AuthFailure::Ended,
        AuthError::AccountInvalid => AuthFailure::AccountInvalid,
        AuthError::AccountDenied { .. } => AuthFailure::AccountDenied,
        AuthError::Storage(_) => return,
    };
    recorded::auth_failure(reason);
}

/// The probes `crate::router` serves beside the operations, by path, and their labels: a load
/// balancer's probes are not operations of the API (the audit log does not record them).
const PROBES: [(&str, &str); 2] = [("/healthz", "healthz"), ("/readyz", "readyz")];

/// The `operation` label of a request no route serves.
const UNKNOWN: &str = "unknown";

/// One `operation` label and its handles, one per status, registered when first used.
#[derive(Debug)]
struct Operation {
    label: String,
    duration: OnceLock<Histogram>,
    requests: Box<[OnceLock<Counter>]>,
}

/// Everything `request_served` needs, built once.
#[derive(Debug)]
struct Http {
    /// The public listener's operations by name (`Operation::NAME`), then its probes: the
    /// first labels.
    public: Vec<&'static str>,
    /// The admin routes, as `admin::ROUTES` has them: the labels after the public ones.
    admin: &'static [(&'static str, &'static str)],
    /// Every label; the last is `unknown`.
    operations: Vec<Operation>,
    /// The `status` labels: every status this server answers with, then `other`.
    statuses: Vec<String>,
    /// Index into `statuses` by status code.
    status_slot: Box<[u8]>,
}

static HTTP: OnceLock<Http> = OnceLock::new();

impl Http {
    fn new() -> Self {
        let public: Vec<&'static str> = crate::ops::ROUTES
            .iter()
            .map(|route| route.name)
            .chain(PROBES.iter().map(|(_, label)| *label))
            .collect();
        let admin = crate::admin::ROUTES;
        // The audit log's names for the same operations (docs/audit.md).
        let labels = public
            .iter()
            .map(|name| (*name).to_owned())
            .chain(
                admin
                    .iter()
                    .map(|(method, path)| format!("admin {method} {path}")),
            )
            .chain([UNKNOWN.to_owned()]);

        let mut codes: Vec<u16> = Code::ALL.iter().map(|c| c.status().as_u16()).collect();
        codes.push(200);
        codes.sort_unstable();
        codes.dedup();
        let mut statuses: Vec<String> = codes.iter().map(u16::to_string).collect();
        statuses.push("other".to_owned());
        let other = (statuses.len() - 1) as u8;
        let mut status_slot = vec![other; 600].into_boxed_slice();
        for (slot, &code) in codes.iter().enumerate() {
            status_slot[usize::from(code)] = slot as u8;
        }
        let operations = labels
            .map(|label| Operation {
                label,
                duration: OnceLock::new(),
                requests: statuses.iter().map(|_| OnceLock::new()).collect(),
            })
            .collect();
        Self {
            public,
            admin,
            operations,
            statuses,
            status_slot,
        }
    }

    /// The index of the operation a request to `path` is, on the public listener or the admin
    /// one: found by the same route look-ups the audit log names operations by.
    fn operation(&self, public: bool, method: &Method, path: &str) -> usize {
        let found = if public {
            let name = PROBES
                .iter()
                .find(|(probe, _)| *probe == path && method == Method::GET)
                .map_or_else(|| crate::ops::operation_name(method, path), |p| p.1);
            self.public.iter().position(|label| *label == name)
        } else {
            crate::admin::route_of(method, path).and_then(|route| {
                self.admin
                    .iter()
                    .position(|(m, r)| *m == method.as_str() && *r == route)
                    .map(|n| self.public.len() + n)
            })
        };
        found.unwrap_or(self.operations.len() - 1)
    }

    fn status(&self, status: u16) -> usize {
        let other = self.statuses.len() - 1;
        self.status_slot
            .get(usize::from(status))
            .map_or(other, |&slot| usize::from(slot))
    }
}

/// Counts and times one answer of the public (`public`) or admin listener; nothing until
/// `install` has run.
pub fn request_served(public: bool, method: &Method, path: &str, status: u16, took: Duration) {
    let Some(http) = HTTP.get() else {
        return;
    };
    let operation = &http.operations[http.operation(public, method, path)];
    let slot = http.status(status);
    operation.requests[slot]
        .get_or_init(|| {
            metrics::counter!(
                HTTP_REQUESTS,
                "operation" => operation.label.clone(),
                "status" => http.statuses[slot].clone()
            )
        })
        .increment(1);
    operation
        .duration
        .get_or_init(
            || metrics::histogram!(HTTP_REQUEST_DURATION, "operation" => operation.label.clone()),
        )
        .record(took.as_secs_f64());
}

#[cfg(test)]
mod tests {
    use super::*;
    use secretstore_core::metrics::{Kind, CATALOGUE};

    /// The value of one series (`name` or `name{labels}`, as rendered) in an exposition.
    fn sample(text: &str, series: &str) -> f64 {
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .map_or(0.0, |value| value.trim().parse().expect("a number"))
    }

    #[test]
    fn recording_moves_what_the_exposition_renders() {
        let handle = install();
        let audit = "secretstore_audit_write_failures_total";
        let find = r#"secretstore_http_requests_total{operation="secrets.find",status="404"}"#;
        let took = r#"secretstore_http_request_duration_seconds_count{operation="secrets.find"}"#;
        let before = handle.render();
        recorded::audit_write_failed();
        recorded::audit_write_failed();
        request_served(
            true,
            &Method::GET,
            "/v1/apps/secrets/find",
            404,
            Duration::from_micros(40),
        );
        let after = handle.render();
        assert_eq!(
            sample(&after, audit),
            sample(&before, audit) + 2.0,
            "{after}"
        );
        assert_eq!(sample(&after, find), sample(&before, find) + 1.0, "{after}");
        assert_eq!(sample(&after, took), sample(&before, took) + 1.0, "{after}");
        assert!(after.contains("# TYPE secretstore_http_request_duration_seconds histogram"));
        assert!(after.contains(
            r#"secretstore_http_request_duration_seconds_bucket{operation="secrets.find",le="0.00005"}"#
        ));
    }

    #[test]
    fn docs_api_md_documents_every_metric() {
        const DOC: &str = include_str!("../../../docs/api.md");
        for &(name, kind, labels, _) in CATALOGUE {
            let row = DOC
                .lines()
                .find(|line| line.starts_with(&format!("| `{name}` |")))
                .unwrap_or_else(|| panic!("docs/api.md §9 has no row for {name}"));
            let cells: Vec<&str> = row.split('|').map(str::trim).collect();
            let kind = match kind {
                Kind::Counter => "counter",
                Kind::Gauge => "gauge",
                Kind::Histogram => "histogram",
            };
            assert_eq!(cells[2], kind, "{name}");
            let documented: Vec<&str> = cells[3]
                .split(',')
                .map(|l| l.trim().trim_matches('`'))
                .filter(|l| !l.is_empty())
                .collect();
            assert_eq!(documented, labels, "{name}");
        }
    }

    fn label(public: bool, method: Method, path: &str) -> &'static str {
        let http = HTTP.get_or_init(Http::new);
        &http.operations[http.operation(public, &method, path)].label
    }

    #[test]
    fn operations_are_named_as_the_audit_log_names_them_never_by_path() {
        for (public, method, path, operation) in [
            (true, Method::GET, "/v1/apps/secrets/find", "secrets.find"),
            (true, Method::POST, "/v1/apps/secrets", "secrets.set"),
            (true, Method::GET, "/readyz", "readyz"),
            (
                false,
                Method::POST,
                "/v1/keys/key_1/roll",
                "admin POST /v1/keys/{id}/roll",
            ),
            (
                false,
                Method::GET,
                "/v1/accounts/acct_1/users/usr_2",
                "admin GET /v1/accounts/{account}/users/{id}",
            ),
            (false, Method::GET, "/metrics", "admin GET /metrics"),
        ] {
            assert_eq!(label(public, method, path), operation, "{path}");
        }
        for (public, method, path) in [
            (true, Method::GET, "/v1/apps/secrets/find/"),
            (true, Method::PUT, "/v1/apps/secrets"),
            (true, Method::POST, "/healthz"),
            (true, Method::GET, "/v1/accounts"),
            (true, Method::GET, "/anything/a/client/sends"),
            (false, Method::GET, "/v1/apps/secrets/find"),
            (false, Method::GET, "/v1/keys/"),
            (false, Method::GET, "/v1/keys/key_1/extra"),
            (false, Method::GET, "/healthz"),
        ] {
            assert_eq!(label(public, method, path), UNKNOWN, "{path}");
        }
    }

    #[test]
    fn every_status_this_server_answers_has_a_label_of_its_own() {
        let http = HTTP.get_or_init(Http::new);
        let other = http.statuses.len() - 1;
        for code in Code::ALL {
            let status = code.status().as_u16();
            assert_eq!(http.statuses[http.status(status)], status.to_string());
        }
        assert_eq!(http.statuses[http.status(200)], "200");
        assert_eq!(http.status(418), other);
        assert_eq!(http.status(u16::MAX), other);
    }
}
