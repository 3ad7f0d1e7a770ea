//! The API key, held so that it cannot leak by accident: wiped from memory when dropped, and
//! shown only masked (`sk_test_****abcd`, as Stripe shows keys) in `Debug` output, so a client
//! printed into a log or an error message never carries it.

use std::fmt;

use zeroize::Zeroizing;

/// A Stripe or secretstore API key (`sk_test_...`, `sk_live_...`, `rk_test_...`, `rk_live_...`).
#[derive(Clone)]
pub struct ApiKey(Zeroizing<String>);

impl ApiKey {
    /// Wraps a key.
    pub fn new(key: impl Into<String>) -> Self {
        ApiKey(Zeroizing::new(key.into()))
    }

    /// The whole key, for the `Authorization` header. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The key's prefix, `****` and its last four characters (`sk_test_****abcd`); keys too
    /// short to spare four characters show only the prefix.
    pub fn masked(&self) -> String {
        mask(&self.0)
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKey({})", self.masked())
    }
}

impl From<String> for ApiKey {
    fn from(key: String) -> Self {
        ApiKey::new(key)
    }
}

impl From<&str> for ApiKey {
    fn from(key: &str) -> Self {
        ApiKey::new(key)
    }
}

impl From<Zeroizing<String>> for ApiKey {
    fn from(key: Zeroizing<String>) -> Self {
        ApiKey(key)
    }
}

const PREFIXES: [&str; 4] = ["sk_test_", "sk_live_", "rk_test_", "rk_live_"];

fn mask(key: &str) -> String {
    let (prefix, rest) = match PREFIXES.iter().find(|p| key.starts_with(*p)) {
        Some(prefix) => (*prefix, &key[prefix.len()..]),
        None => ("", key),
    };
    let chars: Vec<char> = rest.chars().collect();
    // Show the last four only when at least eight more stay hidden.
    if chars.len() >= 12 && chars.iter().all(char::is_ascii_graphic) {
        let tail: String = chars[chars.len() - 4..].iter().collect();
        format!("{prefix}****{tail}")
    } else {
        format!("{prefix}****")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_masked_like_stripe_does() {
        assert_eq!(
            ApiKey::new("sk_test_4eC39HqLyjWDarjtT1zdp7dc").masked(),
            "sk_test_****p7dc"
        );
        assert_eq!(ApiKey::new("sk_test_short").masked(), "sk_test_****");
        assert_eq!(ApiKey::new("whatever-this-is-0123").masked(), "****0123");
        let debug = format!("{:?}", ApiKey::new("rk_live_0123456789abcdef"));
        assert_eq!(debug, "ApiKey(rk_live_****cdef)");
    }
}
