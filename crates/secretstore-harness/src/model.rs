//! What the crash harness knows about one secret name: the set of states the store may hold
//! for it. An acknowledged operation narrows the set to exactly one state; an operation whose
//! answer was lost widens it by the state that operation would have produced (it may or may
//! not have been applied); reading the name back after a restart narrows it again.
//!
//! Each client owns its names and sends one request at a time, so the operations on a name
//! are totally ordered and this model is exact: no interleaving of other clients can add a
//! state the model does not know.

use std::fmt;

/// One state of a name: absent, or present with this exact payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    Absent,
    Present(String),
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            State::Absent => f.write_str("absent"),
            State::Present(payload) => write!(f, "payload {payload:?}"),
        }
    }
}

/// The states a name may be in. Never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allowed(Vec<State>);

impl Default for Allowed {
    /// A name never written is absent.
    fn default() -> Self {
        Self(vec![State::Absent])
    }
}

impl Allowed {
    /// The server acknowledged an operation that left the name in `state`.
    pub fn acknowledged(&mut self, state: State) {
        self.0 = vec![state];
    }

    /// An operation that would have left the name in `state` got no answer: the name may now
    /// be in any state it could have been in before, or in `state`.
    pub fn uncertain(&mut self, state: State) {
        if !self.0.contains(&state) {
            self.0.push(state);
        }
    }

    pub fn allows(&self, state: &State) -> bool {
        self.0.contains(state)
    }

    /// Whether the name may be absent (a delete answered 404 must find this true).
    pub fn allows_absent(&self) -> bool {
        self.allows(&State::Absent)
    }

    /// Whether the name may be present at all (a delete answered 200 must find this true).
    pub fn allows_present(&self) -> bool {
        self.0.iter().any(|s| matches!(s, State::Present(_)))
    }

    #[cfg(test)]
    pub fn is_certain(&self) -> bool {
        self.0.len() == 1
    }
}

impl fmt::Display for Allowed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("one of [")?;
        for (i, state) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{state}")?;
        }
        f.write_str("]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn present(p: &str) -> State {
        State::Present(p.into())
    }

    #[test]
    fn a_new_name_is_absent() {
        let allowed = Allowed::default();
        assert!(allowed.is_certain());
        assert!(allowed.allows_absent());
        assert!(!allowed.allows_present());
    }

    #[test]
    fn acknowledgement_narrows_to_one_state() {
        let mut allowed = Allowed::default();
        allowed.uncertain(present("a"));
        allowed.acknowledged(present("b"));
        assert!(allowed.is_certain());
        assert!(allowed.allows(&present("b")));
        assert!(!allowed.allows(&present("a")));
        assert!(!allowed.allows_absent());
    }

    #[test]
    fn a_lost_answer_keeps_the_old_states_and_adds_the_new_one() {
        let mut allowed = Allowed::default();
        allowed.acknowledged(present("old"));
        allowed.uncertain(State::Absent);
        assert!(allowed.allows(&present("old")));
        assert!(allowed.allows_absent());
        // Two lost operations in a row (across cycles before a read-back): any of the three.
        allowed.uncertain(present("new"));
        assert!(allowed.allows(&present("old")));
        assert!(allowed.allows(&present("new")));
        assert!(allowed.allows_absent());
        assert!(!allowed.allows(&present("other")));
        assert_eq!(
            allowed.to_string(),
            r#"one of [payload "old", absent, payload "new"]"#
        );
    }

    #[test]
    fn a_repeated_uncertain_state_is_listed_once() {
        let mut allowed = Allowed::default();
        allowed.uncertain(State::Absent);
        assert!(allowed.is_certain());
    }
}
