//! A property test: random sequences of set, find, delete, list and the passing of time, sent to
//! the real router over real storage, must get the same answers as the same sequence applied to
//! a plain in-memory model of docs/api.md §2 and §7.

use std::collections::HashMap;

use proptest::prelude::*;

use crate::common::{app, TestApp};

const MAX_PER_SCOPE: usize = 4;
const SCOPES: [&str; 3] = [
    "scope[type]=account",
    "scope[type]=user&scope[user]=usr_a",
    "scope[type]=user&scope[user]=usr_b",
];

#[derive(Debug, Clone)]
enum Op {
    Set {
        scope: usize,
        name: u8,
        payload: u16,
        expires_in: Option<i64>,
    },
    Find {
        scope: usize,
        name: u8,
        expand: bool,
    },
    Delete {
        scope: usize,
        name: u8,
    },
    List {
        scope: usize,
        limit: u32,
    },
    Advance {
        seconds: i64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..3usize, 0..6u8, any::<u16>(), proptest::option::of(1..8i64))
            .prop_map(|(scope, name, payload, expires_in)| Op::Set { scope, name, payload, expires_in }),
        2 => (0..3usize, 0..6u8, any::<bool>()).prop_map(|(scope, name, expand)| Op::Find { scope, name, expand }),
        2 => (0..3usize, 0..6u8).prop_map(|(scope, name)| Op::Delete { scope, name }),
        1 => (0..3usize, 1..4u32).prop_map(|(scope, limit)| Op::List { scope, limit }),
        1 => (0..4i64).prop_map(|seconds| Op::Advance { seconds }),
    ]
}

#[derive(Debug, Clone)]
struct Entry {
    id: String,
    created: i64,
    expires_at: Option<i64>,
    payload: String,
    seq: u64,
}

#[derive(Default)]
struct Model {
    now: i64,
    seq: u64,
    entries: HashMap<(usize, u8), Entry>,
}

impl Model {
    fn live(&self, key: &(usize, u8)) -> Option<&Entry> {
        self.entries
            .get(key)
            .filter(|e| e.expires_at.is_none_or(|at| at > self.now))
    }

    fn live_in(&self, scope: usize) -> Vec<&Entry> {
        let mut live: Vec<&Entry> = self
            .entries
            .iter()
            .filter(|((s, _), e)| *s == scope && e.expires_at.is_none_or(|at| at > self.now))
            .map(|(_, e)| e)
            .collect();
        live.sort_by_key(|e| std::cmp::Reverse(e.seq));
        live
    }
}

async fn check(app: &TestApp, ops: &[Op]) -> Result<(), TestCaseError> {
    let mut model = Model {
        now: crate::common::START,
        ..Model::default()
    };
    for op in ops {
        match op.clone() {
            Op::Set {
                scope,
                name,
                payload,
                expires_in,
            } => {
                let payload = format!("p{payload}");
                let expires_at = expires_in.map(|s| model.now + s);
                let expiry = expires_at
                    .map(|at| format!("&expires_at={at}"))
                    .unwrap_or_default();
                let answer = app
                    .set(&format!(
                        "name=n{name}&payload={payload}&{}{expiry}",
                        SCOPES[scope]
                    ))
                    .await;
                let key = (scope, name);
                if let Some(existing) = model.live(&key).cloned() {
                    prop_assert_eq!(answer.status.as_u16(), 200, "{}", answer.json);
                    prop_assert_eq!(answer.json["id"].as_str(), Some(existing.id.as_str()));
                    prop_assert_eq!(answer.json["created"].as_i64(), Some(existing.created));
                    let entry = model.entries.get_mut(&key).expect("live entry");
                    entry.payload = payload;
                    entry.expires_at = expires_at;
                    prop_assert_eq!(answer.json["expires_at"].as_i64(), expires_at);
                } else if model.live_in(scope).len() >= MAX_PER_SCOPE {
                    prop_assert_eq!(answer.status.as_u16(), 400, "{}", answer.json);
                    prop_assert_eq!(answer.code(), "scope_full");
                } else {
                    prop_assert_eq!(answer.status.as_u16(), 200, "{}", answer.json);
                    let id = answer.json["id"].as_str().unwrap_or_default().to_owned();
                    prop_assert!(model.entries.values().all(|e| e.id != id), "fresh id");
                    prop_assert_eq!(answer.json["created"].as_i64(), Some(model.now));
                    model.seq += 1;
                    let entry = Entry {
                        id,
                        created: model.now,
                        expires_at,
                        payload,
                        seq: model.seq,
                    };
                    model.entries.insert(key, entry);
                    prop_assert_eq!(answer.json["expires_at"].as_i64(), expires_at);
                }
            }
            Op::Find {
                scope,
                name,
                expand,
            } => {
                let expand_param = if expand { "&expand[]=payload" } else { "" };
                let answer = app
                    .find(&format!("name=n{name}&{}{expand_param}", SCOPES[scope]))
                    .await;
                match model.live(&(scope, name)) {
                    Some(entry) => {
                        prop_assert_eq!(answer.status.as_u16(), 200);
                        prop_assert_eq!(answer.json["id"].as_str(), Some(entry.id.as_str()));
                        prop_assert_eq!(answer.json["expires_at"].as_i64(), entry.expires_at);
                        let payload = answer.json.get("payload").and_then(|p| p.as_str());
                        prop_assert_eq!(payload, expand.then_some(entry.payload.as_str()));
                    }
                    None => {
                        prop_assert_eq!(answer.status.as_u16(), 404);
                        prop_assert_eq!(answer.message(), format!("No such secret: 'n{name}'"));
                    }
                }
            }
            Op::Delete { scope, name } => {
                let answer = app.delete(&format!("name=n{name}&{}", SCOPES[scope])).await;
                match model.live(&(scope, name)).cloned() {
                    Some(entry) => {
                        prop_assert_eq!(answer.status.as_u16(), 200);
                        prop_assert_eq!(answer.json["id"].as_str(), Some(entry.id.as_str()));
                        prop_assert_eq!(answer.json["deleted"].as_bool(), Some(true));
                        model.entries.remove(&(scope, name));
                    }
                    None => prop_assert_eq!(answer.status.as_u16(), 404),
                }
            }
            Op::List { scope, limit } => {
                let expected: Vec<String> =
                    model.live_in(scope).iter().map(|e| e.id.clone()).collect();
                let mut seen = Vec::new();
                let mut cursor = String::new();
                loop {
                    let page = app
                        .list(&format!("{}&limit={limit}{cursor}", SCOPES[scope]))
                        .await;
                    prop_assert_eq!(page.status.as_u16(), 200, "{}", page.json);
                    let data = page.json["data"].as_array().cloned().unwrap_or_default();
                    prop_assert!(data.len() <= limit as usize);
                    seen.extend(
                        data.iter()
                            .filter_map(|s| s["id"].as_str().map(str::to_owned)),
                    );
                    let has_more = page.json["has_more"].as_bool().unwrap_or(false);
                    prop_assert_eq!(has_more, seen.len() < expected.len());
                    if !has_more || data.is_empty() {
                        break;
                    }
                    cursor = format!(
                        "&starting_after={}",
                        seen.last().cloned().unwrap_or_default()
                    );
                }
                prop_assert_eq!(seen, expected);
            }
            Op::Advance { seconds } => {
                app.clock.advance(seconds);
                model.now += seconds;
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn server_answers_like_the_model(ops in proptest::collection::vec(op(), 1..60)) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let app = app().max_per_scope(MAX_PER_SCOPE as u32).build().await;
            check(&app, &ops).await
        })?;
    }
}
