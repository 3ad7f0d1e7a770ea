//! The JSON of `apps.secret` objects and lists, exactly as docs/api.md describes: `expires_at`
//! always present (null when none), `payload` only when expanded, `deleted` only on delete.
//! Bodies may hold a payload, so they are written into memory that is wiped when dropped, and
//! wiped too when the body outgrows it on the way (`WipedBuffer`).

use secretstore_core::{ListPage, Scope, Secret};
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
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<&'a str>,
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
        payload: secret.payload.as_ref().map(|p| p.expose()),
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
    use std::io::Write as _;

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
