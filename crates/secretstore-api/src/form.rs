//! The decoder for Stripe's wire format: `application/x-www-form-urlencoded` bodies and query
//! strings whose keys nest with brackets (`scope[type]=user`, raw or percent-encoded) and whose
//! arrays come indexed from the SDKs (`expand[0]=payload`) or bare from curl (`expand[]=payload`).
//!
//! It builds a small tree and nothing more; which parameters an operation accepts is decided in
//! `params`. The decoder bounds everything a client controls (pairs, depth, array length) so a
//! hostile body costs at most a linear pass over bytes the body limit already capped.
//!
//! A value may be a payload, so every decoded value is `Text`, wiped when dropped, and is
//! decoded into one buffer of its final size: a buffer outgrown on the way would be freed
//! holding what it held.
//!
//! We decode by hand rather than with serde_qs: Stripe's errors must name the offending parameter
//! in its wire form (`scope[user]`), refuse unknown parameters precisely, accept both array
//! forms, and report non-UTF-8 input as a client error, none of which serde_qs's errors allow.

use std::borrow::Cow;
use std::collections::BTreeMap;

use zeroize::Zeroizing;

use crate::error::shorten;

/// Most `key=value` pairs one request may carry (query and body together).
pub const MAX_PAIRS: usize = 256;
/// Deepest nesting of brackets (`a[b][c]` is depth 2).
pub const MAX_DEPTH: usize = 4;
/// Most items one array may hold.
pub const MAX_ARRAY_ITEMS: usize = 64;

/// A decoded value's text: it may be a payload, so its memory is wiped when it is dropped.
pub type Text = Zeroizing<String>;

/// A decoded value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Text(Text),
    Map(BTreeMap<String, Node>),
    /// Items in the order given; an indexed item (`[3]`) carries its index so later pairs with
    /// the same index land in the same item.
    List(Vec<(Option<u64>, Node)>),
}

impl Node {
    fn kind(&self) -> &'static str {
        match self {
            Node::Text(_) => "a string",
            Node::Map(_) => "an object",
            Node::List(_) => "an array",
        }
    }
}

/// Why a body or query string could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormError {
    TooManyPairs,
    TooDeep {
        param: String,
    },
    TooManyItems {
        param: String,
    },
    NotUtf8,
    /// A pair with no name (`=value`).
    EmptyName,
    /// One parameter given twice with different values, or as two different shapes.
    Conflict {
        param: String,
        detail: String,
    },
}

impl FormError {
    pub fn message(&self) -> String {
        match self {
            FormError::TooManyPairs => {
                format!("Too many parameters: a request may carry at most {MAX_PAIRS}.")
            }
            FormError::TooDeep { param } => format!(
                "Parameter {param} is nested too deeply: at most {MAX_DEPTH} levels of brackets."
            ),
            FormError::TooManyItems { param } => {
                format!("Too many items in {param}: an array may hold at most {MAX_ARRAY_ITEMS}.")
            }
            FormError::NotUtf8 => {
                "The request's parameters are not valid UTF-8 once percent-decoded.".to_owned()
            }
            FormError::Conflict { param, detail } => format!("Invalid {param}: {detail}."),
            FormError::EmptyName => "A parameter without a name was sent (a pair such as \
                                     `=value`); remove it."
                .to_owned(),
        }
    }

    pub fn param(&self) -> Option<&str> {
        match self {
            FormError::TooDeep { param }
            | FormError::TooManyItems { param }
            | FormError::Conflict { param, .. } => Some(param),
            FormError::TooManyPairs | FormError::NotUtf8 | FormError::EmptyName => None,
        }
    }
}

/// The decoded parameters of one request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Form {
    pub root: BTreeMap<String, Node>,
    /// Every decoded pair in wire order, for the idempotency fingerprint; left empty when
    /// `skip_pairs` is set.
    pub pairs: Vec<(String, Text)>,
    /// Set for a request without an `Idempotency-Key`, which has no fingerprint: keeping its
    /// pairs would copy each value (payloads included) for nothing.
    skip_pairs: bool,
    /// Pairs decoded so far, bounded by `MAX_PAIRS`.
    count: usize,
}

/// The value of an ASCII hex digit.
fn hex_digit(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// Whether a key or value has anything to decode.
fn has_escapes(raw: &[u8]) -> bool {
    raw.iter().any(|&b| b == b'%' || b == b'+')
}

/// One key or value, decoded: `+` is a space, `%XX` the byte XX, a `%` not followed by two hex
/// digits itself. Decoding never lengthens, so one buffer of the encoded length holds the
/// result and no outgrown copy is left behind; it is wiped if the text is not UTF-8.
fn decode_component(raw: &[u8]) -> Result<Text, FormError> {
    // Most components (names, scope types, SDK-encoded tokens) have nothing to decode: checked
    // first, they are copied once into a buffer of their exact size, with no byte-by-byte pass.
    if !has_escapes(raw) {
        return match std::str::from_utf8(raw) {
            Ok(text) => Ok(Zeroizing::new(text.to_owned())),
            Err(_) => Err(FormError::NotUtf8),
        };
    }
    let mut bytes = Zeroizing::new(Vec::with_capacity(raw.len()));
    let mut rest = raw;
    while let Some((&byte, tail)) = rest.split_first() {
        let escaped = match (byte, tail) {
            (b'%', [high, low, ..]) => hex_digit(*high).zip(hex_digit(*low)),
            _ => None,
        };
        match escaped {
            Some((high, low)) => {
                bytes.push(high << 4 | low);
                rest = &tail[2..];
            }
            None => {
                bytes.push(if byte == b'+' { b' ' } else { byte });
                rest = tail;
            }
        }
    }
    match String::from_utf8(std::mem::take(&mut *bytes)) {
        Ok(text) => Ok(Zeroizing::new(text)),
        Err(err) => {
            drop(Zeroizing::new(err.into_bytes()));
            Err(FormError::NotUtf8)
        }
    }
}

/// One step of a key's path.
#[derive(Debug, PartialEq, Eq)]
enum Segment<'a> {
    Name(&'a str),
    /// `[]`: a new array item.
    Append,
    /// `[N]`: the array item with index N.
    Index(u64),
}

/// Splits `scope[type]` into `scope`, `[type]`. A key whose brackets don't follow the grammar is
/// one flat name (and so, in practice, an unknown parameter).
fn split_key(key: &str) -> (&str, Vec<Segment<'_>>) {
    let Some(open) = key.find('[') else {
        return (key, Vec::new());
    };
    if open == 0 {
        return (key, Vec::new());
    }
    let (base, mut rest) = key.split_at(open);
    let mut segments = Vec::new();
    while !rest.is_empty() {
        let Some(inner) = rest.strip_prefix('[') else {
            return (key, Vec::new());
        };
        let Some(close) = inner.find(']') else {
            return (key, Vec::new());
        };
        let name = &inner[..close];
        if name.contains('[') {
            return (key, Vec::new());
        }
        segments.push(if name.is_empty() {
            Segment::Append
        } else if name.len() <= 9 && name.bytes().all(|b| b.is_ascii_digit()) {
            Segment::Index(name.parse().unwrap_or(0))
        } else {
            Segment::Name(name)
        });
        rest = &inner[close + 1..];
    }
    (base, segments)
}

impl Form {
    /// An empty form that will keep its pairs only if `keep_pairs` (see `skip_pairs`).
    pub fn new(keep_pairs: bool) -> Self {
        Self {
            skip_pairs: !keep_pairs,
            ..Self::default()
        }
    }

    /// Adds every pair of a query string or urlencoded body.
    pub fn extend_from(&mut self, raw: &[u8]) -> Result<(), FormError> {
        for pair in raw.split(|&b| b == b'&') {
            if pair.is_empty() {
                continue;
            }
            self.count += 1;
            if self.count > MAX_PAIRS {
                return Err(FormError::TooManyPairs);
            }
            let (key, value) = match pair.iter().position(|&b| b == b'=') {
                Some(eq) => (&pair[..eq], &pair[eq + 1..]),
                None => (pair, &b""[..]),
            };
            // A name is not secret (the contract's names are fixed words): it is read where it
            // lies when it has nothing to decode, and otherwise leaves the wiped buffer it was
            // decoded into for a plain string.
            let key = if has_escapes(key) {
                Cow::Owned(std::mem::take(&mut *decode_component(key)?))
            } else {
                Cow::Borrowed(std::str::from_utf8(key).map_err(|_| FormError::NotUtf8)?)
            };
            if key.is_empty() {
                return Err(FormError::EmptyName);
            }
            let value = decode_component(value)?;
            if self.skip_pairs {
                self.insert(&key, value)?;
            } else {
                self.insert(&key, value.clone())?;
                self.pairs.push((key.into_owned(), value));
            }
        }
        Ok(())
    }

    pub fn parse(raw: &[u8]) -> Result<Self, FormError> {
        let mut form = Self::default();
        form.extend_from(raw)?;
        Ok(form)
    }

    fn insert(&mut self, key: &str, value: Text) -> Result<(), FormError> {
        let (base, segments) = split_key(key);
        if segments.len() > MAX_DEPTH {
            return Err(FormError::TooDeep {
                param: shorten(base),
            });
        }
        // Looked up before inserting, so that a name already present (every pair after the
        // first of `scope[...]` or `expand[]`) costs no allocation.
        if !self.root.contains_key(base) {
            self.root
                .insert(base.to_owned(), empty_for(segments.first()));
        }
        let mut node: &mut Node = self.root.get_mut(base).expect("just inserted");
        for (i, segment) in segments.iter().enumerate() {
            let next = empty_for(segments.get(i + 1));
            node = match (segment, node) {
                (Segment::Name(name), Node::Map(map)) => {
                    if !map.contains_key(*name) {
                        map.insert((*name).to_owned(), next);
                    }
                    map.get_mut(*name).expect("just inserted")
                }
                (Segment::Append, Node::List(items)) => {
                    if items.len() >= MAX_ARRAY_ITEMS {
                        return Err(FormError::TooManyItems {
                            param: shorten(base),
                        });
                    }
                    items.push((None, next));
                    &mut items.last_mut().expect("just pushed").1
                }
                (Segment::Index(index), Node::List(items)) => {
                    match items.iter().position(|(i, _)| *i == Some(*index)) {
                        Some(at) => &mut items[at].1,
                        None => {
                            if items.len() >= MAX_ARRAY_ITEMS {
                                return Err(FormError::TooManyItems {
                                    param: shorten(base),
                                });
                            }
                            items.push((Some(*index), next));
                            &mut items.last_mut().expect("just pushed").1
                        }
                    }
                }
                (_, other) => {
                    return Err(FormError::Conflict {
                        param: shorten(&wire(base, &segments[..i])),
                        detail: format!("given both as {} and with brackets", other.kind()),
                    })
                }
            };
        }
        match node {
            Node::Text(existing) if existing.is_empty() || *existing == value => {
                *existing = value;
                Ok(())
            }
            Node::Text(_) => Err(FormError::Conflict {
                param: shorten(&wire(base, &segments)),
                detail: "given more than once with different values".to_owned(),
            }),
            other => Err(FormError::Conflict {
                param: shorten(&wire(base, &segments)),
                detail: format!("given both as {} and as a string", other.kind()),
            }),
        }
    }
}

/// A key's path in wire form (`scope[user]`, `expand[]`, `expand[3]`), for an error message;
/// built only when there is one.
fn wire(base: &str, segments: &[Segment<'_>]) -> String {
    let mut wire = base.to_owned();
    for segment in segments {
        match segment {
            Segment::Name(name) => {
                wire.push('[');
                wire.push_str(name);
                wire.push(']');
            }
            Segment::Append => wire.push_str("[]"),
            Segment::Index(index) => wire.push_str(&format!("[{index}]")),
        }
    }
    wire
}

fn empty_for(segment: Option<&Segment<'_>>) -> Node {
    match segment {
        None => Node::Text(Text::default()),
        Some(Segment::Name(_)) => Node::Map(BTreeMap::new()),
        Some(Segment::Append | Segment::Index(_)) => Node::List(Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn text(s: &str) -> Node {
        Node::Text(Zeroizing::new(s.to_owned()))
    }

    fn map(items: &[(&str, Node)]) -> Node {
        Node::Map(
            items
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
        )
    }

    #[test]
    fn flat_pairs_with_plus_and_percent_escapes() {
        let form = Form::parse(b"name=my+key&payload=a%26b%3Dc%20d").unwrap();
        assert_eq!(form.root["name"], text("my key"));
        assert_eq!(form.root["payload"], text("a&b=c d"));
        assert_eq!(form.pairs.len(), 2);
    }

    #[test]
    fn brackets_raw_and_percent_encoded_give_the_same_tree() {
        let raw = Form::parse(b"scope[type]=user&scope[user]=usr_1").unwrap();
        let encoded = Form::parse(b"scope%5Btype%5D=user&scope%5buser%5d=usr_1").unwrap();
        assert_eq!(raw.root, encoded.root);
        assert_eq!(
            raw.root["scope"],
            map(&[("type", text("user")), ("user", text("usr_1"))])
        );
    }

    #[test]
    fn arrays_bare_and_indexed() {
        let bare = Form::parse(b"expand[]=payload&expand[]=scope").unwrap();
        assert_eq!(
            bare.root["expand"],
            Node::List(vec![(None, text("payload")), (None, text("scope"))])
        );
        let indexed = Form::parse(b"expand%5B0%5D=payload&expand[1]=scope").unwrap();
        assert_eq!(
            indexed.root["expand"],
            Node::List(vec![(Some(0), text("payload")), (Some(1), text("scope"))])
        );
    }

    #[test]
    fn indexed_items_of_objects_merge() {
        let form = Form::parse(b"items[0][a]=1&items[0][b]=2&items[1][a]=3").unwrap();
        let Node::List(items) = &form.root["items"] else {
            panic!("not a list")
        };
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].1, map(&[("a", text("1")), ("b", text("2"))]));
    }

    #[test]
    fn malformed_brackets_are_one_flat_name() {
        for key in ["scope[type", "scope]type[", "scope[a]b", "[x]", "a[b[c]]"] {
            let form = Form::parse(format!("{key}=v").as_bytes()).unwrap();
            assert_eq!(form.root.get(key), Some(&text("v")), "{key}");
        }
    }

    #[test]
    fn empty_pairs_and_missing_equals_are_tolerated() {
        let form = Form::parse(b"&&name&payload=&").unwrap();
        assert_eq!(form.root["name"], text(""));
        assert_eq!(form.root["payload"], text(""));
    }

    #[test]
    fn same_value_twice_is_fine_different_values_conflict() {
        assert!(Form::parse(b"name=a&name=a").is_ok());
        let err = Form::parse(b"name=a&name=b").unwrap_err();
        assert_eq!(err.param(), Some("name"));
        let err = Form::parse(b"scope=account&scope[type]=account").unwrap_err();
        assert_eq!(err.param(), Some("scope"));
        let err = Form::parse(b"scope[type]=account&scope=account").unwrap_err();
        assert_eq!(err.param(), Some("scope"));
        let err = Form::parse(b"expand[]=a&expand[x]=b").unwrap_err();
        assert_eq!(err.param(), Some("expand"));
    }

    #[test]
    fn limits_on_pairs_depth_and_items() {
        let many = "a=1&".repeat(MAX_PAIRS + 1);
        assert_eq!(Form::parse(many.as_bytes()), Err(FormError::TooManyPairs));
        let deep = format!("a{}=1", "[b]".repeat(MAX_DEPTH + 1));
        assert!(matches!(
            Form::parse(deep.as_bytes()),
            Err(FormError::TooDeep { .. })
        ));
        let items = "expand[]=x&".repeat(MAX_ARRAY_ITEMS + 1);
        assert!(matches!(
            Form::parse(items.as_bytes()),
            Err(FormError::TooManyItems { .. })
        ));
        let indexed: String = (0..=MAX_ARRAY_ITEMS)
            .map(|i| format!("expand[{i}]=x&"))
            .collect();
        assert!(matches!(
            Form::parse(indexed.as_bytes()),
            Err(FormError::TooManyItems { .. })
        ));
    }

    #[test]
    fn a_pair_without_a_name_is_refused() {
        assert_eq!(Form::parse(b"=null"), Err(FormError::EmptyName));
        assert_eq!(Form::parse(b"name=a&=b"), Err(FormError::EmptyName));
    }

    #[test]
    fn names_in_errors_are_cut_short() {
        let long = "k".repeat(6000);
        let err = Form::parse(format!("{long}[a][b][c][d][e]=1").as_bytes()).unwrap_err();
        assert!(err.param().unwrap().len() < 300);
        assert!(err.message().len() < 500);
        let err = Form::parse(format!("{long}=1&{long}=2").as_bytes()).unwrap_err();
        assert!(err.param().unwrap().len() < 300);
    }

    #[test]
    fn invalid_utf8_is_an_error_not_a_replacement() {
        assert_eq!(Form::parse(b"name=%FF%FE"), Err(FormError::NotUtf8));
        assert_eq!(Form::parse(b"na%C3me=x"), Err(FormError::NotUtf8));
    }

    #[test]
    fn multibyte_text_round_trips() {
        let form = Form::parse("name=%F0%9F%98%80%C3%A9".as_bytes()).unwrap();
        assert_eq!(form.root["name"], text("😀é"));
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Form::parse(&bytes);
        }

        /// A form that does not keep its pairs (no `Idempotency-Key`) decodes what one that
        /// keeps them does, refuses what it refuses, and keeps no pair.
        #[test]
        fn skipping_the_pairs_changes_nothing_else(
            pairs in proptest::collection::vec(
                ("[a-z]{1,3}(\\[[a-z0-9]{0,2}\\]){0,2}|%5B|x%2By|\\+", "[a-z%+0-9A-F\\x80-\\xff]{0,8}"),
                0..12,
            ),
        ) {
            let raw = pairs
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("&");
            let mut kept = Form::new(true);
            let mut skipped = Form::new(false);
            let kept_result = kept.extend_from(raw.as_bytes());
            prop_assert_eq!(&kept_result, &skipped.extend_from(raw.as_bytes()));
            prop_assert_eq!(&kept.root, &skipped.root);
            prop_assert!(skipped.pairs.is_empty());
            if kept_result.is_ok() {
                prop_assert_eq!(kept.pairs.len(), pairs.len());
            }
        }

        #[test]
        fn any_encoded_value_decodes_back(value in "\\PC{0,64}") {
            let encoded: String = form_urlencoded::byte_serialize(value.as_bytes()).collect();
            let form = Form::parse(format!("name={encoded}").as_bytes()).unwrap();
            prop_assert_eq!(&form.root["name"], &Node::Text(Zeroizing::new(value)));
        }

        #[test]
        fn decodes_as_the_url_standard_does(raw in "[a-z%+0-9A-F\\x80-\\xff]{0,48}") {
            // form_urlencoded is the WHATWG URL standard's decoder; where the result is UTF-8
            // the two agree byte for byte.
            if let Ok(ours) = decode_component(raw.as_bytes()) {
                let theirs: Vec<(String, String)> = form_urlencoded::parse(format!("k={raw}").as_bytes())
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect();
                prop_assert_eq!(ours.as_str(), theirs[0].1.as_str());
            }
        }

        #[test]
        fn bracket_keys_never_panic(key in "[a-z\\[\\]0-9]{0,24}") {
            let _ = Form::parse(format!("{key}=v").as_bytes());
        }
    }
}
