//! Target `request_structured`: requests built from plausible parts, so the fuzzer reaches the
//! deep paths of validation (a well-formed scope, an array of expands, a cursor of the right
//! shape) in a few steps instead of having to discover `scope%5Btype%5D=account` byte by byte.
//!
//! Two kinds of input:
//! - `Shape::Valid`: a request the contract accepts, with one optional defect of a known kind.
//!   With no defect it must be accepted and hold exactly the values sent; with a defect it must
//!   be refused with the contract's code and param (docs/api.md §3, docs/errors.md).
//! - `Shape::Pairs`: arbitrary pairs of plausible keys and values in every wire form; only the
//!   general invariants apply (no panic, accepted requests faithful, refusals well formed).
//!
//! Either way each pair is written in one of the wire forms clients use: raw brackets,
//! percent-encoded brackets (upper or lower hex), everything percent-encoded, `+` or `%20` for
//! spaces, arrays bare (`expand[]`) or indexed (`expand[0]`), and on a POST some pairs moved to
//! the query string.

use crate::{Operation, Parsed};
use arbitrary::{Arbitrary, Unstructured};
use secretstore_api::DEFAULT_MAX_BODY_BYTES as MAX_BODY_BYTES;
use secretstore_core::limits::MAX_STRING_CHARS;
use secretstore_core::{ListCursor, Scope};

use crate::{check_form, check_validation_error, decode_merged, namespace, validate};

#[derive(Debug, Clone, Copy, Arbitrary, PartialEq, Eq)]
pub enum Op {
    Set,
    Find,
    Delete,
    List,
}

impl Op {
    fn operation(self) -> Operation {
        match self {
            Op::Set => Operation::Set,
            Op::Find => Operation::Find,
            Op::Delete => Operation::Delete,
            Op::List => Operation::List,
        }
    }

    fn is_post(self) -> bool {
        matches!(self, Op::Set | Op::Delete)
    }
}

/// How a key or value is written on the wire.
#[derive(Debug, Clone, Copy, Arbitrary)]
pub enum Style {
    /// `scope[type]`, values with `+` for spaces (what curl -d and most SDKs send).
    Raw,
    /// `scope%5Btype%5D` (what stripe-node and stripe-python send).
    UpperHex,
    /// `scope%5btype%5d`.
    LowerHex,
    /// Every byte percent-encoded.
    AllEncoded,
}

fn encode(text: &str, style: Style, is_key: bool) -> String {
    match style {
        Style::Raw if is_key => text
            .bytes()
            .map(|b| match b {
                b'[' | b']' => (b as char).to_string(),
                _ => form_urlencoded::byte_serialize(&[b]).collect(),
            })
            .collect(),
        Style::Raw | Style::UpperHex => form_urlencoded::byte_serialize(text.as_bytes()).collect(),
        Style::LowerHex => form_urlencoded::byte_serialize(text.as_bytes())
            .collect::<String>()
            .replace("%5B", "%5b")
            .replace("%5D", "%5d"),
        Style::AllEncoded => text.bytes().map(|b| format!("%{b:02X}")).collect(),
    }
}

/// A string value of a chosen length in Unicode scalar values.
#[derive(Debug, Clone, Arbitrary)]
pub struct TextSpec {
    /// Used as is when `repeat` is 0 (an empty string becomes "x").
    seed: String,
    /// Repeat `unit` to this many characters (mod 5,000, plus one) when non-zero.
    repeat: u16,
    unit: char,
}

impl TextSpec {
    fn text(&self) -> String {
        if self.repeat == 0 {
            let s: String = self.seed.chars().take(MAX_STRING_CHARS).collect();
            if s.is_empty() {
                "x".to_owned()
            } else {
                s
            }
        } else {
            let n = usize::from(self.repeat) % MAX_STRING_CHARS + 1;
            std::iter::repeat_n(self.unit, n).collect()
        }
    }
}

#[derive(Debug, Clone, Copy, Arbitrary)]
pub enum ArrayStyle {
    /// `expand[]=payload`
    Bare,
    /// `expand[0]=payload`
    Indexed,
    /// `expand=payload` (one item, no brackets)
    Single,
}

/// One defect, of a kind whose refusal the contract names exactly.
#[derive(Debug, Clone, Copy, Arbitrary)]
pub enum Defect {
    /// A required parameter left out: `parameter_missing`.
    Missing(Required),
    /// A required string given empty: `parameter_invalid_string_empty`.
    Empty(Required),
    /// A string of 5,001 characters: `parameter_invalid_string_too_long`.
    TooLong(Required),
    /// A parameter the operation does not define: `parameter_unknown`.
    Unknown,
    /// `scope[type]` neither account nor user: `parameter_invalid_enum`.
    BadScopeType,
    /// `scope[user]` with an account scope: `parameter_unknown`.
    UserOnAccount,
    /// `expand[]` naming something else: `parameter_invalid_expand`.
    BadExpand,
    /// `limit` outside 1..=100 (list) or `expires_at`/`limit` not an integer.
    BadInteger,
    /// Both cursors (list): `parameters_exclusive`.
    BothCursors,
}

#[derive(Debug, Clone, Copy, Arbitrary, PartialEq, Eq)]
pub enum Required {
    Name,
    Payload,
    ScopeType,
    ScopeUser,
}

#[derive(Debug, Clone, Arbitrary)]
pub struct Valid {
    op: Op,
    user: Option<TextSpec>,
    name: TextSpec,
    payload: TextSpec,
    expires_at: Option<i64>,
    expand: Vec<bool>,
    array_style: ArrayStyle,
    limit: Option<u8>,
    cursor: Option<(bool, [u8; 30])>,
    key_styles: Vec<Style>,
    value_styles: Vec<Style>,
    /// Bit i set: pair i goes in the query string (POST only; a GET has only a query).
    in_query: u64,
    /// Rotates the pairs: the server must not care about order.
    rotate: u8,
    defect: Option<Defect>,
}

#[derive(Debug, Clone, Arbitrary)]
pub enum Key {
    Name,
    Payload,
    ExpiresAt,
    Limit,
    StartingAfter,
    EndingBefore,
    Scope,
    ScopeType,
    ScopeUser,
    ScopeOther(String),
    ExpandBare,
    ExpandIndexed(u32),
    Expand,
    ExpandNested(u8, String),
    Other(String),
    /// A long name: `unit` repeated 1 to 12,000 times (past the 5,000-character limit a
    /// refusal must not echo whole).
    Long(char, u16),
    /// A base name and up to a few bracket segments (empty segment = `[]`).
    Nested(String, Vec<String>),
}

impl Key {
    fn wire(&self) -> String {
        match self {
            Key::Name => "name".into(),
            Key::Payload => "payload".into(),
            Key::ExpiresAt => "expires_at".into(),
            Key::Limit => "limit".into(),
            Key::StartingAfter => "starting_after".into(),
            Key::EndingBefore => "ending_before".into(),
            Key::Scope => "scope".into(),
            Key::ScopeType => "scope[type]".into(),
            Key::ScopeUser => "scope[user]".into(),
            Key::ScopeOther(k) => format!("scope[{k}]"),
            Key::ExpandBare => "expand[]".into(),
            Key::ExpandIndexed(i) => format!("expand[{}]", i % 100),
            Key::Expand => "expand".into(),
            Key::ExpandNested(i, k) => format!("expand[{}][{k}]", i % 4),
            Key::Other(k) => k.clone(),
            Key::Long(unit, n) => {
                std::iter::repeat_n(*unit, usize::from(*n) % 12_000 + 1).collect()
            }
            Key::Nested(base, segments) => {
                let mut out = base.clone();
                for s in segments.iter().take(6) {
                    out.push('[');
                    out.push_str(s);
                    out.push(']');
                }
                out
            }
        }
    }
}

#[derive(Debug, Clone, Arbitrary)]
pub enum Value {
    Account,
    User,
    Payload,
    DataPayload,
    ScopeWord,
    DataScope,
    UserId(u16),
    SecretId([u8; 30]),
    Int(i64),
    SmallInt(u8),
    Empty,
    Text(TextSpec),
    /// One character past the limit.
    TooLong(char),
    /// Raw bytes, percent-encoded: may be invalid UTF-8 once decoded.
    Bytes(Vec<u8>),
}

fn secret_id(random: &[u8; 30]) -> String {
    const ALPHANUMERIC: &[u8; 62] =
        b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut id = String::from("appsecret_");
    id.extend(
        random
            .iter()
            .map(|b| ALPHANUMERIC[usize::from(*b) % 62] as char),
    );
    id
}

impl Value {
    /// The value on the wire (already encoded).
    fn wire(&self, style: Style) -> String {
        let text = match self {
            Value::Account => "account".to_owned(),
            Value::User => "user".to_owned(),
            Value::Payload => "payload".to_owned(),
            Value::DataPayload => "data.payload".to_owned(),
            Value::ScopeWord => "scope".to_owned(),
            Value::DataScope => "data.scope".to_owned(),
            Value::UserId(n) => format!("usr_{n}"),
            Value::SecretId(r) => secret_id(r),
            Value::Int(n) => n.to_string(),
            Value::SmallInt(n) => n.to_string(),
            Value::Empty => String::new(),
            Value::Text(spec) => spec.text(),
            Value::TooLong(c) => std::iter::repeat_n(*c, MAX_STRING_CHARS + 1).collect(),
            Value::Bytes(bytes) => return bytes.iter().map(|b| format!("%{b:02X}")).collect(),
        };
        encode(&text, style, false)
    }
}

#[derive(Debug, Clone, Arbitrary)]
pub struct Pair {
    key: Key,
    value: Value,
    key_style: Style,
    value_style: Style,
    /// Leave out the `=` (a bare key, value empty).
    bare: bool,
    in_query: bool,
}

#[derive(Debug, Clone, Arbitrary)]
pub enum Shape {
    Valid(Box<Valid>),
    Pairs(Op, Vec<Pair>),
}

/// Pairs (already encoded) split into query string and body.
struct Wire {
    query: String,
    body: String,
}

impl Wire {
    fn new() -> Self {
        Wire {
            query: String::new(),
            body: String::new(),
        }
    }

    /// Larger than the server's default body limit: such a request never reaches the decoder.
    fn too_large(&self) -> bool {
        self.query.len() > MAX_BODY_BYTES || self.body.len() > MAX_BODY_BYTES
    }

    fn push(&mut self, in_query: bool, pair: &str) {
        let dest = if in_query {
            &mut self.query
        } else {
            &mut self.body
        };
        if !dest.is_empty() {
            dest.push('&');
        }
        dest.push_str(pair);
    }
}

/// What the request must get, with the request's own values to compare an acceptance with.
enum Expect {
    Accepted,
    Refused { code: &'static str, param: String },
}

fn build_valid(v: &Valid) -> (Vec<(String, String)>, Expect) {
    let op = v.op;
    let mut pairs: Vec<(String, String)> = Vec::new();
    let mut expect = Expect::Accepted;
    let refuse = |code: &'static str, param: &str| Expect::Refused {
        code,
        param: param.to_owned(),
    };
    let too_long = |c: char| -> String { std::iter::repeat_n(c, MAX_STRING_CHARS + 1).collect() };

    // Which defect applies to this operation (others are ignored: the request stays valid).
    let defect = v.defect.filter(|d| match d {
        Defect::Missing(Required::Payload)
        | Defect::Empty(Required::Payload)
        | Defect::TooLong(Required::Payload) => op == Op::Set,
        Defect::Missing(Required::Name)
        | Defect::Empty(Required::Name)
        | Defect::TooLong(Required::Name) => op != Op::List,
        Defect::Missing(Required::ScopeUser)
        | Defect::Empty(Required::ScopeUser)
        | Defect::TooLong(Required::ScopeUser) => v.user.is_some(),
        Defect::BothCursors => op == Op::List,
        _ => true,
    });

    // scope
    let user_text = v.user.as_ref().map(TextSpec::text);
    match defect {
        Some(Defect::Missing(Required::ScopeType)) => {
            expect = refuse("parameter_missing", "scope[type]");
        }
        Some(Defect::Empty(Required::ScopeType)) => {
            pairs.push(("scope[type]".into(), String::new()));
            expect = refuse("parameter_invalid_string_empty", "scope[type]");
        }
        Some(Defect::TooLong(Required::ScopeType)) => {
            pairs.push(("scope[type]".into(), too_long('a')));
            expect = refuse("parameter_invalid_string_too_long", "scope[type]");
        }
        Some(Defect::BadScopeType) => {
            pairs.push(("scope[type]".into(), "team".into()));
            expect = refuse("parameter_invalid_enum", "scope[type]");
        }
        _ => pairs.push((
            "scope[type]".into(),
            if user_text.is_some() {
                "user"
            } else {
                "account"
            }
            .into(),
        )),
    }
    if matches!(defect, Some(Defect::Missing(Required::ScopeType))) && user_text.is_none() {
        // Nothing at all under scope: the whole object is missing.
        expect = refuse("parameter_missing", "scope");
    }
    match (&user_text, defect) {
        (Some(_), Some(Defect::Missing(Required::ScopeUser))) => {
            expect = refuse("parameter_missing", "scope[user]");
        }
        (Some(_), Some(Defect::Empty(Required::ScopeUser))) => {
            pairs.push(("scope[user]".into(), String::new()));
            expect = refuse("parameter_invalid_string_empty", "scope[user]");
        }
        (Some(_), Some(Defect::TooLong(Required::ScopeUser))) => {
            pairs.push(("scope[user]".into(), too_long('é')));
            expect = refuse("parameter_invalid_string_too_long", "scope[user]");
        }
        (Some(user), _) => pairs.push(("scope[user]".into(), user.clone())),
        (None, Some(Defect::UserOnAccount)) => {
            pairs.push(("scope[user]".into(), "usr_1".into()));
            expect = refuse("parameter_unknown", "scope[user]");
        }
        (None, _) => {}
    }

    // name, payload, expires_at
    if op != Op::List {
        match defect {
            Some(Defect::Missing(Required::Name)) => expect = refuse("parameter_missing", "name"),
            Some(Defect::Empty(Required::Name)) => {
                pairs.push(("name".into(), String::new()));
                expect = refuse("parameter_invalid_string_empty", "name");
            }
            Some(Defect::TooLong(Required::Name)) => {
                pairs.push(("name".into(), too_long('😀')));
                expect = refuse("parameter_invalid_string_too_long", "name");
            }
            _ => pairs.push(("name".into(), v.name.text())),
        }
    }
    if op == Op::Set {
        match defect {
            Some(Defect::Missing(Required::Payload)) => {
                expect = refuse("parameter_missing", "payload");
            }
            Some(Defect::Empty(Required::Payload)) => {
                pairs.push(("payload".into(), String::new()));
                expect = refuse("parameter_invalid_string_empty", "payload");
            }
            Some(Defect::TooLong(Required::Payload)) => {
                pairs.push(("payload".into(), too_long('x')));
                expect = refuse("parameter_invalid_string_too_long", "payload");
            }
            _ => pairs.push(("payload".into(), v.payload.text())),
        }
        match (v.expires_at, defect) {
            (_, Some(Defect::BadInteger)) => {
                pairs.push(("expires_at".into(), "tomorrow".into()));
                expect = refuse("parameter_invalid_integer", "expires_at");
            }
            (Some(t), _) => pairs.push(("expires_at".into(), t.to_string())),
            (None, _) => {}
        }
    }
    if op == Op::List {
        match (v.limit, defect) {
            (_, Some(Defect::BadInteger)) => {
                pairs.push(("limit".into(), "101".into()));
                expect = refuse("parameter_out_of_range", "limit");
            }
            (Some(l), _) => pairs.push(("limit".into(), (u32::from(l) % 100 + 1).to_string())),
            (None, _) => {}
        }
        match (v.cursor, defect) {
            (_, Some(Defect::BothCursors)) => {
                let r = v.cursor.map(|c| c.1).unwrap_or([0; 30]);
                pairs.push(("starting_after".into(), secret_id(&r)));
                pairs.push(("ending_before".into(), secret_id(&r)));
                expect = refuse("parameters_exclusive", "ending_before");
            }
            (Some((after, r)), _) => pairs.push((
                if after {
                    "starting_after"
                } else {
                    "ending_before"
                }
                .into(),
                secret_id(&r),
            )),
            (None, _) => {}
        }
    }

    // expand
    let (payload_word, scope_word) = if op == Op::List {
        ("data.payload", "data.scope")
    } else {
        ("payload", "scope")
    };
    let mut items: Vec<String> = v
        .expand
        .iter()
        .take(8)
        .map(|p| if *p { payload_word } else { scope_word }.to_owned())
        .collect();
    if matches!(defect, Some(Defect::BadExpand)) {
        items.push(
            if op == Op::List {
                "payload"
            } else {
                "data.payload"
            }
            .to_owned(),
        );
        expect = refuse("parameter_invalid_expand", "expand");
    }
    let style = if items.len() > 1 && matches!(v.array_style, ArrayStyle::Single) {
        ArrayStyle::Bare
    } else {
        v.array_style
    };
    for (i, item) in items.into_iter().enumerate() {
        let key = match style {
            ArrayStyle::Bare => "expand[]".to_owned(),
            ArrayStyle::Indexed => format!("expand[{i}]"),
            ArrayStyle::Single => "expand".to_owned(),
        };
        pairs.push((key, item));
    }

    // A set whose name and user id could not both fit in a find's URL is refused (docs/api.md
    // §3), after the checks of the name and the scope and before those of the payload's value,
    // the expiry and `expand`: it replaces an acceptance or one of those later refusals.
    let checked_later = match &expect {
        Expect::Accepted => true,
        Expect::Refused { code, param } => {
            (param == "payload" && *code != "parameter_missing")
                || param == "expires_at"
                || param == "expand"
        }
    };
    if op == Op::Set && checked_later && !findable(&pairs) {
        expect = refuse("parameter_invalid_string_too_long", "name");
    }

    if matches!(defect, Some(Defect::Unknown)) {
        pairs.push(("metadata[color]".into(), "blue".into()));
        expect = refuse("parameter_unknown", "metadata[color]");
    }
    (pairs, expect)
}

/// Whether the name and the user id among `pairs` fit together in a find's URL: 65,534 bytes of
/// request target, less 128 for the rest of it, each byte percent-encoded (3 bytes) unless it is
/// an ASCII letter, digit or `-._~`.
fn findable(pairs: &[(String, String)]) -> bool {
    let encoded = |key: &str| -> usize {
        pairs
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, value)| {
                value
                    .bytes()
                    .map(|b| {
                        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                            1
                        } else {
                            3
                        }
                    })
                    .sum::<usize>()
            })
            .sum()
    };
    encoded("name") + encoded("scope[user]") <= 65_534 - 128
}

fn run_valid(v: &Valid) {
    let (mut pairs, expect) = build_valid(v);
    if !pairs.is_empty() {
        let n = usize::from(v.rotate) % pairs.len();
        pairs.rotate_left(n);
    }
    let style_at = |styles: &[Style], i: usize| {
        if styles.is_empty() {
            Style::Raw
        } else {
            styles[i % styles.len()]
        }
    };
    let mut wire = Wire::new();
    for (i, (key, value)) in pairs.iter().enumerate() {
        let in_query = !v.op.is_post() || (v.in_query >> (i % 64)) & 1 == 1;
        let encoded = format!(
            "{}={}",
            encode(key, style_at(&v.key_styles, i), true),
            encode(value, style_at(&v.value_styles, i), false)
        );
        wire.push(in_query, &encoded);
    }
    assert!(
        !wire.too_large(),
        "a valid request is larger than the body limit"
    );
    let form = match decode_merged(wire.query.as_bytes(), wire.body.as_bytes()) {
        Ok(form) => form,
        Err(err) => panic!("a well-formed request failed to decode: {err:?}"),
    };
    check_form(&form);
    let op = v.op.operation();
    let result = validate(op, &form);
    match (expect, result) {
        (Expect::Accepted, Ok(parsed)) => check_values(v, &parsed),
        (Expect::Accepted, Err(err)) => panic!("a valid {op:?} was refused: {err:?}"),
        (Expect::Refused { code, param }, Err(err)) => {
            check_validation_error(&err, Some(&param));
            assert_eq!(err.code.wire(), Some(code), "{err:?}");
        }
        (Expect::Refused { code, param }, Ok(_)) => {
            panic!("{op:?} accepted a request that must be refused ({code} on {param})")
        }
    }
}

/// The accepted request holds the generated values (beyond `check_accepted`, which compares it
/// with the decoded form: this compares it with what was meant before encoding).
fn check_values(v: &Valid, parsed: &Parsed) {
    let scope_ok = |scope: &Scope| match (&v.user, scope) {
        (None, Scope::Account) => {}
        (Some(spec), Scope::User(user)) => assert_eq!(user.as_str(), spec.text()),
        (want, got) => panic!(
            "scope {got:?}, sent user {:?}",
            want.as_ref().map(TextSpec::text)
        ),
    };
    let reveal_wanted = v.expand.iter().take(8).any(|p| *p);
    match parsed {
        Parsed::Set { request, reveal } => {
            scope_ok(&request.address.scope);
            assert_eq!(request.address.name.as_str(), v.name.text());
            assert_eq!(request.payload.expose(), v.payload.text());
            assert_eq!(request.expires_at, v.expires_at);
            assert_eq!(*reveal, reveal_wanted);
        }
        Parsed::Find { key, reveal } | Parsed::Delete { key, reveal } => {
            scope_ok(&key.scope);
            assert_eq!(key.name.as_str(), v.name.text());
            assert_eq!(*reveal, reveal_wanted);
        }
        Parsed::List { request, reveal } => {
            scope_ok(&request.scope);
            let want = v.limit.map(|l| u32::from(l) % 100 + 1).unwrap_or(10);
            assert_eq!(request.limit, want);
            match (&request.cursor, v.cursor) {
                (None, None) => {}
                (Some(ListCursor::StartingAfter(id)), Some((true, r)))
                | (Some(ListCursor::EndingBefore(id)), Some((false, r))) => {
                    assert_eq!(id.as_str(), secret_id(&r));
                }
                (got, want) => panic!("cursor {got:?}, sent {want:?}"),
            }
            assert_eq!(*reveal, reveal_wanted);
        }
    }
}

fn run_pairs(op: Op, pairs: &[Pair]) {
    let mut wire = Wire::new();
    for pair in pairs.iter().take(300) {
        let key = encode(&pair.key.wire(), pair.key_style, true);
        let encoded = if pair.bare {
            key
        } else {
            format!("{key}={}", pair.value.wire(pair.value_style))
        };
        wire.push(!op.is_post() || pair.in_query, &encoded);
        if wire.too_large() {
            // The server refuses it (413) before decoding anything.
            return;
        }
    }
    match decode_merged(wire.query.as_bytes(), wire.body.as_bytes()) {
        Err(err) => check_validation_error(&err, None),
        Ok(form) => {
            check_form(&form);
            // validate() checks an acceptance against the form and a refusal's shape.
            let _ = validate(op.operation(), &form);
        }
    }
}

pub fn fuzz_structured(data: &[u8]) {
    let u = Unstructured::new(data);
    let Ok(shape) = Shape::arbitrary_take_rest(u) else {
        return;
    };
    let _ = namespace();
    match &shape {
        Shape::Valid(v) => run_valid(v),
        Shape::Pairs(op, pairs) => run_pairs(*op, pairs),
    }
}
