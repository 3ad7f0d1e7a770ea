//! The parameter toolkit every operation's `parse` uses: a `Params` from which an operation
//! takes what it defines (whatever is left is `parameter_unknown`), and the shared rules of
//! docs/api.md ("Parameters"): scopes, names, `expand`, integers, cursors. Checks run in a
//! fixed order (shape, unknown names, required names, values), so the same bad request always
//! gets the same answer.

use std::collections::BTreeMap;

use secretstore_core::limits::MAX_STRING_CHARS;
use secretstore_core::{
    check_length, Namespace, Scope, SecretAddress, SecretId, SecretName, UserId,
};

use crate::error::{ApiError, Code};
use crate::form::{Node, Text};

/// `scope[type]` and `scope[user]` as given, before they are checked.
#[derive(Debug)]
pub struct ScopeGiven {
    kind: Option<Text>,
    user: Option<Text>,
}

/// What an operation may `expand`: the object's own fields, or a list's items' fields.
#[derive(Debug, Clone, Copy)]
pub struct Expandable {
    pub payload: &'static str,
    pub scope: &'static str,
}

/// Expandable fields of a secret.
pub const SECRET_FIELDS: Expandable = Expandable {
    payload: "payload",
    scope: "scope",
};

/// Expandable fields of a list's items.
pub const LIST_ITEM_FIELDS: Expandable = Expandable {
    payload: "data.payload",
    scope: "data.scope",
};

/// A request's decoded parameters; each getter removes what it recognises.
#[derive(Debug)]
pub struct Params {
    root: BTreeMap<String, Node>,
}

fn expected_string(param: &str) -> ApiError {
    ApiError::invalid(param, format!("Invalid {param}: expected a string."))
}

impl Params {
    pub fn new(root: BTreeMap<String, Node>) -> Self {
        Self { root }
    }

    pub fn text(&mut self, name: &str) -> Result<Option<Text>, ApiError> {
        match self.root.remove(name) {
            None => Ok(None),
            Some(Node::Text(text)) => Ok(Some(text)),
            Some(_) => Err(expected_string(name)),
        }
    }

    /// `scope[type]` and `scope[user]`, as given.
    pub fn scope(&mut self) -> Result<Option<ScopeGiven>, ApiError> {
        match self.root.remove("scope") {
            None => Ok(None),
            Some(Node::Map(mut map)) => {
                let kind = take_map_text(&mut map, "type")?;
                let user = take_map_text(&mut map, "user")?;
                if let Some(extra) = map.keys().next() {
                    return Err(ApiError::unknown(&format!("scope[{extra}]")));
                }
                Ok(Some(ScopeGiven { kind, user }))
            }
            Some(_) => Err(ApiError::invalid(
                "scope",
                "Invalid scope: expected an object, as in scope[type]=account or \
                 scope[type]=user&scope[user]=usr_..."
                    .to_owned(),
            )),
        }
    }

    pub fn expand(&mut self) -> Result<Vec<Text>, ApiError> {
        match self.root.remove("expand") {
            None => Ok(Vec::new()),
            Some(Node::Text(one)) => Ok(vec![one]),
            Some(Node::List(items)) => items
                .into_iter()
                .map(|(_, item)| match item {
                    Node::Text(text) => Ok(text),
                    _ => Err(expected_string("expand")),
                })
                .collect(),
            Some(Node::Map(_)) => Err(ApiError::invalid(
                "expand",
                "Invalid expand: expected an array, as in expand[]=payload.".to_owned(),
            )),
        }
    }

    /// Refuses the first parameter nobody took, in its wire form.
    pub fn finish(self) -> Result<(), ApiError> {
        match self.root.into_iter().next() {
            None => Ok(()),
            Some((name, node)) => Err(ApiError::unknown(&wire_name(&name, &node))),
        }
    }
}

fn take_map_text(map: &mut BTreeMap<String, Node>, key: &str) -> Result<Option<Text>, ApiError> {
    match map.remove(key) {
        None => Ok(None),
        Some(Node::Text(text)) => Ok(Some(text)),
        Some(_) => Err(expected_string(&format!("scope[{key}]"))),
    }
}

/// The first full bracketed name under an unknown parameter, as the client wrote it.
fn wire_name(name: &str, node: &Node) -> String {
    match node {
        Node::Text(_) => name.to_owned(),
        Node::Map(map) => match map.iter().next() {
            Some((key, child)) => wire_name(&format!("{name}[{key}]"), child),
            None => name.to_owned(),
        },
        Node::List(items) => match items.first() {
            Some((Some(i), child)) => wire_name(&format!("{name}[{i}]"), child),
            Some((None, child)) => wire_name(&format!("{name}[]"), child),
            None => name.to_owned(),
        },
    }
}

pub fn required(value: Option<Text>, param: &str) -> Result<Text, ApiError> {
    value.ok_or_else(|| ApiError::missing(param))
}

/// An optional parameter given as an empty string is treated as not given (Stripe's "unset").
pub fn optional(value: Option<Text>) -> Option<Text> {
    value.filter(|v| !v.is_empty())
}

fn bounded(value: &str, param: &str) -> Result<(), ApiError> {
    check_length(value, MAX_STRING_CHARS).map_err(|problem| ApiError::invalid_value(param, problem))
}

pub fn parse_scope(given: Option<ScopeGiven>) -> Result<Scope, ApiError> {
    let ScopeGiven { kind, user } = given.ok_or_else(|| ApiError::missing("scope"))?;
    let kind = required(kind, "scope[type]")?;
    match kind.as_str() {
        "account" => match user {
            None => Ok(Scope::Account),
            Some(_) => Err(ApiError::new(
                Code::ParameterUnknown,
                "Received unknown parameter: scope[user] (scope[user] is only allowed when \
                 scope[type] is user)",
            )
            .with_param("scope[user]")),
        },
        "user" => {
            let user = required(user, "scope[user]")?;
            UserId::parse(&user)
                .map(Scope::User)
                .map_err(|problem| ApiError::invalid_value("scope[user]", problem))
        }
        "" => Err(ApiError::empty_string("scope[type]")),
        _ => {
            bounded(&kind, "scope[type]")?;
            Err(ApiError::new(
                Code::InvalidEnum,
                "Invalid scope[type]: must be one of account or user.",
            )
            .with_param("scope[type]"))
        }
    }
}

pub fn parse_integer(value: &str, param: &str) -> Result<i64, ApiError> {
    value
        .parse::<i64>()
        .map_err(|_| ApiError::not_integer(param, value))
}

/// Whether `expand` asks for the payload; anything it may not name is refused.
pub fn parse_expand(items: Vec<Text>, fields: Expandable) -> Result<bool, ApiError> {
    let mut reveal = false;
    for item in items {
        bounded(&item, "expand")?;
        if item.as_str() == fields.payload {
            reveal = true;
        } else if item.as_str() != fields.scope {
            let shown: String = item.chars().take(100).collect();
            return Err(ApiError::new(
                Code::InvalidExpand,
                format!(
                    "This property cannot be expanded ({shown}). This operation can expand \
                     {} and {}.",
                    fields.payload, fields.scope
                ),
            )
            .with_param("expand"));
        }
    }
    Ok(reveal)
}

/// The address of the secret a request names.
pub fn address(namespace: &Namespace, scope: Scope, name: &str) -> Result<SecretAddress, ApiError> {
    let name = SecretName::parse(name).map_err(|p| ApiError::invalid_value("name", p))?;
    Ok(SecretAddress {
        namespace: namespace.clone(),
        scope,
        name,
    })
}

/// The most bytes a request target (path and query) may have: hyper's fixed limit, which no
/// setting changes. Longer targets get 414 `uri_too_long`.
pub const MAX_URI_BYTES: usize = 65_534;

/// What a find's target holds besides the name and the user id, with room to spare:
/// `/v1/apps/secrets/find?name=&scope%5Btype%5D=user&scope%5Buser%5D=&expand%5B0%5D=payload`
/// is 87 bytes.
const FIND_TARGET_OVERHEAD: usize = 128;

/// The bytes `value` takes percent-encoded as a query value, the way that expands most (every
/// byte but ASCII letters, digits and `-._~` as `%XX`).
fn encoded_len(value: &str) -> usize {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                1
            } else {
                3
            }
        })
        .sum()
}

/// A secret that can be set must be findable: a name and a user id that, percent-encoded in a
/// find's query string, would make a request target longer than `MAX_URI_BYTES` are refused
/// when the secret is set (each alone may hold 5,000 characters; two of 4-byte characters
/// together would take 120 KB). docs/api.md §3 states the rule.
pub fn check_findable(address: &SecretAddress) -> Result<(), ApiError> {
    let user = address.scope.user().map_or(0, |u| encoded_len(u.as_str()));
    let total = encoded_len(address.name.as_str()) + user;
    let room = MAX_URI_BYTES - FIND_TARGET_OVERHEAD;
    if total > room {
        return Err(ApiError::new(
            Code::StringTooLong,
            format!(
                "name and scope[user] are too long together: percent-encoded in the URL of a \
                 find they take {total} bytes, more than the {room} a URL can hold here, so the \
                 secret could never be found. Use a shorter name or user id."
            ),
        )
        .with_param("name"));
    }
    Ok(())
}

/// What find and delete take: `name`, `scope` and `expand`, as the address of one secret and
/// whether to reveal its payload.
pub fn named(mut params: Params, namespace: &Namespace) -> Result<(SecretAddress, bool), ApiError> {
    let expand = params.expand()?;
    let scope = params.scope()?;
    let name = params.text("name")?;
    params.finish()?;
    let name = required(name, "name")?;
    let address = address(namespace, parse_scope(scope)?, &name)?;
    let reveal = parse_expand(expand, SECRET_FIELDS)?;
    Ok((address, reveal))
}

pub fn parse_cursor(value: Option<Text>, param: &str) -> Result<Option<SecretId>, ApiError> {
    let Some(value) = optional(value) else {
        return Ok(None);
    };
    bounded(&value, param)?;
    // An id this server could never have issued names no secret.
    SecretId::parse(&value)
        .map(Some)
        .map_err(|_| ApiError::not_found(param, &value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::form::Form;
    use crate::ops::{Delete, Find, List, Operation, Set};
    use secretstore_core::{AccountId, AppId, ListCursor, Mode};

    fn ns() -> Namespace {
        Namespace {
            app: AppId::parse("app").unwrap(),
            account: AccountId::parse("acct_1").unwrap(),
            mode: Mode::Test,
        }
    }

    fn run<O: Operation>(raw: &str) -> Result<O::Request, ApiError> {
        O::parse(
            Params::new(Form::parse(raw.as_bytes()).unwrap().root),
            &ns(),
        )
    }

    fn code_and_param<O: Operation>(raw: &str) -> (Option<&'static str>, Option<String>)
    where
        O::Request: std::fmt::Debug,
    {
        let err = run::<O>(raw).unwrap_err();
        (err.code.wire(), err.param)
    }

    #[test]
    fn set_with_every_field() {
        let request = run::<Set>(
            "name=n&payload=p&scope[type]=user&scope[user]=usr_1&expires_at=99&expand[0]=payload",
        )
        .unwrap();
        assert!(request.reveal);
        assert_eq!(request.address.name.as_str(), "n");
        assert_eq!(
            request.address.scope,
            Scope::User(UserId::parse("usr_1").unwrap())
        );
        assert_eq!(request.expires_at, Some(99));
        assert_eq!(request.payload.expose(), "p");
    }

    #[test]
    fn missing_parameters_are_named() {
        assert_eq!(
            code_and_param::<Set>("payload=p&scope[type]=account"),
            (Some("parameter_missing"), Some("name".into()))
        );
        assert_eq!(
            code_and_param::<Set>("name=n&scope[type]=account"),
            (Some("parameter_missing"), Some("payload".into()))
        );
        assert_eq!(
            code_and_param::<Set>("name=n&payload=p"),
            (Some("parameter_missing"), Some("scope".into()))
        );
        assert_eq!(
            code_and_param::<Set>("name=n&payload=p&scope[user]=u"),
            (Some("parameter_missing"), Some("scope[type]".into()))
        );
        assert_eq!(
            code_and_param::<Find>("name=n&scope[type]=user"),
            (Some("parameter_missing"), Some("scope[user]".into()))
        );
        assert_eq!(
            code_and_param::<List>(""),
            (Some("parameter_missing"), Some("scope".into()))
        );
    }

    #[test]
    fn unknown_parameters_are_refused_in_wire_form() {
        assert_eq!(
            code_and_param::<Find>("name=n&scope[type]=account&foo=1"),
            (Some("parameter_unknown"), Some("foo".into()))
        );
        assert_eq!(
            code_and_param::<Find>("name=n&scope[type]=account&scope[x]=1"),
            (Some("parameter_unknown"), Some("scope[x]".into()))
        );
        assert_eq!(
            code_and_param::<Find>("name=n&scope[type]=account&meta[a][b]=1"),
            (Some("parameter_unknown"), Some("meta[a][b]".into()))
        );
        assert_eq!(
            code_and_param::<Find>("name=n&scope[type]=account&payload=x"),
            (Some("parameter_unknown"), Some("payload".into()))
        );
        assert_eq!(
            code_and_param::<List>("scope[type]=account&name=x"),
            (Some("parameter_unknown"), Some("name".into()))
        );
        assert_eq!(
            code_and_param::<Find>("name=n&scope[type]=account&scope[user]=u"),
            (Some("parameter_unknown"), Some("scope[user]".into()))
        );
    }

    #[test]
    fn empty_and_too_long_strings() {
        assert_eq!(
            code_and_param::<Set>("name=&payload=p&scope[type]=account"),
            (Some("parameter_invalid_string_empty"), Some("name".into()))
        );
        assert_eq!(
            code_and_param::<Set>("name=n&payload=&scope[type]=account"),
            (
                Some("parameter_invalid_string_empty"),
                Some("payload".into())
            )
        );
        assert_eq!(
            code_and_param::<Find>("name=n&scope[type]=user&scope[user]="),
            (
                Some("parameter_invalid_string_empty"),
                Some("scope[user]".into())
            )
        );
        let long = "é".repeat(5001);
        assert_eq!(
            code_and_param::<Find>(&format!("name={long}&scope[type]=account")),
            (
                Some("parameter_invalid_string_too_long"),
                Some("name".into())
            )
        );
        let ok = "é".repeat(5000);
        assert!(run::<Find>(&format!("name={ok}&scope[type]=account")).is_ok());
    }

    #[test]
    fn scope_type_is_an_enum() {
        assert_eq!(
            code_and_param::<Find>("name=n&scope[type]=team"),
            (Some("parameter_invalid_enum"), Some("scope[type]".into()))
        );
        assert_eq!(
            code_and_param::<Find>("name=n&scope=account"),
            (Some("parameter_invalid"), Some("scope".into()))
        );
    }

    #[test]
    fn integers_and_ranges() {
        assert_eq!(
            code_and_param::<Set>("name=n&payload=p&scope[type]=account&expires_at=soon"),
            (Some("parameter_invalid_integer"), Some("expires_at".into()))
        );
        assert_eq!(
            code_and_param::<List>("scope[type]=account&limit=ten"),
            (Some("parameter_invalid_integer"), Some("limit".into()))
        );
        for bad in ["0", "101", "-1", "99999999999999999999"] {
            let (code, param) = code_and_param::<List>(&format!("scope[type]=account&limit={bad}"));
            assert_eq!(param.as_deref(), Some("limit"), "{bad}");
            assert!(
                code == Some("parameter_out_of_range") || code == Some("parameter_invalid_integer")
            );
        }
        let request = run::<List>("scope[type]=account").unwrap();
        assert_eq!(request.limit, 10);
    }

    #[test]
    fn cursors_are_exclusive_and_must_be_ids() {
        let id = SecretId::generate();
        assert_eq!(
            code_and_param::<List>(&format!(
                "scope[type]=account&starting_after={id}&ending_before={id}"
            ))
            .0,
            Some("parameters_exclusive")
        );
        let err = run::<List>("scope[type]=account&starting_after=nope").unwrap_err();
        assert_eq!(
            (err.status().as_u16(), err.code.wire()),
            (404, Some("resource_missing"))
        );
        let request = run::<List>(&format!("scope[type]=account&ending_before={id}")).unwrap();
        assert_eq!(request.cursor, Some(ListCursor::EndingBefore(id)));
    }

    #[test]
    fn expand_names_what_each_operation_can_expand() {
        assert!(
            run::<List>("scope[type]=account&expand[]=data.payload")
                .unwrap()
                .reveal
        );
        assert_eq!(
            code_and_param::<List>("scope[type]=account&expand[]=payload").0,
            Some("parameter_invalid_expand")
        );
        assert_eq!(
            code_and_param::<Find>("name=n&scope[type]=account&expand[]=secrets").0,
            Some("parameter_invalid_expand")
        );
        assert!(
            !run::<Find>("name=n&scope[type]=account&expand[]=scope")
                .unwrap()
                .reveal
        );
        assert!(
            run::<Delete>("name=n&scope[type]=account&expand[]=payload")
                .unwrap()
                .reveal
        );
    }
}
