//! The JSON of `apps.secret` objects and lists, exactly as docs/api.md describes: `expires_at`
//! always present (null when none), `payload` only when expanded, `deleted` only on delete.
//! Bodies may hold a payload, so they are written into memory that is wiped when dropped, and
//! wiped too when the body outgrows it on the way (`WipedBuffer`). An answer kept for an
//! idempotent replay never holds a payload: it is written with `"payload": null`
//! (`without_payload`), and a replay that has the payload puts it back (`with_payload`).

use secretstore_core::{ListPage, Payload, Scope, Secret};
use serde::Serialize;
use zeroize::Zeroizing;

use crate::ops::SECRETS_PATH;

#[derive(Serialize)]
struct ScopeJson<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<&'a str>,
}

#[derive(Serialize)]
struct SecretJson<'a> {
    id: &'a str,
    object: &'static str,
    created: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    deleted: Option<bool>,
    expires_at: Option<i64>,
    livemode: bool,
    name: &'a str,
    /// Absent when not expanded; `Some(None)`, written `null`, in an answer kept without it.
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<Option<&'a str>>,
    scope: ScopeJson<'a>,
}

fn secret_json(secret: &Secret, deleted: bool) -> SecretJson<'_> {
    SecretJson {
        id: secret.id.as_str(),
        object: "apps.secret",
        created: secret.created,
        deleted: deleted.then_some(true),
        expires_at: secret.expires_at,
        livemode: secret.address.namespace.mode.livemode(),
        name: secret.address.name.as_str(),
        payload: secret.payload.as_ref().map(|p| Some(p.expose())),
        scope: ScopeJson {
            kind: secret.address.scope.type_str(),
            user: match &secret.address.scope {
                Scope::Account => None,
                Scope::User(user) => Some(user.as_str()),
            },
        },
    }
}

/// Where a body is written: a buffer that, when outgrown, is copied into a larger one and wiped,
/// where a `Vec` would free it holding what it held (serde_json's `to_vec` grows one from 128
/// bytes, leaving a trail of partial copies of the payload in freed memory).
struct WipedBuffer(Zeroizing<Vec<u8>>);

/// Room for a secret's JSON without its payload, so most bodies never grow.
const FIRST_CAPACITY: usize = 512;

impl std::io::Write for WipedBuffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let needed = self.0.len() + bytes.len();
        if needed > self.0.capacity() {
            let mut larger = Zeroizing::new(Vec::with_capacity(needed.max(2 * self.0.capacity())));
            larger.extend_from_slice(&self.0);
            // The outgrown buffer is wiped as it drops.
            self.0 = larger;
        }
        self.0.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn to_json(value: &impl Serialize) -> Zeroizing<Vec<u8>> {
    let mut out = WipedBuffer(Zeroizing::new(Vec::with_capacity(FIRST_CAPACITY)));
    match serde_json::to_writer(&mut out, value) {
        Ok(()) => out.0,
        Err(_) => Zeroizing::default(),
    }
}

/// A secret, as set and find answer it.
pub fn secret(secret: &Secret) -> Zeroizing<Vec<u8>> {
    to_json(&secret_json(secret, false))
}

/// A secret as delete answers it, marked `"deleted": true`.
pub fn deleted(secret: &Secret) -> Zeroizing<Vec<u8>> {
    to_json(&secret_json(secret, true))
}

/// How the payload of an answer kept without it reads: a key, whose quotes are bare. Inside a
/// JSON string every `"` is escaped, so these bytes can only ever be the key itself, never part
/// of a name or a user id.
const NULL_PAYLOAD: &[u8] = br#""payload":null"#;

/// The answer of a set or delete (`deleted`) as kept for a replay: without the payload it
/// shows, as `"payload": null`; `None` when it shows none, and is kept as it is.
pub fn without_payload(secret: &Secret, deleted: bool) -> Option<Zeroizing<Vec<u8>>> {
    secret.payload.as_ref()?;
    let mut json = secret_json(secret, deleted);
    json.payload = Some(None);
    Some(to_json(&json))
}

/// A kept answer (`without_payload`) with `payload` in its place; one without the place is
/// returned as it is.
pub fn with_payload(kept: &[u8], payload: &Payload) -> Zeroizing<Vec<u8>> {
    let Some(at) = kept
        .windows(NULL_PAYLOAD.len())
        .position(|window| window == NULL_PAYLOAD)
    else {
        return Zeroizing::new(kept.to_vec());
    };
    // Room for the payload as JSON writes it at worst (`\u001f`: 6 bytes a byte), so the
    // buffer is written once and never outgrown.
    let room = kept.len() + 6 * payload.expose().len() + 2;
    let mut out = WipedBuffer(Zeroizing::new(Vec::with_capacity(room)));
    out.0.extend_from_slice(&kept[..at]);
    out.0.extend_from_slice(br#""payload":"#);
    if serde_json::to_writer(&mut out, payload.expose()).is_err() {
        return Zeroizing::new(kept.to_vec());
    }
    out.0.extend_from_slice(&kept[at + NULL_PAYLOAD.len()..]);
    out.0
}

#[derive(Serialize)]
struct ListJson<'a> {
    object: &'static str,
    url: &'static str,
    has_more: bool,
    data: Vec<SecretJson<'a>>,
}

pub fn list(page: &ListPage) -> Zeroizing<Vec<u8>> {
    to_json(&ListJson {
        object: "list",
        url: SECRETS_PATH,
        has_more: page.has_more,
        data: page.items.iter().map(|s| secret_json(s, false)).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use secretstore_core::{Mode, Namespace, SecretAddress, SecretId, SecretName, UserId};
    use std::io::Write as _;

    fn secret_named(name: &str, user: &str, payload: &str) -> Secret {
        Secret {
            id: SecretId::generate(),
            address: SecretAddress {
                namespace: Namespace {
                    app: secretstore_core::AppId::parse("app").unwrap(),
                    account: secretstore_core::AccountId::parse("acct_1").unwrap(),
                    mode: Mode::Test,
                },
                scope: Scope::User(UserId::parse(user).unwrap()),
                name: SecretName::parse(name).unwrap(),
            },
            created: 1,
            expires_at: None,
            payload: Some(Payload::parse(payload).unwrap()),
        }
    }

    #[test]
    fn a_kept_answer_holds_no_payload_and_a_replay_puts_it_back_exactly() {
        // Names and users that hold the kept form's marker, quoted every way JSON allows.
        let tricky = [
            r#""payload":null"#,
            r#"\"payload\":null"#,
            r#","payload":null,"#,
            "payload",
        ];
        for name in tricky {
            for payload in ["p", r#""payload":null"#, "\u{1}\n\"\\😀"] {
                let secret = secret_named(name, name, payload);
                for deleted in [false, true] {
                    let sent = if deleted {
                        deleted_body(&secret)
                    } else {
                        super::secret(&secret)
                    };
                    let kept = without_payload(&secret, deleted).unwrap();
                    let kept_json: serde_json::Value = serde_json::from_slice(&kept).unwrap();
                    assert_eq!(kept_json["payload"], serde_json::Value::Null);
                    assert_eq!(kept_json["name"], name);
                    let replayed = with_payload(&kept, secret.payload.as_ref().unwrap());
                    assert_eq!(replayed.as_slice(), sent.as_slice(), "{name:?} {payload:?}");
                }
            }
        }
        let mut unexpanded = secret_named("n", "usr_1", "p");
        unexpanded.payload = None;
        assert!(without_payload(&unexpanded, false).is_none());
    }

    fn deleted_body(secret: &Secret) -> Zeroizing<Vec<u8>> {
        deleted(secret)
    }

    #[test]
    fn a_growing_body_keeps_every_byte_in_order() {
        let mut out = WipedBuffer(Zeroizing::new(Vec::with_capacity(4)));
        let mut expected = Vec::new();
        for n in 0..2_000u32 {
            let chunk = n.to_string();
            out.write_all(chunk.as_bytes()).unwrap();
            expected.extend_from_slice(chunk.as_bytes());
            assert!(out.0.capacity() >= out.0.len());
        }
        assert_eq!(out.0.as_slice(), expected.as_slice());
    }
}
