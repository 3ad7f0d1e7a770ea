//! Where every request's audit record is written (docs/audit.md), the one module that owns
//! both writing points. `stamp` (the middleware every request goes through, on both listeners)
//! drafts the record when the request arrives (`Auditor::begin`: time, request id, client,
//! operation); the layers that learn more fill it in as the request goes (`note_principal`, the
//! operation's target); and when the answer is ready `Auditor::finish` writes it, unless the
//! service already committed it with the write it records. A request whose record cannot be
//! written is answered 503 `audit_unavailable` instead: a read's answer never leaves, and a
//! write whose record failed never committed. (A refusal, which did nothing, keeps its own
//! answer; that its record is missing is logged.)
//!
//! Records can also be copied, as JSON lines, to a file or stdout (`--audit-log`) for a log
//! pipeline; that copy is best effort (the database holds the record of truth).

use std::io::Write as _;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::response::{IntoResponse as _, Response};
use secretstore_core::audit::{hex, Text};
use secretstore_core::{
    AuditAppend, AuditChain, AuditEntry, AuditEvent, AuditSlot, AuditStore, Clock, Principal,
    RequestId,
};
use serde_json::{json, Value};

use crate::error::ApiError;

/// The address of the client on the other end of a request's connection, as its records show
/// it: written out once per connection rather than once per request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientAddr(Arc<str>);

impl ClientAddr {
    pub fn new(ip: IpAddr) -> Self {
        Self(ip.to_string().into())
    }
}

/// Where the JSON-lines copy of the records goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditLogTarget {
    Stdout,
    File(PathBuf),
}

impl std::fmt::Display for AuditLogTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuditLogTarget::Stdout => f.write_str("(standard output)"),
            AuditLogTarget::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// Writes the records, to storage and to the optional JSON-lines copy.
#[derive(Debug)]
pub struct Auditor {
    store: Arc<dyn AuditStore>,
    chain: Arc<AuditChain>,
    clock: Arc<dyn Clock>,
    lines: Option<std::sync::mpsc::Sender<String>>,
}

impl Auditor {
    /// An auditor writing to `store`, copying each record to `log` if given (the file is
    /// opened for appending now, so a path that cannot be written stops the start).
    pub fn new(
        store: Arc<dyn AuditStore>,
        chain: Arc<AuditChain>,
        clock: Arc<dyn Clock>,
        log: Option<AuditLogTarget>,
    ) -> std::io::Result<Self> {
        let lines = log.map(spawn_writer).transpose()?;
        Ok(Self {
            store,
            chain,
            clock,
            lines,
        })
    }

    pub fn chain(&self) -> &Arc<AuditChain> {
        &self.chain
    }

    pub fn store(&self) -> &Arc<dyn AuditStore> {
        &self.store
    }

    /// Unix milliseconds now, by the server's clock.
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// The draft of a request's record, as it arrives.
    pub fn begin(
        &self,
        id: RequestId,
        client: Option<&ClientAddr>,
        operation: Text,
    ) -> Arc<AuditSlot> {
        Arc::new(AuditSlot::new(AuditEvent {
            time_ms: self.now_ms(),
            request_id: id.as_str().to_owned(),
            client: client.map(|c| c.0.as_ref().to_owned()),
            operation,
            ..AuditEvent::default()
        }))
    }

    /// Writes the record of `response` unless it was written with its write, and answers
    /// `response`; or, if the record cannot be written and `response` is not a refusal, a 503
    /// in its place. A refusal is answered as it is (it changed nothing and reveals nothing a
    /// refusal does not), and the failure to record it is logged.
    pub async fn finish(&self, slot: &AuditSlot, response: Response) -> Response {
        if let Some(entry) = slot.take_written() {
            self.copy(&entry);
            return response;
        }
        let mut event = slot.take_draft();
        event.status = response.status().as_u16();
        event.code = response
            .extensions()
            .get::<ApiError>()
            .and_then(|err| err.code.wire())
            .map(str::to_owned);
        let refused = event.status >= 400;
        let append = AuditAppend::new(Arc::new(event), Arc::clone(&self.chain));
        let appended = self.store.audit_append(append).await;
        if appended.is_err() {
            secretstore_core::metrics::audit_write_failed();
        }
        match appended {
            Ok(entry) => {
                self.copy(&entry);
                response
            }
            Err(err) if refused => {
                tracing::warn!(error = %err, "the audit record of a refused request could not be written");
                response
            }
            Err(err) => {
                // The answer (which may hold a payload) is dropped unsent.
                drop(response);
                ApiError::audit_unavailable(format!("writing the audit record failed: {err}"))
                    .into_response()
            }
        }
    }

    fn copy(&self, entry: &AuditEntry) {
        if let Some(lines) = &self.lines {
            let mut line = record_json(entry).to_string();
            line.push('\n');
            // The writer thread is gone only if writing failed; that was logged there.
            let _ = lines.send(line);
        }
    }
}

/// Starts the thread that writes the JSON-lines copy, flushing whenever it has caught up.
fn spawn_writer(target: AuditLogTarget) -> std::io::Result<std::sync::mpsc::Sender<String>> {
    let out: Box<dyn std::io::Write + Send> = match &target {
        AuditLogTarget::Stdout => Box::new(std::io::stdout()),
        AuditLogTarget::File(path) => Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?,
        ),
    };
    let (send, receive) = std::sync::mpsc::channel::<String>();
    std::thread::Builder::new()
        .name("secretstore-audit-log".into())
        .spawn(move || {
            let mut out = std::io::BufWriter::new(out);
            while let Ok(line) = receive.recv() {
                let mut written = out.write_all(line.as_bytes());
                while let (Ok(()), Ok(line)) = (&written, receive.try_recv()) {
                    written = out.write_all(line.as_bytes());
                }
                if let Err(e) = written.and_then(|()| out.flush()) {
                    tracing::error!(error = %e, ?target, "cannot write the audit log copy");
                    return;
                }
            }
        })?;
    Ok(send)
}

/// Fills in who is asking, once authenticated.
pub fn note_principal(slot: &AuditSlot, principal: &Principal) {
    slot.note(|event| {
        let (kind, id) = principal.credential_ref();
        event.credential_kind = Some(kind.into());
        event.credential = Some(id);
        event.app = Some(principal.namespace.app.as_str().to_owned());
        event.account = Some(principal.namespace.account.as_str().to_owned());
        event.mode = Some(principal.namespace.mode.as_str().into());
    });
}

/// A record as JSON: for the admin API's search, and the JSON-lines copy.
pub fn record_json(entry: &AuditEntry) -> Value {
    let e = &entry.event;
    json!({
        "object": "audit_record",
        "seq": entry.seq,
        "time": rfc3339(e.time_ms),
        "time_ms": e.time_ms,
        "request_id": e.request_id,
        "credential_kind": e.credential_kind,
        "credential": e.credential,
        "app": e.app,
        "account": e.account,
        "mode": e.mode,
        "scope_type": e.scope_type,
        "user": e.user,
        "operation": e.operation,
        "secret_name": e.secret_name,
        "client": e.client,
        "status": e.status,
        "code": e.code,
        "prev": hex(&entry.prev),
        "hash": hex(&entry.hash),
    })
}

/// Unix milliseconds as RFC 3339 in UTC (`2026-12-05T13:12:27.823Z`).
pub fn rfc3339(ms: i64) -> String {
    let (days, in_day) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    // Civil date from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (hour, minute) = (in_day / 3_600_000, in_day / 60_000 % 60);
    let (second, milli) = (in_day / 1000 % 60, in_day % 1000);
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{milli:03}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_show_as_rfc3339_and_read_back() {
        for ms in [
            0,
            951_782_400_000,
            1_700_000_000_500,
            1_796_476_347_823,
            4_102_444_799_999,
        ] {
            let shown = rfc3339(ms);
            assert_eq!(
                crate::admin::parse_time(&shown, "t").ok(),
                Some(ms),
                "{shown}"
            );
        }
        assert_eq!(rfc3339(1_700_000_000_500), "2023-11-14T22:13:20.500Z");
    }
}
