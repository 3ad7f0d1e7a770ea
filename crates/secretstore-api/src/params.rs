//! Each operation's parameters, taken from the decoded form and turned into domain requests.
//! Every rule of CONTRACT §3 is enforced here, with Stripe's error for each: a parameter the
//! operation does not define is `parameter_unknown`, a required one absent is
//! `parameter_missing`, and so on. Checks run in a fixed order (shape, unknown names, required
//! names, values) so the same bad request always gets the same answer.

use std::collections::BTreeMap;

use secretstore_core::limits::{
    DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT, MAX_STRING_CHARS, MIN_LIST_LIMIT,
};
use secretstore_core::{
    ListCursor, ListRequest, Namespace, Payload, Scope, SecretId, SecretKey, SecretName,
    SetRequest, UserId,
};

use crate::error::ApiError;
use crate::form::Node;

/// The four operations of the Secret Store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Set,
    Find,
    Delete,
    List,
}

impl Operation {
    pub fn writes(self) -> bool {
        matches!(self, Operation::Set | Operation::Delete)
    }

    /// What `expand[]` may name: the object's own fields, or the list's items' fields.
    fn expandable(self) -> (&'static str, &'static str) {
        match self {
            Operation::List => ("data.payload", "data.scope"),
            _ => ("payload", "scope"),
        }
    }
}

/// A request ready for the service.
#[derive(Debug)]
pub enum Parsed {
    Set { request: SetRequest, reveal: bool },
    Find { key: SecretKey, reveal: bool },
    Delete { key: SecretKey, reveal: bool },
    List { request: ListRequest, reveal: bool },
}

/// `scope[type]` and `scope[user]` as given, before they are checked.
struct ScopeGiven {
    kind: Option<String>,
    user: Option<String>,
}

/// Removes parameters from the form as they are recognised; whatever is left is unknown.
struct Taker {
    root: BTreeMap<String, Node>,
}

fn expected_string(param: &str) -> ApiError {
    ApiError::invalid(
        "parameter_invalid",
        format!("Invalid {param}: expected a string."),
    )
    .with_param(param)
}

impl Taker {
    fn text(&mut self, name: &str) -> Result<Option<String>, ApiError> {
        match self.root.remove(name) {
            None => Ok(None),
            Some(Node::Text(text)) => Ok(Some(text)),
            Some(_) => Err(expected_string(name)),
        }
    }

    /// `scope[type]` and `scope[user]`, as given.
    fn scope(&mut self) -> Result<Option<ScopeGiven>, ApiError> {
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
                "parameter_invalid",
                "Invalid scope: expected an object, as in scope[type]=account or \
                 scope[type]=user&scope[user]=usr_..."
                    .to_owned(),
            )
            .with_param("scope")),
        }
    }

    fn expand(&mut self) -> Result<Vec<String>, ApiError> {
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
                "parameter_invalid",
                "Invalid expand: expected an array, as in expand[]=payload.".to_owned(),
            )
            .with_param("expand")),
        }
    }

    /// Refuses the first parameter nobody took, in its wire form.
    fn finish(self) -> Result<(), ApiError> {
        match self.root.into_iter().next() {
            None => Ok(()),
            Some((name, node)) => Err(ApiError::unknown(&wire_name(&name, &node))),
        }
    }
}

fn take_map_text(map: &mut BTreeMap<String, Node>, key: &str) -> Result<Option<String>, ApiError> {
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

fn required(value: Option<String>, param: &str) -> Result<String, ApiError> {
    value.ok_or_else(|| ApiError::missing(param))
}

/// An optional parameter given as an empty string is treated as not given (Stripe's "unset").
fn optional(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.is_empty())
}

fn check_length(value: &str, param: &str) -> Result<(), ApiError> {
    if value.len() > MAX_STRING_CHARS && value.chars().count() > MAX_STRING_CHARS {
        return Err(ApiError::invalid_value(
            param,
            secretstore_core::InvalidValue::TooLong {
                max: MAX_STRING_CHARS,
            },
        ));
    }
    Ok(())
}

fn parse_scope(given: Option<ScopeGiven>) -> Result<Scope, ApiError> {
    let ScopeGiven { kind, user } = given.ok_or_else(|| ApiError::missing("scope"))?;
    let kind = required(kind, "scope[type]")?;
    match kind.as_str() {
        "account" => match user {
            None => Ok(Scope::Account),
            Some(_) => Err(ApiError::invalid(
                "parameter_unknown",
                "Received unknown parameter: scope[user] (scope[user] is only allowed when \
                 scope[type] is user)"
                    .to_owned(),
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
            check_length(&kind, "scope[type]")?;
            Err(ApiError::invalid(
                "parameter_invalid_enum",
                "Invalid scope[type]: must be one of account or user.".to_owned(),
            )
            .with_param("scope[type]"))
        }
    }
}

fn parse_integer(value: &str, param: &str) -> Result<i64, ApiError> {
    value
        .parse::<i64>()
        .map_err(|_| ApiError::not_integer(param, value))
}

/// Whether `expand` asks for the payload; anything it may not name is refused.
fn parse_expand(items: Vec<String>, operation: Operation) -> Result<bool, ApiError> {
    let (payload, scope) = operation.expandable();
    let mut reveal = false;
    for item in items {
        check_length(&item, "expand")?;
        if item == payload {
            reveal = true;
        } else if item != scope {
            let shown: String = item.chars().take(100).collect();
            return Err(ApiError::invalid(
                "parameter_invalid_expand",
                format!(
                    "This property cannot be expanded ({shown}). This operation can expand \
                     {payload} and {scope}."
                ),
            )
            .with_param("expand"));
        }
    }
    Ok(reveal)
}

fn secret_key(
    namespace: &Namespace,
    scope: Scope,
    name: Option<String>,
) -> Result<SecretKey, ApiError> {
    let name = required(name, "name")?;
    let name = SecretName::parse(&name).map_err(|p| ApiError::invalid_value("name", p))?;
    Ok(SecretKey {
        namespace: namespace.clone(),
        scope,
        name,
    })
}

fn parse_cursor(value: Option<String>, param: &str) -> Result<Option<SecretId>, ApiError> {
    let Some(value) = optional(value) else {
        return Ok(None);
    };
    check_length(&value, param)?;
    // An id this server could never have issued names no secret.
    SecretId::parse(&value)
        .map(Some)
        .map_err(|_| ApiError::not_found(param, &value))
}

/// Takes one operation's parameters out of the form.
pub fn parse(
    operation: Operation,
    root: BTreeMap<String, Node>,
    namespace: &Namespace,
) -> Result<Parsed, ApiError> {
    let mut taker = Taker { root };
    let expand = taker.expand()?;
    let scope = taker.scope()?;
    match operation {
        Operation::Set => {
            let name = taker.text("name")?;
            let payload = taker.text("payload")?;
            let expires_at = taker.text("expires_at")?;
            taker.finish()?;
            let name_given = required(name, "name")?;
            let payload = required(payload, "payload")?;
            let scope = parse_scope(scope)?;
            let key = secret_key(namespace, scope, Some(name_given))?;
            let payload =
                Payload::parse(&payload).map_err(|p| ApiError::invalid_value("payload", p))?;
            let expires_at = optional(expires_at)
                .map(|v| parse_integer(&v, "expires_at"))
                .transpose()?;
            let reveal = parse_expand(expand, operation)?;
            Ok(Parsed::Set {
                request: SetRequest {
                    key,
                    payload,
                    expires_at,
                },
                reveal,
            })
        }
        Operation::Find | Operation::Delete => {
            let name = taker.text("name")?;
            taker.finish()?;
            let name = Some(required(name, "name")?);
            let key = secret_key(namespace, parse_scope(scope)?, name)?;
            let reveal = parse_expand(expand, operation)?;
            Ok(if operation == Operation::Find {
                Parsed::Find { key, reveal }
            } else {
                Parsed::Delete { key, reveal }
            })
        }
        Operation::List => {
            let limit = taker.text("limit")?;
            let starting_after = taker.text("starting_after")?;
            let ending_before = taker.text("ending_before")?;
            taker.finish()?;
            let scope = parse_scope(scope)?;
            let limit = match optional(limit) {
                None => DEFAULT_LIST_LIMIT,
                Some(v) => {
                    let n = parse_integer(&v, "limit")?;
                    if !(i64::from(MIN_LIST_LIMIT)..=i64::from(MAX_LIST_LIMIT)).contains(&n) {
                        return Err(ApiError::out_of_range(
                            "limit",
                            format!(
                                "Invalid limit: must be between {MIN_LIST_LIMIT} and \
                                 {MAX_LIST_LIMIT}."
                            ),
                        ));
                    }
                    n as u32
                }
            };
            if optional(starting_after.clone()).is_some()
                && optional(ending_before.clone()).is_some()
            {
                return Err(ApiError::invalid(
                    "parameters_exclusive",
                    "You may only specify one of these parameters: ending_before, \
                     starting_after."
                        .to_owned(),
                )
                .with_param("ending_before"));
            }
            let cursor = match parse_cursor(starting_after, "starting_after")? {
                Some(id) => Some(ListCursor::StartingAfter(id)),
                None => parse_cursor(ending_before, "ending_before")?.map(ListCursor::EndingBefore),
            };
            let reveal = parse_expand(expand, operation)?;
            Ok(Parsed::List {
                request: ListRequest {
                    namespace: namespace.clone(),
                    scope,
                    limit,
                    cursor,
                },
                reveal,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::form::Form;
    use secretstore_core::{AccountId, AppId, Mode};

    fn ns() -> Namespace {
        Namespace {
            app: AppId::parse("app").unwrap(),
            account: AccountId::parse("acct_1").unwrap(),
            mode: Mode::Test,
        }
    }

    fn run(op: Operation, raw: &str) -> Result<Parsed, ApiError> {
        parse(op, Form::parse(raw.as_bytes()).unwrap().root, &ns())
    }

    fn code_and_param(op: Operation, raw: &str) -> (Option<&'static str>, Option<String>) {
        let err = run(op, raw).unwrap_err();
        (err.code, err.param)
    }

    #[test]
    fn set_with_every_field() {
        let Parsed::Set { request, reveal } = run(
            Operation::Set,
            "name=n&payload=p&scope[type]=user&scope[user]=usr_1&expires_at=99&expand[0]=payload",
        )
        .unwrap() else {
            panic!("not a set")
        };
        assert!(reveal);
        assert_eq!(request.key.name.as_str(), "n");
        assert_eq!(
            request.key.scope,
            Scope::User(UserId::parse("usr_1").unwrap())
        );
        assert_eq!(request.expires_at, Some(99));
        assert_eq!(request.payload.expose(), "p");
    }

    #[test]
    fn missing_parameters_are_named() {
        let set = Operation::Set;
        assert_eq!(
            code_and_param(set, "payload=p&scope[type]=account"),
            (Some("parameter_missing"), Some("name".into()))
        );
        assert_eq!(
            code_and_param(set, "name=n&scope[type]=account"),
            (Some("parameter_missing"), Some("payload".into()))
        );
        assert_eq!(
            code_and_param(set, "name=n&payload=p"),
            (Some("parameter_missing"), Some("scope".into()))
        );
        assert_eq!(
            code_and_param(set, "name=n&payload=p&scope[user]=u"),
            (Some("parameter_missing"), Some("scope[type]".into()))
        );
        assert_eq!(
            code_and_param(Operation::Find, "name=n&scope[type]=user"),
            (Some("parameter_missing"), Some("scope[user]".into()))
        );
        assert_eq!(
            code_and_param(Operation::List, ""),
            (Some("parameter_missing"), Some("scope".into()))
        );
    }

    #[test]
    fn unknown_parameters_are_refused_in_wire_form() {
        assert_eq!(
            code_and_param(Operation::Find, "name=n&scope[type]=account&foo=1"),
            (Some("parameter_unknown"), Some("foo".into()))
        );
        assert_eq!(
            code_and_param(Operation::Find, "name=n&scope[type]=account&scope[x]=1"),
            (Some("parameter_unknown"), Some("scope[x]".into()))
        );
        assert_eq!(
            code_and_param(Operation::Find, "name=n&scope[type]=account&meta[a][b]=1"),
            (Some("parameter_unknown"), Some("meta[a][b]".into()))
        );
        assert_eq!(
            code_and_param(Operation::Find, "name=n&scope[type]=account&payload=x"),
            (Some("parameter_unknown"), Some("payload".into()))
        );
        assert_eq!(
            code_and_param(Operation::List, "scope[type]=account&name=x"),
            (Some("parameter_unknown"), Some("name".into()))
        );
        assert_eq!(
            code_and_param(Operation::Find, "name=n&scope[type]=account&scope[user]=u"),
            (Some("parameter_unknown"), Some("scope[user]".into()))
        );
    }

    #[test]
    fn empty_and_too_long_strings() {
        assert_eq!(
            code_and_param(Operation::Set, "name=&payload=p&scope[type]=account"),
            (Some("parameter_invalid_string_empty"), Some("name".into()))
        );
        assert_eq!(
            code_and_param(Operation::Set, "name=n&payload=&scope[type]=account"),
            (
                Some("parameter_invalid_string_empty"),
                Some("payload".into())
            )
        );
        assert_eq!(
            code_and_param(Operation::Find, "name=n&scope[type]=user&scope[user]="),
            (
                Some("parameter_invalid_string_empty"),
                Some("scope[user]".into())
            )
        );
        let long = "é".repeat(5001);
        assert_eq!(
            code_and_param(Operation::Find, &format!("name={long}&scope[type]=account")),
            (
                Some("parameter_invalid_string_too_long"),
                Some("name".into())
            )
        );
        let ok = "é".repeat(5000);
        assert!(run(Operation::Find, &format!("name={ok}&scope[type]=account")).is_ok());
    }

    #[test]
    fn scope_type_is_an_enum() {
        assert_eq!(
            code_and_param(Operation::Find, "name=n&scope[type]=team"),
            (Some("parameter_invalid_enum"), Some("scope[type]".into()))
        );
        assert_eq!(
            code_and_param(Operation::Find, "name=n&scope=account"),
            (Some("parameter_invalid"), Some("scope".into()))
        );
    }

    #[test]
    fn integers_and_ranges() {
        assert_eq!(
            code_and_param(
                Operation::Set,
                "name=n&payload=p&scope[type]=account&expires_at=soon"
            ),
            (Some("parameter_invalid_integer"), Some("expires_at".into()))
        );
        assert_eq!(
            code_and_param(Operation::List, "scope[type]=account&limit=ten"),
            (Some("parameter_invalid_integer"), Some("limit".into()))
        );
        for bad in ["0", "101", "-1", "99999999999999999999"] {
            let (code, param) =
                code_and_param(Operation::List, &format!("scope[type]=account&limit={bad}"));
            assert_eq!(param.as_deref(), Some("limit"), "{bad}");
            assert!(
                code == Some("parameter_out_of_range") || code == Some("parameter_invalid_integer")
            );
        }
        let Parsed::List { request, .. } = run(Operation::List, "scope[type]=account").unwrap()
        else {
            panic!()
        };
        assert_eq!(request.limit, 10);
    }

    #[test]
    fn cursors_are_exclusive_and_must_be_ids() {
        let id = SecretId::generate();
        assert_eq!(
            code_and_param(
                Operation::List,
                &format!("scope[type]=account&starting_after={id}&ending_before={id}")
            )
            .0,
            Some("parameters_exclusive")
        );
        let err = run(Operation::List, "scope[type]=account&starting_after=nope").unwrap_err();
        assert_eq!(
            (err.status.as_u16(), err.code),
            (404, Some("resource_missing"))
        );
        let Parsed::List { request, .. } = run(
            Operation::List,
            &format!("scope[type]=account&ending_before={id}"),
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!(request.cursor, Some(ListCursor::EndingBefore(id)));
    }

    #[test]
    fn expand_names_what_each_operation_can_expand() {
        let Parsed::List { reveal, .. } =
            run(Operation::List, "scope[type]=account&expand[]=data.payload").unwrap()
        else {
            panic!()
        };
        assert!(reveal);
        assert_eq!(
            code_and_param(Operation::List, "scope[type]=account&expand[]=payload").0,
            Some("parameter_invalid_expand")
        );
        assert_eq!(
            code_and_param(
                Operation::Find,
                "name=n&scope[type]=account&expand[]=secrets"
            )
            .0,
            Some("parameter_invalid_expand")
        );
        let Parsed::Find { reveal, .. } =
            run(Operation::Find, "name=n&scope[type]=account&expand[]=scope").unwrap()
        else {
            panic!()
        };
        assert!(!reveal);
    }
}
