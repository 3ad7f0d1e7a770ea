//! What `secretstore secrets` reads besides its flags: the payload, from standard input or a
//! file and never from the command line (where `ps` shows it to every user of the machine), and
//! `--expires-at`, as Unix seconds or a duration from now such as `30d`.

use std::io::{IsTerminal as _, Read};
use std::path::Path;

use zeroize::Zeroizing;

/// Far more than the largest payload the API takes (5,000 four-byte characters); reading stops
/// here instead of filling memory from a mistaken pipe.
const MAX_PAYLOAD_BYTES: u64 = 64 * 1024;

/// Reads the payload from `file` (`-` or none: standard input) into memory that is wiped after
/// use, and removes one trailing newline (an editor's, or `echo`'s). Refuses an empty payload.
pub fn read_payload(file: Option<&Path>) -> Result<Zeroizing<String>, String> {
    // Sized up front so reading never reallocates and leaves copies of the payload behind.
    let mut raw = Zeroizing::new(Vec::with_capacity(MAX_PAYLOAD_BYTES as usize + 1));
    let source = match file {
        Some(path) if path != Path::new("-") => {
            let file = std::fs::File::open(path)
                .map_err(|err| format!("cannot read the payload file {}: {err}", path.display()))?;
            file.take(MAX_PAYLOAD_BYTES + 1)
                .read_to_end(&mut raw)
                .map_err(|err| format!("cannot read the payload file {}: {err}", path.display()))?;
            format!("the payload file {}", path.display())
        }
        _ if std::io::stdin().is_terminal() => {
            // Typed at a terminal: read one line without echo, so the secret never shows on
            // screen or in scrollback.
            let typed = Zeroizing::new(
                rpassword::prompt_password("Payload (typing is hidden; or pipe it in): ")
                    .map_err(|err| format!("cannot read the payload from the terminal: {err}"))?,
            );
            raw.extend_from_slice(typed.as_bytes());
            "the terminal".to_owned()
        }
        _ => {
            let stdin = std::io::stdin();
            stdin
                .lock()
                .take(MAX_PAYLOAD_BYTES + 1)
                .read_to_end(&mut raw)
                .map_err(|err| format!("cannot read the payload from standard input: {err}"))?;
            "standard input".to_owned()
        }
    };
    if raw.len() as u64 > MAX_PAYLOAD_BYTES {
        return Err(format!(
            "the payload from {source} is larger than {MAX_PAYLOAD_BYTES} bytes; a payload is at \
             most 5,000 characters"
        ));
    }
    let mut payload = match String::from_utf8(std::mem::take(&mut *raw)) {
        Ok(text) => Zeroizing::new(text),
        Err(err) => {
            drop(Zeroizing::new(err.into_bytes()));
            return Err(format!("the payload from {source} is not UTF-8 text"));
        }
    };
    strip_one_newline(&mut payload);
    if payload.is_empty() {
        return Err(format!(
            "the payload from {source} is empty; pipe it in (printf %s \"$TOKEN\" | secretstore \
             secrets set NAME) or give --payload-file PATH"
        ));
    }
    Ok(payload)
}

fn strip_one_newline(text: &mut String) {
    if text.ends_with("\r\n") {
        text.truncate(text.len() - 2);
    } else if text.ends_with('\n') {
        text.truncate(text.len() - 1);
    }
}

/// `--expires-at`: a moment, or a time from now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// Unix seconds.
    At(i64),
    /// Seconds from now.
    In(i64),
}

impl Expiry {
    /// Unix seconds, given the time now.
    pub fn resolve(self, now: i64) -> i64 {
        match self {
            Expiry::At(at) => at,
            Expiry::In(seconds) => now.saturating_add(seconds),
        }
    }
}

/// Parses Unix seconds (`1767225600`) or a duration made of numbers with units `w`, `d`, `h`,
/// `m`, `s` (`30d`, `12h`, `1h30m`, `3600s`).
pub fn parse_expiry(text: &str) -> Result<Expiry, String> {
    let invalid = || {
        format!(
            "{text:?} is neither Unix seconds (such as 1767225600) nor a duration from now \
             (such as 30d, 12h, 15m, 3600s or 1h30m)"
        )
    };
    let text = text.trim();
    if text.is_empty() {
        return Err(invalid());
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().map(Expiry::At).map_err(|_| invalid());
    }
    let mut total: i64 = 0;
    let mut digits = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit: i64 = match c {
            'w' => 7 * 86_400,
            'd' => 86_400,
            'h' => 3_600,
            'm' => 60,
            's' => 1,
            _ => return Err(invalid()),
        };
        let count: i64 = digits.parse().map_err(|_| invalid())?;
        digits.clear();
        total = count
            .checked_mul(unit)
            .and_then(|part| total.checked_add(part))
            .ok_or_else(invalid)?;
    }
    if !digits.is_empty() {
        // A trailing number without a unit ("1h30") is ambiguous.
        return Err(invalid());
    }
    Ok(Expiry::In(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_takes_unix_seconds_and_durations() {
        assert_eq!(parse_expiry("1767225600"), Ok(Expiry::At(1_767_225_600)));
        assert_eq!(parse_expiry("30d"), Ok(Expiry::In(30 * 86_400)));
        assert_eq!(parse_expiry("12h"), Ok(Expiry::In(12 * 3_600)));
        assert_eq!(parse_expiry("15m"), Ok(Expiry::In(900)));
        assert_eq!(parse_expiry("3600s"), Ok(Expiry::In(3_600)));
        assert_eq!(parse_expiry("1w2d"), Ok(Expiry::In(9 * 86_400)));
        assert_eq!(parse_expiry("1h30m"), Ok(Expiry::In(5_400)));
        for bad in [
            "",
            "d",
            "30x",
            "1h30",
            "-5",
            "1.5h",
            "99999999999999999999d",
        ] {
            assert!(parse_expiry(bad).is_err(), "{bad}");
        }
        assert_eq!(Expiry::In(60).resolve(1_000), 1_060);
        assert_eq!(Expiry::At(5).resolve(1_000), 5);
    }

    #[test]
    fn one_trailing_newline_is_removed() {
        for (input, output) in [
            ("a\n", "a"),
            ("a\r\n", "a"),
            ("a\n\n", "a\n"),
            ("a", "a"),
            ("\n", ""),
        ] {
            let mut text = input.to_owned();
            strip_one_newline(&mut text);
            assert_eq!(text, output, "{input:?}");
        }
    }
}
