//! `/v1/audit`: the audit log, for a security team (docs/audit.md). `records` searches it,
//! `verify` checks the whole chain and names the first record edited, removed, inserted or
//! moved, and `prune` removes old records behind an anchor. These are what `secretstore audit`
//! calls, so they work while the server runs.

use std::sync::Arc;

use axum::response::Response;
use secretstore_core::audit::{hex, Outcome, Verifier};
use secretstore_core::AuditFilter;
use serde_json::{json, Value};

use super::{json, Admin, AdminCaller, JsonBody, Query};
use crate::audit::{record_json, Auditor};
use crate::error::{ApiError, Code};

/// Records read per step of a verification.
const VERIFY_PAGE: u32 = 1000;

/// Most records one search answers.
const MAX_SEARCH: i64 = 1000;

fn auditor(admin: &Admin) -> Result<&Arc<Auditor>, ApiError> {
    admin.auditor.as_ref().ok_or_else(|| {
        ApiError::new(
            Code::ResourceMissing,
            "Auditing is off on this server (it was started with --no-audit): there is no audit \
             log to read.",
        )
    })
}

/// A time given as Unix seconds or RFC 3339 (`2026-12-01T00:00:00Z`), in Unix milliseconds.
pub fn parse_time(text: &str, param: &str) -> Result<i64, ApiError> {
    let invalid = || {
        ApiError::invalid(
            param,
            format!(
                "Invalid {param}: expected Unix seconds or an RFC 3339 time such as \
                 2026-12-01T00:00:00Z."
            ),
        )
    };
    if let Ok(seconds) = text.parse::<i64>() {
        return seconds.checked_mul(1000).ok_or_else(invalid);
    }
    rfc3339_ms(text).ok_or_else(invalid)
}

/// Unix milliseconds of an RFC 3339 time (`YYYY-MM-DDTHH:MM:SS[.fff](Z|±HH:MM)`).
fn rfc3339_ms(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    if bytes.len() < 20 || !matches!(bytes[10], b'T' | b't' | b' ') {
        return None;
    }
    let number = |from: usize, to: usize| -> Option<i64> {
        let part = text.get(from..to)?;
        part.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let (year, month, day) = (number(0, 4)?, number(5, 7)?, number(8, 10)?);
    let (hour, minute, second) = (number(11, 13)?, number(14, 16)?, number(17, 19)?);
    if [bytes[4], bytes[7], bytes[13], bytes[16]] != [b'-', b'-', b':', b':']
        || !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut rest = &text[19..];
    let mut millis = 0;
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let shown: String = fraction[..digits]
            .chars()
            .chain("000".chars())
            .take(3)
            .collect();
        millis = shown.parse().ok()?;
        rest = &fraction[digits..];
    }
    let offset_minutes = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let digits = |part: &str| -> Option<i64> {
                part.bytes()
                    .all(|b| b.is_ascii_digit())
                    .then(|| part.parse().ok())?
            };
            if rest.len() != 6 || rest.as_bytes()[3] != b':' {
                return None;
            }
            sign * (digits(&rest[1..3])? * 60 + digits(&rest[4..6])?)
        }
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_minutes * 60;
    Some(seconds * 1000 + millis)
}

/// `outcome`: `success`, `failure`, a status (`404`) or an error code (`resource_missing`).
fn parse_outcome(text: &str) -> Outcome {
    match text {
        "success" => Outcome::Success,
        "failure" => Outcome::Failure,
        _ => match text.parse::<u16>() {
            Ok(status) => Outcome::Status(status),
            Err(_) => Outcome::Code(text.to_owned()),
        },
    }
}

pub async fn records(admin: Admin, _: AdminCaller, mut query: Query) -> Result<Response, ApiError> {
    let auditor = auditor(&admin)?;
    let limit = match query.integer("limit")? {
        None => 100,
        Some(n) => {
            if !(1..=MAX_SEARCH).contains(&n) {
                return Err(ApiError::out_of_range(
                    "limit",
                    format!("Invalid limit: must be between 1 and {MAX_SEARCH}."),
                ));
            }
            n as u32
        }
    };
    let time = |query: &mut Query, name: &str| -> Result<Option<i64>, ApiError> {
        query.text(name)?.map(|t| parse_time(&t, name)).transpose()
    };
    let since_ms = time(&mut query, "since")?;
    let until_ms = time(&mut query, "until")?;
    let before_seq = query.integer("starting_after")?;
    let filter = AuditFilter {
        since_ms,
        until_ms,
        app: query.text("app")?,
        account: query.text("account")?,
        user: query.text("user")?,
        secret_name: query.text("secret_name")?,
        operation: query.text("operation")?,
        credential: query.text("credential")?,
        outcome: query.text("outcome")?.as_deref().map(parse_outcome),
        before_seq,
        // One more than asked, to say whether there is more.
        limit: limit + 1,
    };
    query.finish()?;
    let mut found = auditor.store().audit_search(&filter).await?;
    let has_more = found.len() > limit as usize;
    found.truncate(limit as usize);
    Ok(json(json!({
        "object": "list",
        "url": "/v1/audit/records",
        "has_more": has_more,
        "data": found.iter().map(record_json).collect::<Vec<Value>>(),
    })))
}

pub async fn verify(admin: Admin, _: AdminCaller, query: Query) -> Result<Response, ApiError> {
    let auditor = auditor(&admin)?;
    query.finish()?;
    let store = auditor.store();
    let anchor = store.audit_anchor().await?;
    let broken = |problem: secretstore_core::Break| {
        json(json!({
            "object": "audit_verification",
            "intact": false,
            "record": problem.seq(),
            "problem": problem.to_string(),
        }))
    };
    let mut verifier = match Verifier::new(auditor.chain(), anchor.as_ref()) {
        Ok(verifier) => verifier,
        Err(problem) => return Ok(broken(problem)),
    };
    loop {
        let page = store.audit_scan(verifier.next_after(), VERIFY_PAGE).await?;
        if page.is_empty() {
            break;
        }
        for entry in &page {
            if let Err(problem) = verifier.check(entry) {
                return Ok(broken(problem));
            }
        }
        if page.len() < VERIFY_PAGE as usize {
            break;
        }
    }
    let verified = verifier.finish();
    Ok(json(json!({
        "object": "audit_verification",
        "intact": true,
        "records": verified.records,
        "from": verified.from,
        "head": {"seq": verified.head.0, "hash": hex(&verified.head.1)},
    })))
}

pub async fn prune(
    admin: Admin,
    _: AdminCaller,
    mut query: Query,
    mut body: JsonBody,
) -> Result<Response, ApiError> {
    let auditor = auditor(&admin)?;
    query.confirmed_as(
        "Pruning removes audit records for good (an anchor keeps the rest verifiable). Repeat \
         the request with ?confirm=true to do it.",
    )?;
    query.finish()?;
    let before = match body.take_value("before") {
        None => return Err(ApiError::missing("before")),
        Some(Value::Number(n)) => n
            .as_i64()
            .and_then(|s| s.checked_mul(1000))
            .ok_or_else(|| ApiError::not_integer("before", &n.to_string()))?,
        Some(Value::String(text)) => parse_time(&text, "before")?,
        Some(other) => return Err(ApiError::not_integer("before", &other.to_string())),
    };
    body.finish()?;
    let now_ms = auditor.now_ms();
    let removed = auditor
        .store()
        .audit_prune(before, now_ms, Arc::clone(auditor.chain()))
        .await?;
    let anchor = auditor.store().audit_anchor().await?;
    Ok(json(json!({
        "object": "audit_prune",
        "removed": removed,
        "anchor": anchor.map(|a| json!({
            "seq": a.seq,
            "hash": hex(&a.hash),
            "pruned_at_ms": a.pruned_at_ms,
        })),
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_unix_seconds_or_rfc3339() {
        assert_eq!(parse_time("0", "t").unwrap(), 0);
        assert_eq!(parse_time("1700000000", "t").unwrap(), 1_700_000_000_000);
        assert_eq!(
            parse_time("2023-11-14T22:13:20Z", "t").unwrap(),
            1_700_000_000_000
        );
        assert_eq!(
            parse_time("2023-11-14T23:13:20.5+01:00", "t").unwrap(),
            1_700_000_000_500
        );
        assert_eq!(parse_time("1970-01-01T00:00:00Z", "t").unwrap(), 0);
        assert_eq!(
            parse_time("2000-02-29T00:00:00Z", "t").unwrap(),
            951_782_400_000
        );
        for bad in [
            "",
            "yesterday",
            "2023-13-01T00:00:00Z",
            "2023-11-14T22:13:20",
            "2023-11-14",
        ] {
            assert!(parse_time(bad, "t").is_err(), "{bad}");
        }
    }
}
