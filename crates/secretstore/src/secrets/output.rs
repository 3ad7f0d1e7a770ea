//! How `secretstore secrets` shows answers: aligned fields for one secret, a table for a list,
//! or Stripe's JSON with `--json`. A payload appears only when it was asked for (`--reveal`);
//! otherwise the line says how to see it.

use std::io::{self, Write};

use secretstore_client::{Page, Secret};

/// What to say on the payload line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadLine {
    /// No payload line (set and delete: the payload was given, not fetched).
    Omit,
    /// `(hidden; use --reveal)`, or the payload when the secret holds one.
    HiddenUnlessRevealed,
}

pub fn secret(out: &mut impl Write, secret: &Secret, payload: PayloadLine) -> io::Result<()> {
    let mut fields: Vec<(&str, String)> = vec![
        ("id", secret.id.clone()),
        ("name", secret.name.clone()),
        ("scope", secret.scope.to_string()),
        ("created", timestamp(secret.created)),
        (
            "expires_at",
            secret
                .expires_at
                .map_or_else(|| "never".to_owned(), timestamp),
        ),
        ("livemode", secret.livemode.to_string()),
    ];
    if secret.deleted {
        fields.push(("deleted", "true".to_owned()));
    }
    for (label, value) in &fields {
        writeln!(out, "{label:<11} {value}")?;
    }
    if payload == PayloadLine::HiddenUnlessRevealed {
        match &secret.payload {
            Some(payload) => writeln!(out, "{:<11} {}", "payload", payload.expose())?,
            None => writeln!(out, "{:<11} (hidden; use --reveal)", "payload")?,
        }
    }
    Ok(())
}

/// A table of secrets, newest first.
pub fn table(out: &mut impl Write, secrets: &[Secret]) -> io::Result<()> {
    let rows: Vec<[String; 4]> = secrets
        .iter()
        .map(|s| {
            [
                s.name.clone(),
                s.id.clone(),
                timestamp_short(s.created),
                s.expires_at
                    .map_or_else(|| "never".to_owned(), timestamp_short),
            ]
        })
        .collect();
    let header = ["NAME", "ID", "CREATED", "EXPIRES"];
    let mut widths = header.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |out: &mut dyn Write, cells: [&str; 4]| -> io::Result<()> {
        writeln!(
            out,
            "{:<w0$}  {:<w1$}  {:<w2$}  {}",
            cells[0],
            cells[1],
            cells[2],
            cells[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
        )
    };
    line(out, header)?;
    for row in &rows {
        line(out, [&row[0], &row[1], &row[2], &row[3]])?;
    }
    Ok(())
}

pub fn json_secret(out: &mut impl Write, secret: &Secret) -> io::Result<()> {
    // `io::Error::from`, not `other`: it keeps an I/O error's kind (a broken pipe stays one).
    serde_json::to_writer_pretty(&mut *out, secret).map_err(io::Error::from)?;
    writeln!(out)
}

pub fn json_page(out: &mut impl Write, page: &Page) -> io::Result<()> {
    /// Stripe's list object, fields in Stripe's order.
    #[derive(serde::Serialize)]
    struct List<'a> {
        object: &'static str,
        url: &'static str,
        has_more: bool,
        data: &'a [Secret],
    }
    let list = List {
        object: "list",
        url: "/v1/apps/secrets",
        has_more: page.has_more,
        data: &page.data,
    };
    serde_json::to_writer_pretty(&mut *out, &list).map_err(io::Error::from)?;
    writeln!(out)
}

/// `2025-01-31 12:00:00 UTC (1738324800)`.
fn timestamp(unix: i64) -> String {
    format!("{} ({unix})", timestamp_short(unix))
}

/// `2025-01-31 12:00:00 UTC`.
fn timestamp_short(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let seconds = unix.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        seconds / 3_600,
        seconds % 3_600 / 60,
        seconds % 60
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's algorithm),
/// so the binary needs no date library to print a timestamp.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc_dates() {
        assert_eq!(timestamp_short(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(timestamp_short(1_700_000_000), "2023-11-14 22:13:20 UTC");
        assert_eq!(timestamp_short(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(timestamp_short(-1), "1969-12-31 23:59:59 UTC");
        assert_eq!(timestamp(86_400), "1970-01-02 00:00:00 UTC (86400)");
    }
}
