//! The audit log: one record per request (who, what, where from, with what outcome; never a
//! payload or a credential), appended to a hash chain that makes any later edit visible.
//!
//! Each record carries the hash of the one before it (`prev`) and its own (`hash`), an
//! HMAC-SHA256 under a key derived from the root key over its position (`seq`), `prev` and
//! every field. Whoever can write the database but does not hold the root key cannot make a
//! record that verifies, so `Verifier` names the first record that was edited, removed,
//! inserted or moved. Pruning removes the oldest records and leaves an `AuditAnchor` (the seq
//! and hash of the last record removed, under the same key), from which the rest verifies.
//!
//! What this cannot show: records removed from the end of the chain (nothing follows them to
//! notice). `secretstore audit verify` prints the head so that an operator can keep it
//! elsewhere and compare; docs/audit.md says so.
//!
//! A request's record is drafted as the request goes (`AuditSlot`: the HTTP layer fills in the
//! caller, the operation and its target) and written once: by the service, in the same
//! transaction as the write of a secret it records; by the tenant directory's backend, in the
//! transaction of an admin request's change (`with_directory_record`); or by the HTTP layer
//! before the answer leaves.

use std::sync::{Arc, Mutex};

use secretstore_crypto::{DigestKey, KeyedDigest};
use sha2::{Digest as _, Sha256};

/// The hash of a record, and what the first record's `prev` is (`GENESIS`).
pub type ChainHash = [u8; 32];

/// The `prev` of the first record ever written.
pub const GENESIS: ChainHash = [0; 32];

/// A record's text that is most often one of a few fixed words (a credential kind, a mode, a
/// scope type, an operation): borrowed then, so that drafting a record allocates only for what
/// is the request's own.
pub type Text = std::borrow::Cow<'static, str>;

/// What a request was and how it ended. Every field but the time, the request id, the
/// operation and the status may be absent: a request refused before authentication has no
/// caller, one refused before parsing no target.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditEvent {
    /// Unix milliseconds when the request arrived.
    pub time_ms: i64,
    pub request_id: String,
    /// `secret_key`, `restricted_key`, `user_session`, `admin_token`.
    pub credential_kind: Option<Text>,
    /// The credential's id, never the credential: `key_...` or `uss_...` for what the admin API
    /// issued, `admin` for the admin token, and in dev mode (where keys are not issued) the
    /// key's hint, `sk_test_****abcd`.
    pub credential: Option<String>,
    pub app: Option<String>,
    pub account: Option<String>,
    /// `live` or `test`.
    pub mode: Option<Text>,
    /// `account` or `user`.
    pub scope_type: Option<Text>,
    pub user: Option<String>,
    /// `secrets.set`, `secrets.find`, `secrets.delete`, `secrets.list`; `admin` followed by
    /// the method and route for the admin API (`admin POST /v1/accounts`); `unknown` for a
    /// route that does not exist.
    pub operation: Text,
    pub secret_name: Option<String>,
    /// The client's IP address.
    pub client: Option<String>,
    pub status: u16,
    /// The error code of a refusal (`docs/errors.md`); `None` for a success.
    pub code: Option<String>,
}

/// A record as stored: its place in the chain and its hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// 1 for the first record ever written, then one more for each.
    pub seq: i64,
    /// Shared, not copied: the same record goes from the service to storage and back.
    pub event: Arc<AuditEvent>,
    pub prev: ChainHash,
    pub hash: ChainHash,
}

/// Where a pruned chain starts: the last record removed, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditAnchor {
    pub seq: i64,
    pub hash: ChainHash,
    /// Unix milliseconds of the prune.
    pub pruned_at_ms: i64,
    /// The chain key's MAC of the three above: a forged anchor does not verify.
    pub mac: ChainHash,
}

/// The chain's key: links records and seals anchors.
#[derive(Clone)]
pub struct AuditChain {
    key: KeyedDigest,
}

impl std::fmt::Debug for AuditChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditChain([REDACTED])")
    }
}

impl AuditChain {
    pub fn new(key: DigestKey) -> Self {
        Self { key: key.keyed() }
    }

    /// The hash of the record at `seq` whose predecessor's hash is `prev`: an HMAC of the seq,
    /// `prev` and the digest of the record's fields (`fields_digest`).
    pub fn link(&self, seq: i64, prev: &ChainHash, event: &AuditEvent) -> ChainHash {
        self.link_digest(seq, prev, &fields_digest(event))
    }

    fn link_digest(&self, seq: i64, prev: &ChainHash, fields: &ChainHash) -> ChainHash {
        self.key.digest(
            "secretstore/audit-record/v2",
            &[&seq.to_be_bytes(), prev, fields],
        )
    }

    /// An anchor at the record `seq` with hash `hash`.
    pub fn anchor(&self, seq: i64, hash: ChainHash, pruned_at_ms: i64) -> AuditAnchor {
        let mac = self.anchor_mac(seq, &hash, pruned_at_ms);
        AuditAnchor {
            seq,
            hash,
            pruned_at_ms,
            mac,
        }
    }

    fn anchor_mac(&self, seq: i64, hash: &ChainHash, pruned_at_ms: i64) -> ChainHash {
        self.key.digest(
            "secretstore/audit-anchor/v1",
            &[&seq.to_be_bytes(), hash, &pruned_at_ms.to_be_bytes()],
        )
    }

    /// The entry that follows `prev` (the previous entry's seq and hash).
    pub fn entry(&self, prev: (i64, ChainHash), event: Arc<AuditEvent>) -> AuditEntry {
        let fields = fields_digest(&event);
        self.entry_with_fields(prev, event, &fields)
    }

    pub(crate) fn entry_with_fields(
        &self,
        prev: (i64, ChainHash),
        event: Arc<AuditEvent>,
        fields: &ChainHash,
    ) -> AuditEntry {
        let seq = prev.0 + 1;
        let hash = self.link_digest(seq, &prev.1, fields);
        AuditEntry {
            seq,
            event,
            prev: prev.1,
            hash,
        }
    }
}

/// SHA-256 of one message of every field of `event`, each length-prefixed (and an absent one
/// marked apart from an empty one), so that no two records give the same message. It is
/// computed where the record is made (`AuditAppend::new`), so that the backend, which orders
/// the chain one record at a time, only keys it with its seq and predecessor.
pub fn fields_digest(event: &AuditEvent) -> ChainHash {
    let texts = [
        Some(event.request_id.as_str()),
        Some(&*event.operation),
        event.credential_kind.as_deref(),
        event.credential.as_deref(),
        event.app.as_deref(),
        event.account.as_deref(),
        event.mode.as_deref(),
        event.scope_type.as_deref(),
        event.user.as_deref(),
        event.secret_name.as_deref(),
        event.client.as_deref(),
        event.code.as_deref(),
    ];
    let mut sha = Sha256::new();
    sha.update(b"secretstore/audit-fields/v1\0");
    sha.update(event.time_ms.to_be_bytes());
    sha.update(event.status.to_be_bytes());
    for text in texts {
        match text {
            Some(text) => {
                sha.update([1]);
                sha.update((text.len() as u32).to_be_bytes());
                sha.update(text.as_bytes());
            }
            None => sha.update([0; 5]),
        }
    }
    sha.finalize().into()
}

/// What a verification found wrong first, naming the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Break {
    /// The anchor left by pruning does not verify: it was edited or forged.
    AnchorEdited { seq: i64 },
    /// The record's fields do not match its hash: it was edited, or inserted by someone
    /// without the key.
    Edited { seq: i64 },
    /// Records `first` to `last` are missing: the next record present is `last + 1`.
    Removed { first: i64, last: i64 },
    /// The record at `seq` is a genuine record of another place (`written_as`): records were
    /// moved.
    Moved { seq: i64, written_as: i64 },
}

impl Break {
    /// The record named: the first one edited, removed, inserted or moved.
    pub fn seq(&self) -> i64 {
        match self {
            Break::AnchorEdited { seq } | Break::Edited { seq } | Break::Moved { seq, .. } => *seq,
            Break::Removed { first, .. } => *first,
        }
    }
}

impl std::fmt::Display for Break {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Break::AnchorEdited { seq } => write!(
                f,
                "the pruning anchor (at record {seq}) does not match its hash: it was edited"
            ),
            Break::Edited { seq } => write!(
                f,
                "record {seq} does not match its hash: it was edited, or inserted without the key"
            ),
            Break::Removed { first, last } if first == last => write!(
                f,
                "record {first} was removed: record {} follows record {}",
                last + 1,
                first - 1
            ),
            Break::Removed { first, last } => write!(
                f,
                "records {first} to {last} were removed: record {} follows record {}",
                last + 1,
                first - 1
            ),
            Break::Moved { seq, written_as } => write!(
                f,
                "record {seq} is out of place: it was written as record {written_as}"
            ),
        }
    }
}

/// Checks a chain record by record, in `seq` order, keeping only the last record's hash.
#[derive(Debug)]
pub struct Verifier<'a> {
    chain: &'a AuditChain,
    /// The seq and hash the next record must follow.
    last: (i64, ChainHash),
    from: i64,
    checked: u64,
}

/// The outcome of a whole verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Records checked.
    pub records: u64,
    /// Where the chain starts: 0 for the beginning, or the pruning anchor's seq.
    pub from: i64,
    /// The newest record's seq and hash (the anchor's when no record follows it).
    pub head: (i64, ChainHash),
}

impl<'a> Verifier<'a> {
    /// A verifier of a chain that starts at `anchor` (or at the beginning).
    pub fn new(chain: &'a AuditChain, anchor: Option<&AuditAnchor>) -> Result<Self, Break> {
        let last = match anchor {
            Some(anchor) => {
                let mac = chain.anchor_mac(anchor.seq, &anchor.hash, anchor.pruned_at_ms);
                if !constant_time_eq(&mac, &anchor.mac) {
                    return Err(Break::AnchorEdited { seq: anchor.seq });
                }
                (anchor.seq, anchor.hash)
            }
            None => (0, GENESIS),
        };
        Ok(Self {
            chain,
            last,
            from: last.0,
            checked: 0,
        })
    }

    /// The seq after which the next entries are wanted.
    pub fn next_after(&self) -> i64 {
        self.last.0
    }

    /// Checks the next record present.
    pub fn check(&mut self, entry: &AuditEntry) -> Result<(), Break> {
        let expected = self.last.0 + 1;
        let genuine = |seq: i64, prev: &ChainHash| {
            constant_time_eq(&self.chain.link(seq, prev, &entry.event), &entry.hash)
        };
        if entry.seq == expected && entry.prev == self.last.1 && genuine(entry.seq, &entry.prev) {
            self.last = (entry.seq, entry.hash);
            self.checked += 1;
            return Ok(());
        }
        // Something is wrong here; say what. A record whose hash holds under its own seq and
        // prev is genuine, and then the records before it are what changed.
        if genuine(entry.seq, &entry.prev) {
            if entry.seq > expected {
                return Err(Break::Removed {
                    first: expected,
                    last: entry.seq - 1,
                });
            }
            return Err(Break::Moved {
                seq: expected,
                written_as: entry.seq,
            });
        }
        // Not genuine at its own seq; a row renumbered into this place (its seq column edited
        // to move it) still verifies at the place its prev says it was written.
        if entry.seq == expected && entry.prev != self.last.1 {
            for written_as in [expected + 1, expected - 1] {
                if genuine(written_as, &entry.prev) {
                    return Err(Break::Moved {
                        seq: expected,
                        written_as,
                    });
                }
            }
        }
        if entry.seq > expected {
            return Err(Break::Removed {
                first: expected,
                last: entry.seq - 1,
            });
        }
        Err(Break::Edited { seq: entry.seq })
    }

    pub fn finish(self) -> Verified {
        Verified {
            records: self.checked,
            from: self.from,
            head: self.last,
        }
    }
}

fn constant_time_eq(a: &ChainHash, b: &ChainHash) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Hex of a hash, for display and for the JSON of a record.
pub fn hex(hash: &ChainHash) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

/// Which records a search wants; every field given must match exactly (times are a range).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Records at or after this time (unix milliseconds).
    pub since_ms: Option<i64>,
    /// Records before this time (unix milliseconds).
    pub until_ms: Option<i64>,
    pub app: Option<String>,
    pub account: Option<String>,
    pub user: Option<String>,
    pub secret_name: Option<String>,
    pub operation: Option<String>,
    pub credential: Option<String>,
    pub outcome: Option<Outcome>,
    /// Records older than this one (the next page, newest first).
    pub before_seq: Option<i64>,
    pub limit: u32,
}

/// A search by outcome: successes, every refusal, or one status or error code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
    Status(u16),
    Code(String),
}

impl AuditFilter {
    /// Whether `event` matches; the one definition backends are tested against.
    pub fn matches(&self, seq: i64, event: &AuditEvent) -> bool {
        let same = |want: &Option<String>, have: &Option<String>| {
            want.as_ref().is_none_or(|w| have.as_ref() == Some(w))
        };
        self.since_ms.is_none_or(|t| event.time_ms >= t)
            && self.until_ms.is_none_or(|t| event.time_ms < t)
            && same(&self.app, &event.app)
            && same(&self.account, &event.account)
            && same(&self.user, &event.user)
            && same(&self.secret_name, &event.secret_name)
            && self
                .operation
                .as_ref()
                .is_none_or(|op| *op == event.operation)
            && same(&self.credential, &event.credential)
            && self.before_seq.is_none_or(|before| seq < before)
            && match &self.outcome {
                None => true,
                Some(Outcome::Success) => event.status < 400,
                Some(Outcome::Failure) => event.status >= 400,
                Some(Outcome::Status(status)) => event.status == *status,
                Some(Outcome::Code(code)) => event.code.as_deref() == Some(code.as_str()),
            }
    }
}

/// A request's record as it is drafted, shared by the layers that know its parts, and whether
/// it has been written already (with the write it records).
#[derive(Debug, Default)]
pub struct AuditSlot {
    event: Mutex<AuditEvent>,
    written: Mutex<Option<AuditEntry>>,
}

impl AuditSlot {
    pub fn new(event: AuditEvent) -> Self {
        Self {
            event: Mutex::new(event),
            written: Mutex::new(None),
        }
    }

    /// Fills in what the caller of `edit` knows.
    pub fn note(&self, edit: impl FnOnce(&mut AuditEvent)) {
        let mut event = self.event.lock().unwrap_or_else(|e| e.into_inner());
        edit(&mut event);
    }

    /// The record as drafted so far.
    pub fn draft(&self) -> AuditEvent {
        self.event.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Puts back a draft taken with `take_draft` whose write failed, for the record of the
    /// failure.
    pub fn restore(&self, event: AuditEvent) {
        *self.event.lock().unwrap_or_else(|e| e.into_inner()) = event;
    }

    /// The record as drafted, taken out of the slot: for its writer, once nothing more is
    /// noted.
    pub fn take_draft(&self) -> AuditEvent {
        std::mem::take(&mut *self.event.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// The record was written in the transaction of the write it records, as `entry`.
    pub fn mark_written(&self, entry: AuditEntry) {
        *self.written.lock().unwrap_or_else(|e| e.into_inner()) = Some(entry);
    }

    /// The record, if it was written with its write.
    pub fn take_written(&self) -> Option<AuditEntry> {
        self.written
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }
}

/// What the service needs to write a request's record with its write.
#[derive(Debug, Clone)]
pub struct AuditTicket {
    pub slot: Arc<AuditSlot>,
    pub chain: Arc<AuditChain>,
}

tokio::task_local! {
    /// The record the tenant directory's next write must commit with it: an admin request's
    /// (`with_directory_record`). The `Directory` trait takes no record of its own, so its
    /// backends take this one (`directory_record`) in the transaction of the write.
    static DIRECTORY_RECORD: std::cell::RefCell<Option<AuditTicket>>;
}

/// Runs `work` (an admin request) so that the first directory write it makes commits the
/// request's record in its own transaction: a change of the tenant directory and its record
/// stand or fall together, as a secret's write and its record do.
pub async fn with_directory_record<F: std::future::Future>(
    ticket: AuditTicket,
    work: F,
) -> F::Output {
    DIRECTORY_RECORD
        .scope(std::cell::RefCell::new(Some(ticket)), work)
        .await
}

/// For a backend's directory write: the record to commit with it (the request's draft, as a
/// success), taken so that only the first write of a request carries it; `None` outside an
/// admin request, or when auditing is off. Once committed, give the entry to
/// `AuditSlot::mark_written`.
pub fn directory_record() -> Option<(crate::store::AuditAppend, Arc<AuditSlot>)> {
    let ticket = DIRECTORY_RECORD
        .try_with(|cell| cell.borrow_mut().take())
        .ok()
        .flatten()?;
    let mut event = ticket.slot.draft();
    event.status = 200;
    event.code = None;
    let append = crate::store::AuditAppend::new(Arc::new(event), ticket.chain);
    Some((append, ticket.slot))
}

/// Whether a directory write changed anything: a removal of nothing (`None`) did not, and its
/// record is the refusal's (a 404), written by the HTTP layer.
pub trait Changed {
    fn changed(&self) -> bool;
}

impl Changed for () {
    fn changed(&self) -> bool {
        true
    }
}

impl<T> Changed for Option<T> {
    fn changed(&self) -> bool {
        self.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secretstore_crypto::RootKey;

    fn chain() -> AuditChain {
        AuditChain::new(DigestKey::new(&RootKey::generate().unwrap()))
    }

    fn event(i: i64) -> AuditEvent {
        AuditEvent {
            time_ms: 1_700_000_000_000 + i,
            request_id: format!("req_{i:020}"),
            operation: "secrets.find".into(),
            secret_name: Some(format!("name-{i}")),
            status: 200,
            ..AuditEvent::default()
        }
    }

    fn entries(chain: &AuditChain, n: i64) -> Vec<AuditEntry> {
        let mut out: Vec<AuditEntry> = Vec::new();
        let mut last = (0, GENESIS);
        for i in 1..=n {
            let entry = chain.entry(last, Arc::new(event(i)));
            last = (entry.seq, entry.hash);
            out.push(entry);
        }
        out
    }

    fn verify(
        chain: &AuditChain,
        anchor: Option<&AuditAnchor>,
        rows: &[AuditEntry],
    ) -> Result<Verified, Break> {
        let mut verifier = Verifier::new(chain, anchor)?;
        for row in rows {
            verifier.check(row)?;
        }
        Ok(verifier.finish())
    }

    #[test]
    fn an_untouched_chain_verifies_and_reports_its_head() {
        let chain = chain();
        let rows = entries(&chain, 10);
        let verified = verify(&chain, None, &rows).unwrap();
        assert_eq!(verified.records, 10);
        assert_eq!(verified.head, (10, rows[9].hash));
    }

    #[test]
    fn an_edited_record_is_named() {
        let chain = chain();
        let mut rows = entries(&chain, 10);
        Arc::make_mut(&mut rows[4].event).secret_name = Some("other".into());
        assert_eq!(verify(&chain, None, &rows), Err(Break::Edited { seq: 5 }));
        let mut rows = entries(&chain, 10);
        Arc::make_mut(&mut rows[6].event).status = 404;
        assert_eq!(verify(&chain, None, &rows), Err(Break::Edited { seq: 7 }));
    }

    #[test]
    fn removed_records_are_named() {
        let chain = chain();
        let mut rows = entries(&chain, 10);
        rows.remove(3);
        assert_eq!(
            verify(&chain, None, &rows),
            Err(Break::Removed { first: 4, last: 4 })
        );
        let mut rows = entries(&chain, 10);
        rows.drain(0..3);
        assert_eq!(
            verify(&chain, None, &rows),
            Err(Break::Removed { first: 1, last: 3 })
        );
    }

    #[test]
    fn an_inserted_record_is_named() {
        let chain = chain();
        let rows = entries(&chain, 10);
        // Renumbered to make room, and a record made up without the key put in the gap.
        let mut tampered: Vec<AuditEntry> = rows[..6].to_vec();
        let mut forged = chain.entry((6, rows[5].hash), Arc::new(event(99)));
        forged.hash = [7; 32];
        tampered.push(forged);
        tampered.extend(rows[6..].iter().cloned().map(|mut e| {
            e.seq += 1;
            e
        }));
        assert_eq!(
            verify(&chain, None, &tampered),
            Err(Break::Edited { seq: 7 })
        );
        // A copy of a genuine record added after the end.
        let mut copied = rows.clone();
        let mut again = rows[2].clone();
        again.seq = 11;
        copied.push(again);
        assert_eq!(
            verify(&chain, None, &copied),
            Err(Break::Edited { seq: 11 })
        );
    }

    #[test]
    fn records_moved_are_named() {
        let chain = chain();
        let rows = entries(&chain, 10);
        // Their seq columns swapped: read in seq order, record 5 holds what was written as 6.
        let mut swapped = rows.clone();
        swapped[4].seq = 6;
        swapped[5].seq = 5;
        swapped.sort_by_key(|e| e.seq);
        assert_eq!(
            verify(&chain, None, &swapped),
            Err(Break::Moved {
                seq: 5,
                written_as: 6
            })
        );
        // Everything but the seq swapped (the rows' contents exchanged).
        let mut exchanged = rows.clone();
        let (four, five) = (rows[4].clone(), rows[5].clone());
        exchanged[4] = AuditEntry { seq: 5, ..five };
        exchanged[5] = AuditEntry { seq: 6, ..four };
        assert_eq!(
            verify(&chain, None, &exchanged),
            Err(Break::Moved {
                seq: 5,
                written_as: 6
            })
        );
    }

    #[test]
    fn a_pruned_chain_verifies_from_its_anchor_and_a_forged_anchor_does_not() {
        let chain = chain();
        let rows = entries(&chain, 10);
        let anchor = chain.anchor(4, rows[3].hash, 1);
        assert_eq!(
            verify(&chain, Some(&anchor), &rows[4..]).unwrap().records,
            6
        );
        let mut forged = anchor.clone();
        forged.seq = 5;
        assert_eq!(
            verify(&chain, Some(&forged), &rows[5..]),
            Err(Break::AnchorEdited { seq: 5 })
        );
        // An anchor moved further on, after more records went, shows as removed records.
        assert_eq!(
            verify(&chain, Some(&anchor), &rows[6..]),
            Err(Break::Removed { first: 5, last: 6 })
        );
    }

    #[test]
    fn another_key_verifies_nothing() {
        let rows = entries(&chain(), 3);
        assert_eq!(verify(&chain(), None, &rows), Err(Break::Edited { seq: 1 }));
    }

    #[test]
    fn absent_and_empty_fields_hash_differently() {
        let chain = chain();
        let mut a = event(1);
        a.user = None;
        let mut b = event(1);
        b.user = Some(String::new());
        assert_ne!(chain.link(1, &GENESIS, &a), chain.link(1, &GENESIS, &b));
    }

    #[test]
    fn hashes_show_as_64_hex_digits() {
        assert_eq!(hex(&[0xab; 32]), "ab".repeat(32));
    }
}
