//! Reservations as a pure state machine: HELD until committed, released or
//! expired; every terminal state is final; repeating the operation that got a
//! reservation into its state is a no-op (idempotency), the other ones conflict.

use std::collections::BTreeMap;

/// Default hold time of a reservation.
pub const DEFAULT_TTL_S: u32 = 300;
/// Longest hold a caller may ask for.
pub const MAX_TTL_S: u32 = 3600;
/// Most lines in one reservation.
pub const MAX_ITEMS: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum State {
    Held,
    Committed,
    Released,
    Expired,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Held => "held",
            State::Committed => "committed",
            State::Released => "released",
            State::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<State> {
        [
            State::Held,
            State::Committed,
            State::Released,
            State::Expired,
        ]
        .into_iter()
        .find(|x| x.as_str() == s)
    }

    pub fn is_terminal(self) -> bool {
        self != State::Held
    }
}

/// What can happen to a reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Commit,
    Release,
    Expire,
}

/// The outcome of applying an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// The state changes; stock moves accordingly.
    Changed(State),
    /// Already in the state this operation leads to: nothing moves.
    Unchanged,
    /// Not allowed from the current state.
    Conflict,
}

/// The single source of the transition rules.
pub fn apply(from: State, op: Op) -> Transition {
    use State::*;
    match (from, op) {
        (Held, Op::Commit) => Transition::Changed(Committed),
        (Held, Op::Release) => Transition::Changed(Released),
        (Held, Op::Expire) => Transition::Changed(Expired),
        (Committed, Op::Commit) | (Released, Op::Release) | (Expired, Op::Expire) => {
            Transition::Unchanged
        }
        // Releasing an expired hold is what the caller wanted anyway.
        (Expired, Op::Release) => Transition::Unchanged,
        // Expiry never touches a finished reservation.
        (Committed | Released, Op::Expire) => Transition::Unchanged,
        (Committed, Op::Release) | (Released | Expired, Op::Commit) => Transition::Conflict,
    }
}

/// One line of a reservation request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub sku_id: String,
    pub quantity: u32,
}

pub use shopstream_platform::FieldError;

/// Validate and normalise lines: same SKU merged, sorted by SKU (the order
/// rows are locked in, so concurrent reservations never deadlock).
pub fn normalise(lines: &[Line]) -> Result<Vec<Line>, Vec<FieldError>> {
    let mut errors = Vec::new();
    if lines.is_empty() {
        errors.push(FieldError {
            field: "items".into(),
            message: "must not be empty".into(),
        });
    }
    if lines.len() > MAX_ITEMS {
        errors.push(FieldError {
            field: "items".into(),
            message: format!("at most {MAX_ITEMS} lines"),
        });
    }
    let mut merged: BTreeMap<String, u32> = BTreeMap::new();
    for (i, l) in lines.iter().enumerate() {
        if l.sku_id.trim().is_empty() {
            errors.push(FieldError {
                field: format!("items[{i}].sku"),
                message: "is required".into(),
            });
        }
        if l.quantity == 0 {
            errors.push(FieldError {
                field: format!("items[{i}].quantity"),
                message: "must be at least 1".into(),
            });
        }
        *merged.entry(l.sku_id.trim().to_string()).or_default() += l.quantity;
    }
    if errors.is_empty() {
        Ok(merged
            .into_iter()
            .map(|(sku_id, quantity)| Line { sku_id, quantity })
            .collect())
    } else {
        Err(errors)
    }
}

/// The hold time to use: 0 means the default; above the maximum is an error.
pub fn ttl_s(requested: u32) -> Result<u32, FieldError> {
    match requested {
        0 => Ok(DEFAULT_TTL_S),
        t if t <= MAX_TTL_S => Ok(t),
        _ => Err(FieldError {
            field: "ttl_s".into(),
            message: format!("must be at most {MAX_TTL_S}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![Just(Op::Commit), Just(Op::Release), Just(Op::Expire)]
    }

    proptest! {
        #[test]
        fn terminal_states_are_final_and_repeats_are_no_ops(ops in proptest::collection::vec(op(), 0..20)) {
            let mut s = State::Held;
            let mut terminal_seen: Option<State> = None;
            for o in ops {
                match apply(s, o) {
                    Transition::Changed(next) => {
                        prop_assert_eq!(s, State::Held, "only HELD changes");
                        prop_assert!(next.is_terminal());
                        s = next;
                        terminal_seen = Some(next);
                    }
                    Transition::Unchanged | Transition::Conflict => {}
                }
                if let Some(t) = terminal_seen {
                    prop_assert_eq!(s, t, "a terminal state never changes");
                }
                // Repeating the operation that led here is always a no-op.
                if let Transition::Changed(next) = apply(State::Held, o) {
                    prop_assert_eq!(apply(next, o), Transition::Unchanged);
                }
            }
        }
    }

    #[test]
    fn conflicts_are_the_contradictory_pairs() {
        assert_eq!(apply(State::Committed, Op::Release), Transition::Conflict);
        assert_eq!(apply(State::Released, Op::Commit), Transition::Conflict);
        assert_eq!(apply(State::Expired, Op::Commit), Transition::Conflict);
        assert_eq!(apply(State::Expired, Op::Release), Transition::Unchanged);
    }

    #[test]
    fn lines_are_merged_sorted_and_validated() {
        let l = |s: &str, q| Line {
            sku_id: s.into(),
            quantity: q,
        };
        assert_eq!(
            normalise(&[l("B", 1), l("A", 2), l("B", 3)]).unwrap(),
            vec![l("A", 2), l("B", 4)]
        );
        let errs = normalise(&[l("", 0)]).unwrap_err();
        assert_eq!(errs.len(), 2);
        assert!(normalise(&[]).is_err());
        assert_eq!(ttl_s(0).unwrap(), DEFAULT_TTL_S);
        assert!(ttl_s(MAX_TTL_S + 1).is_err());
    }
}
