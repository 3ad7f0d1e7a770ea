//! The oracles the fuzz targets share: what a decoded form must look like (the decoder's own
//! bounds), and what the contract (docs/api.md §3 and §4, docs/errors.md) says any answer of request
//! validation must look like. Every check panics on a violation, which libFuzzer reports as a
//! crash with the input that caused it.
//!
//! The entry points are `fuzz_form` (target `form_decoder`), `fuzz_request` (target
//! `request_validation`) and `structured::fuzz_structured` (target `request_structured`).

use std::collections::BTreeMap;
use std::sync::OnceLock;

use secretstore_api::error::{ApiError, ErrorType};
use secretstore_api::form::{Form, Node, MAX_ARRAY_ITEMS, MAX_DEPTH, MAX_PAIRS};
use secretstore_api::ops::{self, Operation as _};
use secretstore_api::params::Params;
use secretstore_core::limits::{
    DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT, MAX_STRING_CHARS, MIN_LIST_LIMIT,
};
use secretstore_core::{
    AccountId, AppId, ListCursor, ListRequest, Mode, Namespace, Scope, SecretAddress, SecretId,
    SetRequest,
};

pub mod structured;

/// The four operations, as the targets name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Set,
    Find,
    Delete,
    List,
}

/// An accepted request of any operation, with what the oracles look at.
#[derive(Debug)]
pub enum Parsed {
    Set { request: SetRequest, reveal: bool },
    Find { key: SecretAddress, reveal: bool },
    Delete { key: SecretAddress, reveal: bool },
    List { request: ListRequest, reveal: bool },
}

/// Parses a decoded form as `op`, with the operation's own `parse` (`secretstore_api::ops`).
pub fn parse(
    op: Operation,
    root: BTreeMap<String, Node>,
    namespace: &Namespace,
) -> Result<Parsed, ApiError> {
    let params = Params::new(root);
    Ok(match op {
        Operation::Set => {
            let request = ops::Set::parse(params, namespace)?;
            let reveal = request.reveal;
            Parsed::Set { request, reveal }
        }
        Operation::Find => {
            let request = ops::Find::parse(params, namespace)?;
            Parsed::Find {
                key: request.address,
                reveal: request.reveal,
            }
        }
        Operation::Delete => {
            let request = ops::Delete::parse(params, namespace)?;
            Parsed::Delete {
                key: request.address,
                reveal: request.reveal,
            }
        }
        Operation::List => {
            let request = ops::List::parse(params, namespace)?;
            let reveal = request.reveal;
            Parsed::List { request, reveal }
        }
    })
}

pub const OPERATIONS: [Operation; 4] = [
    Operation::Set,
    Operation::Find,
    Operation::Delete,
    Operation::List,
];

/// The fixed namespace every validation runs in.
pub fn namespace() -> &'static Namespace {
    static NS: OnceLock<Namespace> = OnceLock::new();
    NS.get_or_init(|| Namespace {
        app: AppId::parse("fuzzapp").expect("valid app id"),
        account: AccountId::parse("acct_fuzz").expect("valid account id"),
        mode: Mode::Test,
    })
}

/// The error codes docs/errors.md documents for a refused request (validation only: no
/// storage, auth or idempotency is involved here).
const VALIDATION_CODES: &[&str] = &[
    "parameter_missing",
    "parameter_unknown",
    "parameter_invalid_string_empty",
    "parameter_invalid_string_too_long",
    "parameter_invalid_integer",
    "parameter_out_of_range",
    "parameter_invalid_enum",
    "parameter_invalid_expand",
    "parameter_invalid",
    "parameter_invalid_encoding",
    "parameters_exclusive",
    "resource_missing",
];

/// The error schema of the OpenAPI spec (`api_errors`): `message` at most 40,000 characters,
/// `param` and `code` at most 5,000.
const SPEC_MAX_MESSAGE: usize = 40_000;
const SPEC_MAX_FIELD: usize = 5_000;

/// Splits a fuzz input into a query string and a body at its first NUL byte (no NUL: the
/// whole input is the body), as a POST carries both and the server merges them.
pub fn split_query_body(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (&[], data),
    }
}

/// Decodes a query string then a body into one form, the way the server does on a POST.
pub fn decode_merged(query: &[u8], body: &[u8]) -> Result<Form, ApiError> {
    let mut form = Form::default();
    form.extend_from(query).map_err(ApiError::from)?;
    form.extend_from(body).map_err(ApiError::from)?;
    Ok(form)
}

// ---------------------------------------------------------------------------------------------
// The decoder

/// Bounds every decoded form must respect, whatever the input was.
pub fn check_form(form: &Form) {
    assert!(
        form.pairs.len() <= MAX_PAIRS,
        "{} pairs decoded, limit {MAX_PAIRS}",
        form.pairs.len()
    );
    let mut leaves = 0;
    for (name, node) in &form.root {
        check_node(name, node, 0, &mut leaves);
    }
    // Every leaf came from one pair (a repeated pair with the same value shares its leaf).
    assert!(
        leaves <= form.pairs.len(),
        "{leaves} leaves from {} pairs",
        form.pairs.len()
    );
}

fn check_node(name: &str, node: &Node, depth: usize, leaves: &mut usize) {
    assert!(depth <= MAX_DEPTH, "{name} nested {depth} deep");
    match node {
        Node::Text(_) => *leaves += 1,
        Node::Map(map) => {
            assert!(!map.is_empty(), "{name}: an empty object in a decoded form");
            for (key, child) in map {
                check_node(&format!("{name}[{key}]"), child, depth + 1, leaves);
            }
        }
        Node::List(items) => {
            assert!(
                !items.is_empty(),
                "{name}: an empty array in a decoded form"
            );
            assert!(
                items.len() <= MAX_ARRAY_ITEMS,
                "{name}: {} items, limit {MAX_ARRAY_ITEMS}",
                items.len()
            );
            let mut seen = Vec::new();
            for (index, child) in items {
                if let Some(i) = index {
                    assert!(!seen.contains(i), "{name}: index {i} twice");
                    seen.push(*i);
                }
                check_node(&format!("{name}[]"), child, depth + 1, leaves);
            }
        }
    }
}

/// Target `form_decoder`: `Form::parse` on the input, the query + body merge, and the
/// decoder's algebra (merging equals parsing the two joined by `&`; a decoded form re-encodes
/// to itself).
pub fn fuzz_form(data: &[u8]) {
    let whole = Form::parse(data);
    if let Ok(form) = &whole {
        check_form(form);
        check_round_trip(form);
    }
    if let Err(err) = &whole {
        check_validation_error(&ApiError::from(err.clone()), None);
    }

    let (query, body) = split_query_body(data);
    let mut merged = Form::default();
    let merged_result = merged
        .extend_from(query)
        .and_then(|()| merged.extend_from(body));
    let mut joined_input = query.to_vec();
    joined_input.push(b'&');
    joined_input.extend_from_slice(body);
    let joined = Form::parse(&joined_input);
    match (&merged_result, &joined) {
        (Ok(()), Ok(joined)) => {
            check_form(&merged);
            assert_eq!(
                &merged, joined,
                "query+body merge differs from parsing them joined"
            );
        }
        (Err(a), Err(b)) => assert_eq!(a, b, "query+body merge fails differently"),
        _ => panic!(
            "query+body merge and joined parse disagree: {merged_result:?} vs {:?}",
            joined.as_ref().map(|_| ())
        ),
    }
}

/// A decoded form, written back out with every component percent-encoded, decodes to the same
/// form: the decoder loses nothing and invents nothing.
fn check_round_trip(form: &Form) {
    let mut encoded = String::new();
    for (key, value) in &form.pairs {
        if !encoded.is_empty() {
            encoded.push('&');
        }
        encoded.extend(form_urlencoded::byte_serialize(key.as_bytes()));
        encoded.push('=');
        encoded.extend(form_urlencoded::byte_serialize(value.as_bytes()));
    }
    let again = Form::parse(encoded.as_bytes()).expect("a re-encoded form decodes");
    assert_eq!(&again, form, "re-encoded form decodes differently");
}

// ---------------------------------------------------------------------------------------------
// Request validation

/// What the contract says of any refusal by decoding or validation: HTTP 4xx, type
/// `invalid_request_error`, a documented code, a message a person can read, a non-empty `param`
/// in wire form where present, the spec's size limits, and a JSON body of the error shape.
/// `expect_param`: the parameter the refusal must name, when the caller knows it.
pub fn check_validation_error(err: &ApiError, expect_param: Option<&str>) {
    let status = err.status().as_u16();
    assert!(
        status == 400 || status == 404,
        "validation answered HTTP {status}: {err:?}"
    );
    assert_eq!(err.code.kind(), ErrorType::InvalidRequestError, "{err:?}");
    let code = err
        .code
        .wire()
        .unwrap_or_else(|| panic!("no code: {err:?}"));
    assert!(VALIDATION_CODES.contains(&code), "undocumented code {code}");
    assert_eq!(
        status == 404,
        code == "resource_missing",
        "status {status} with code {code}"
    );
    assert!(!err.message.trim().is_empty(), "empty message: {err:?}");
    let message_chars = err.message.chars().count();
    assert!(
        message_chars <= SPEC_MAX_MESSAGE,
        "message of {message_chars} characters, the spec allows {SPEC_MAX_MESSAGE}"
    );
    if let Some(param) = &err.param {
        assert!(!param.is_empty(), "empty param ({code}): {:?}", err.message);
        let param_chars = param.chars().count();
        assert!(
            param_chars <= SPEC_MAX_FIELD,
            "param of {param_chars} characters ({code}), the spec allows {SPEC_MAX_FIELD}"
        );
    }
    if let Some(expected) = expect_param {
        assert_eq!(err.param.as_deref(), Some(expected), "{err:?}");
    }
    check_error_json(&err.to_json());
}

/// `{"error":{"type":...,"message":...}}`: type in the spec's enum, message a non-empty string,
/// code and param strings when present, nothing else at the top level.
pub fn check_error_json(body: &[u8]) {
    let value: serde_json::Value = serde_json::from_slice(body).expect("an error body is JSON");
    let top = value.as_object().expect("an error body is an object");
    assert_eq!(top.len(), 1, "error body has other top-level keys: {value}");
    let error = top["error"].as_object().expect("error is an object");
    let kind = error["type"].as_str().expect("error.type is a string");
    assert!(
        [
            "api_error",
            "card_error",
            "idempotency_error",
            "invalid_request_error"
        ]
        .contains(&kind),
        "error.type {kind}"
    );
    let message = error
        .get("message")
        .and_then(|m| m.as_str())
        .expect("error.message is a string");
    assert!(!message.is_empty());
    for field in ["code", "param"] {
        if let Some(v) = error.get(field) {
            assert!(v.is_string(), "error.{field} is {v}");
        }
    }
}

/// The parameters each operation defines (docs/api.md §2).
fn allowed(op: Operation) -> &'static [&'static str] {
    match op {
        Operation::Set => &["name", "payload", "scope", "expires_at", "expand"],
        Operation::Find | Operation::Delete => &["name", "scope", "expand"],
        Operation::List => &[
            "scope",
            "limit",
            "starting_after",
            "ending_before",
            "expand",
        ],
    }
}

fn text<'a>(root: &'a BTreeMap<String, Node>, name: &str) -> Option<&'a str> {
    match root.get(name) {
        Some(Node::Text(t)) => Some(t.as_str()),
        _ => None,
    }
}

fn non_empty<'a>(root: &'a BTreeMap<String, Node>, name: &str) -> Option<&'a str> {
    text(root, name).filter(|t| !t.is_empty())
}

fn within_limit(value: &str) -> bool {
    let n = value.chars().count();
    (1..=MAX_STRING_CHARS).contains(&n)
}

fn expand_items(root: &BTreeMap<String, Node>) -> Vec<String> {
    match root.get("expand") {
        None => Vec::new(),
        Some(Node::Text(t)) => vec![t.as_str().to_owned()],
        Some(Node::List(items)) => items
            .iter()
            .map(|(_, n)| match n {
                Node::Text(t) => t.as_str().to_owned(),
                other => panic!("an accepted expand holds {other:?}"),
            })
            .collect(),
        Some(other) => panic!("an accepted expand is {other:?}"),
    }
}

/// An accepted request holds exactly what the form said, and only what the contract allows.
pub fn check_accepted(op: Operation, root: &BTreeMap<String, Node>, parsed: &Parsed) {
    for key in root.keys() {
        assert!(
            allowed(op).contains(&key.as_str()),
            "{op:?} accepted unknown parameter {key}"
        );
    }
    let Some(Node::Map(scope_given)) = root.get("scope") else {
        panic!("{op:?} accepted without a scope object");
    };
    for key in scope_given.keys() {
        assert!(key == "type" || key == "user", "accepted scope[{key}]");
    }
    let scope_type = match scope_given.get("type") {
        Some(Node::Text(t)) => t.as_str(),
        other => panic!("accepted scope[type] {other:?}"),
    };
    let scope_user = match scope_given.get("user") {
        None => None,
        Some(Node::Text(t)) => Some(t.as_str()),
        other => panic!("accepted scope[user] {other:?}"),
    };

    let (payload_word, scope_word) = match op {
        Operation::List => ("data.payload", "data.scope"),
        _ => ("payload", "scope"),
    };
    let items = expand_items(root);
    for item in &items {
        assert!(
            item == payload_word || item == scope_word,
            "{op:?} accepted expand[]={item}"
        );
    }
    let expect_reveal = items.iter().any(|i| i == payload_word);

    let check_scope = |scope: &Scope| {
        assert_eq!(scope.type_str(), scope_type, "scope type");
        match scope {
            Scope::Account => assert_eq!(scope_user, None, "account scope with a user"),
            Scope::User(user) => {
                assert!(within_limit(user.as_str()), "scope[user] length");
                assert_eq!(Some(user.as_str()), scope_user, "scope[user]");
            }
        }
    };
    let check_name = |name: &str| {
        assert!(
            within_limit(name),
            "name of {} characters",
            name.chars().count()
        );
        assert_eq!(Some(name), text(root, "name"), "name");
    };

    match parsed {
        Parsed::Set { request, reveal } => {
            assert_eq!(op, Operation::Set);
            assert_eq!(&request.address.namespace, namespace());
            check_scope(&request.address.scope);
            check_name(request.address.name.as_str());
            let payload = request.payload.expose();
            assert!(within_limit(payload), "payload length");
            assert_eq!(Some(payload), text(root, "payload"), "payload");
            let expected = non_empty(root, "expires_at")
                .map(|v| v.parse::<i64>().expect("accepted expires_at is an integer"));
            assert_eq!(request.expires_at, expected, "expires_at");
            assert_eq!(*reveal, expect_reveal, "reveal");
        }
        Parsed::Find { key, reveal } | Parsed::Delete { key, reveal } => {
            assert!(matches!(
                (op, parsed),
                (Operation::Find, Parsed::Find { .. }) | (Operation::Delete, Parsed::Delete { .. })
            ));
            assert_eq!(&key.namespace, namespace());
            check_scope(&key.scope);
            check_name(key.name.as_str());
            assert_eq!(*reveal, expect_reveal, "reveal");
        }
        Parsed::List { request, reveal } => {
            assert_eq!(op, Operation::List);
            assert_eq!(&request.namespace, namespace());
            check_scope(&request.scope);
            assert!((MIN_LIST_LIMIT..=MAX_LIST_LIMIT).contains(&request.limit));
            let expected_limit = non_empty(root, "limit")
                .map(|v| v.parse::<u32>().expect("accepted limit is an integer"))
                .unwrap_or(DEFAULT_LIST_LIMIT);
            assert_eq!(request.limit, expected_limit, "limit");
            let after = non_empty(root, "starting_after");
            let before = non_empty(root, "ending_before");
            assert!(after.is_none() || before.is_none(), "both cursors accepted");
            match &request.cursor {
                None => assert!(after.is_none() && before.is_none(), "cursor dropped"),
                Some(ListCursor::StartingAfter(id)) => {
                    assert_eq!(Some(id.as_str()), after);
                    assert!(SecretId::parse(id.as_str()).is_ok());
                }
                Some(ListCursor::EndingBefore(id)) => {
                    assert_eq!(Some(id.as_str()), before);
                    assert!(SecretId::parse(id.as_str()).is_ok());
                }
            }
            assert_eq!(*reveal, expect_reveal, "reveal");
        }
    }
}

/// Validates one decoded form as `op`, twice (the answer must not depend on anything but the
/// input), and checks the outcome.
pub fn validate(op: Operation, form: &Form) -> Result<Parsed, ApiError> {
    let first = parse(op, form.root.clone(), namespace());
    let second = parse(op, form.root.clone(), namespace());
    match (&first, &second) {
        (Ok(parsed), Ok(_)) => check_accepted(op, &form.root, parsed),
        (Err(a), Err(b)) => {
            assert_eq!(a, b, "{op:?}: two answers to one request");
            check_validation_error(a, None);
        }
        _ => panic!("{op:?}: accepted once and refused once"),
    }
    first
}

/// Target `request_validation`: the input (query NUL body) is decoded as the server decodes a
/// request and validated as each of the four operations.
pub fn fuzz_request(data: &[u8]) {
    let (query, body) = split_query_body(data);
    match decode_merged(query, body) {
        Err(err) => check_validation_error(&err, None),
        Ok(form) => {
            check_form(&form);
            for op in OPERATIONS {
                let _ = validate(op, &form);
            }
        }
    }
}
