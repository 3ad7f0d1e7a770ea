//! The JSON of `apps.secret` objects and lists, exactly as docs/api.md describes: `expires_at`
//! always present (null when none), `payload` only when expanded, `deleted` only on delete.
//! Bodies may hold a payload, so they are written into memory that is wiped when dropped, sized
//! before the first byte for the longest the body can be, so that it never grows: a grown
//! buffer would be freed holding what it held. An answer kept for an idempotent replay never
//! holds a payload: it is written with `"payload": null` (`without_payload`), and a replay that
//! has the payload puts it back (`with_payload`).
//!
//! Written by hand rather than with serde: the shape is fixed, and serde_json writes a secret in
//! about 38 calls, one for each token, which made a list of ten spend 17% of its instructions
//! in them (callgrind). A test holds every answer equal, byte for byte, to serde_json's.

use secretstore_core::{ListPage, Payload, Scope, Secret};
use zeroize::Zeroizing;

use crate::ops::SECRETS_PATH;

/// Bytes of a secret's JSON that are not its strings' contents: keys, punctuation, the
/// object's name, the numbers (20 bytes at most each) and `true`/`false`/`null`.
const SECRET_FRAME: usize = 256;

/// The bytes JSON takes to write `text`'s contents, exactly. The buffer is wiped whole when
/// the answer is dropped, so room to spare costs a wipe: six bytes for each (the most an escape
/// takes) had made a list's wipe 5% of its instructions (callgrind).
fn escaped_room(text: &str) -> usize {
    let bytes = text.as_bytes();
    let mut room = bytes.len();
    for_each_suspect(bytes, |i| {
        room += match bytes[i] {
            b'"' | b'\\' | 0x08 | b'\t' | b'\n' | 0x0c | b'\r' => 1,
            0x00..=0x1f => 5,
            _ => 0,
        }
    });
    room
}

/// Calls `f` with each place in `bytes` that may need an escape: every byte of an eight-byte
/// word that has one (`needs_escape`), and of the last, shorter word; a word without one is
/// skipped whole. (A loop with a callback: as an iterator of ranges it cost twice as much.)
fn for_each_suspect(bytes: &[u8], mut f: impl FnMut(usize)) {
    let mut at = 0;
    while at < bytes.len() {
        if let Some(word) = bytes.get(at..at + 8) {
            if !needs_escape(u64::from_le_bytes(word.try_into().expect("eight bytes"))) {
                at += 8;
                continue;
            }
        }
        let end = (at + 8).min(bytes.len());
        (at..end).for_each(&mut f);
        at = end;
    }
}

/// The most bytes `secret`'s JSON may take (its strings exactly, the rest at most).
fn secret_room(secret: &Secret) -> usize {
    let user = match &secret.address.scope {
        Scope::Account => "",
        Scope::User(user) => user.as_str(),
    };
    SECRET_FRAME
        // An id is letters, digits and `_`: nothing to escape.
        + secret.id.as_str().len()
        + escaped_room(secret.address.name.as_str())
        + escaped_room(user)
        + secret
            .payload
            .as_ref()
            .map_or(0, |p| escaped_room(p.expose()))
}

/// A body being written: its buffer was sized for the whole body first, so pushing never
/// reallocates (`push` checks, and a body too long for its room would be a bug here, which
/// debug builds catch and release builds survive by growing).
struct Body(Zeroizing<Vec<u8>>);

impl Body {
    fn with_room(room: usize) -> Self {
        Body(Zeroizing::new(Vec::with_capacity(room)))
    }

    fn push(&mut self, bytes: &[u8]) {
        debug_assert!(
            self.0.len() + bytes.len() <= self.0.capacity(),
            "a body outgrew the room computed for it"
        );
        self.0.extend_from_slice(bytes);
    }

    fn number(&mut self, n: i64) {
        let mut digits = [0u8; 20];
        let mut at = digits.len();
        let mut rest = n.unsigned_abs();
        loop {
            at -= 1;
            digits[at] = b'0' + (rest % 10) as u8;
            rest /= 10;
            if rest == 0 {
                break;
            }
        }
        if n < 0 {
            self.push(b"-");
        }
        self.push(&digits[at..]);
    }

    fn optional_number(&mut self, n: Option<i64>) {
        match n {
            Some(n) => self.number(n),
            None => self.push(b"null"),
        }
    }

    fn boolean(&mut self, b: bool) {
        self.push(if b { b"true" } else { b"false" });
    }

    /// `text` as a JSON string, escaped as serde_json escapes: `"`, `\`, and the control
    /// characters below 0x20 (the five with a short form as `\b \t \n \f \r`, the others as
    /// `\u00XX`); everything else as it is, non-ASCII included. Runs that need no escape are
    /// copied whole, and found eight bytes at a time (`for_each_suspect`): a byte-by-byte
    /// search had been 4% of a find's instructions (callgrind).
    fn string(&mut self, text: &str) {
        self.push(b"\"");
        let bytes = text.as_bytes();
        let mut start = 0;
        for_each_suspect(bytes, |i| self.escape_at(bytes, &mut start, i));
        self.push(&bytes[start..]);
        self.push(b"\"");
    }

    /// Writes the run `bytes[*start..i]` and the escape of `bytes[i]`, if it needs one, and
    /// moves `start` past it.
    fn escape_at(&mut self, bytes: &[u8], start: &mut usize, i: usize) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let byte = bytes[i];
        let short: &[u8] = match byte {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            b'\t' => b"\\t",
            b'\n' => b"\\n",
            0x0c => b"\\f",
            b'\r' => b"\\r",
            0x00..=0x1f => &[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(byte >> 4)],
                HEX[usize::from(byte & 0xf)],
            ],
            _ => return,
        };
        self.push(&bytes[*start..i]);
        self.push(short);
        *start = i + 1;
    }
}

/// Whether any of the eight bytes of `word` needs an escape in JSON: a control character
/// (below 0x20), `"` or `\`. Each test is the classic "has a byte below n" of eight bytes at
/// once, `(x - n * ONES) & !x & HIGHS`, exact as to whether there is one (n at most 128); a
/// byte equal to `c` is a byte of `x ^ c * ONES` below 1.
fn needs_escape(word: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let below = |x: u64, n: u8| x.wrapping_sub(u64::from(n) * ONES) & !x & HIGHS != 0;
    below(word, 0x20)
        || below(word ^ (u64::from(b'"') * ONES), 1)
        || below(word ^ (u64::from(b'\\') * ONES), 1)
}

/// How a secret's payload appears: absent (not expanded), `null` (an answer kept without
/// it), or the payload.
#[derive(Clone, Copy)]
enum PayloadField<'a> {
    Absent,
    Null,
    Text(&'a str),
}

fn write_secret(out: &mut Body, secret: &Secret, deleted: bool, payload: PayloadField<'_>) {
    // The id (letters, digits, `_`) and the scope's type are written as they are: nothing in
    // them needs an escape.
    out.push(br#"{"id":""#);
    out.push(secret.id.as_str().as_bytes());
    out.push(br#"","object":"apps.secret","created":"#);
    out.number(secret.created);
    if deleted {
        out.push(br#","deleted":true"#);
    }
    out.push(br#","expires_at":"#);
    out.optional_number(secret.expires_at);
    out.push(br#","livemode":"#);
    out.boolean(secret.address.namespace.mode.livemode());
    out.push(br#","name":"#);
    out.string(secret.address.name.as_str());
    match payload {
        PayloadField::Absent => {}
        PayloadField::Null => out.push(NULL_PAYLOAD_FIELD),
        PayloadField::Text(text) => {
            out.push(br#","payload":"#);
            out.string(text);
        }
    }
    match &secret.address.scope {
        Scope::Account => out.push(br#","scope":{"type":"account"}}"#),
        Scope::User(user) => {
            out.push(br#","scope":{"type":"user","user":"#);
            out.string(user.as_str());
            out.push(b"}}");
        }
    }
}

fn payload_of(secret: &Secret) -> PayloadField<'_> {
    secret
        .payload
        .as_ref()
        .map_or(PayloadField::Absent, |p| PayloadField::Text(p.expose()))
}

fn one_secret(secret: &Secret, deleted: bool, payload: PayloadField<'_>) -> Zeroizing<Vec<u8>> {
    let mut out = Body::with_room(secret_room(secret));
    write_secret(&mut out, secret, deleted, payload);
    out.0
}

/// A secret, as set and find answer it.
pub fn secret(secret: &Secret) -> Zeroizing<Vec<u8>> {
    one_secret(secret, false, payload_of(secret))
}

/// A secret as delete answers it, marked `"deleted": true`.
pub fn deleted(secret: &Secret) -> Zeroizing<Vec<u8>> {
    one_secret(secret, true, payload_of(secret))
}

/// How the payload of an answer kept without it reads: a key, whose quotes are bare. Inside a
/// JSON string every `"` is escaped, so these bytes can only ever be the key itself, never part
/// of a name or a user id.
const NULL_PAYLOAD: &[u8] = br#""payload":null"#;
/// `NULL_PAYLOAD` as it follows the field before it.
const NULL_PAYLOAD_FIELD: &[u8] = br#","payload":null"#;

/// The answer of a set or delete (`deleted`) as kept for a replay: without the payload it
/// shows, as `"payload": null`; `None` when it shows none, and is kept as it is.
pub fn without_payload(secret: &Secret, deleted: bool) -> Option<Zeroizing<Vec<u8>>> {
    secret.payload.as_ref()?;
    Some(one_secret(secret, deleted, PayloadField::Null))
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
    let mut out = Body::with_room(kept.len() + escaped_room(payload.expose()) + 2);
    out.push(&kept[..at]);
    out.push(br#""payload":"#);
    out.string(payload.expose());
    out.push(&kept[at + NULL_PAYLOAD.len()..]);
    out.0
}

pub fn list(page: &ListPage) -> Zeroizing<Vec<u8>> {
    let room = SECRET_FRAME + page.items.iter().map(secret_room).sum::<usize>();
    let mut out = Body::with_room(room);
    out.push(br#"{"object":"list","url":"#);
    out.string(SECRETS_PATH);
    out.push(br#","has_more":"#);
    out.boolean(page.has_more);
    out.push(br#","data":["#);
    for (i, secret) in page.items.iter().enumerate() {
        if i > 0 {
            out.push(b",");
        }
        write_secret(&mut out, secret, false, payload_of(secret));
    }
    out.push(b"]}");
    out.0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Any two bytes, at any two places of a word otherwise of plain letters: `needs_escape`
    /// is true exactly when one of them needs an escape (the borrows of the word-wide
    /// subtraction must not make a byte next to a high one look like a control character).
    #[test]
    fn a_word_needs_an_escape_exactly_when_one_of_its_bytes_does() {
        let escaped = |b: u8| b < 0x20 || b == b'"' || b == b'\\';
        for first in 0..8 {
            for second in first + 1..8 {
                for a in 0..=255u8 {
                    for b in 0..=255u8 {
                        let mut word = *b"abcdefgh";
                        word[first] = a;
                        word[second] = b;
                        assert_eq!(
                            needs_escape(u64::from_le_bytes(word)),
                            escaped(a) || escaped(b),
                            "{word:?}"
                        );
                    }
                }
            }
        }
    }
    use proptest::prelude::*;
    use secretstore_core::{Mode, Namespace, SecretAddress, SecretId, SecretName, UserId};

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

    /// The answers as serde_json writes them: the oracle the hand-written JSON is held to.
    mod oracle {
        use serde::Serialize;

        #[derive(Serialize)]
        pub struct ScopeJson<'a> {
            #[serde(rename = "type")]
            pub kind: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            pub user: Option<&'a str>,
        }

        #[derive(Serialize)]
        pub struct SecretJson<'a> {
            pub id: &'a str,
            pub object: &'static str,
            pub created: i64,
            #[serde(skip_serializing_if = "Option::is_none")]
            pub deleted: Option<bool>,
            pub expires_at: Option<i64>,
            pub livemode: bool,
            pub name: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            pub payload: Option<Option<&'a str>>,
            pub scope: ScopeJson<'a>,
        }

        #[derive(Serialize)]
        pub struct ListJson<'a> {
            pub object: &'static str,
            pub url: &'static str,
            pub has_more: bool,
            pub data: Vec<SecretJson<'a>>,
        }
    }

    fn by_serde<'a>(
        secret: &'a Secret,
        deleted: bool,
        payload: Option<Option<&'a str>>,
    ) -> oracle::SecretJson<'a> {
        oracle::SecretJson {
            id: secret.id.as_str(),
            object: "apps.secret",
            created: secret.created,
            deleted: deleted.then_some(true),
            expires_at: secret.expires_at,
            livemode: secret.address.namespace.mode.livemode(),
            name: secret.address.name.as_str(),
            payload,
            scope: oracle::ScopeJson {
                kind: secret.address.scope.type_str(),
                user: match &secret.address.scope {
                    Scope::Account => None,
                    Scope::User(user) => Some(user.as_str()),
                },
            },
        }
    }

    /// Any text a name, user id or payload may hold: every control character, quotes,
    /// backslashes, and characters of every UTF-8 length.
    fn text() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            prop_oneof![
                (0u32..0x20).prop_map(|c| char::from_u32(c).unwrap()),
                Just('"'),
                Just('\\'),
                Just('/'),
                Just('\u{7f}'),
                any::<char>(),
                proptest::char::range('a', 'z'),
            ],
            1..40,
        )
        .prop_map(|chars| chars.into_iter().collect())
    }

    proptest! {
        /// The room made for a string is exactly what it takes, no more (the buffer is wiped
        /// whole) and no less (debug builds check every push against it).
        #[test]
        fn a_strings_room_is_its_json_length(text in text()) {
            let json = serde_json::to_string(&text).unwrap();
            prop_assert_eq!(escaped_room(&text), json.len() - 2);
        }

        #[test]
        fn every_answer_is_byte_for_byte_what_serde_json_writes(
            name in text(),
            user in proptest::option::of(text()),
            payload in proptest::option::of(text()),
            created in any::<i64>(),
            expires_at in proptest::option::of(any::<i64>()),
            live in any::<bool>(),
            has_more in any::<bool>(),
        ) {
            let (Ok(name), Ok(user)) = (
                SecretName::parse(&name),
                user.map(|u| UserId::parse(&u)).transpose(),
            ) else {
                return Ok(());
            };
            let Ok(payload) = payload.map(|p| Payload::parse(&p)).transpose() else {
                return Ok(());
            };
            let secret = Secret {
                id: SecretId::generate(),
                address: SecretAddress {
                    namespace: Namespace {
                        app: secretstore_core::AppId::parse("app").unwrap(),
                        account: secretstore_core::AccountId::parse("acct_1").unwrap(),
                        mode: if live { Mode::Live } else { Mode::Test },
                    },
                    scope: user.map_or(Scope::Account, Scope::User),
                    name,
                },
                created,
                expires_at,
                payload,
            };
            let shown = secret.payload.as_ref().map(|p| Some(p.expose()));
            for deleted in [false, true] {
                let expected = serde_json::to_vec(&by_serde(&secret, deleted, shown)).unwrap();
                let written = if deleted { super::deleted(&secret) } else { super::secret(&secret) };
                prop_assert_eq!(written.as_slice(), expected.as_slice());
                prop_assert!(written.len() <= secret_room(&secret));
                if secret.payload.is_some() {
                    let expected =
                        serde_json::to_vec(&by_serde(&secret, deleted, Some(None))).unwrap();
                    let kept = without_payload(&secret, deleted).unwrap();
                    prop_assert_eq!(kept.as_slice(), expected.as_slice());
                }
            }
            let page = ListPage { items: vec![secret.clone(), secret.clone()], has_more };
            let expected = serde_json::to_vec(&oracle::ListJson {
                object: "list",
                url: SECRETS_PATH,
                has_more,
                data: page.items.iter().map(|s| by_serde(s, false, shown)).collect(),
            })
            .unwrap();
            let listed = list(&page);
            prop_assert_eq!(listed.as_slice(), expected.as_slice());
        }
    }
}
