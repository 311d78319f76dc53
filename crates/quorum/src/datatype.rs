//! Convergent data types on the write and read paths: the coordinating
//! primary's application of an operation, and the merge of a key's
//! siblings into one state.
//!
//! A data type's state is the value of an ordinary object
//! ([`dynkv_crdt::CONTENT_TYPE`]). Concurrent states (written through
//! different coordinators, or during a partition) are kept as siblings by
//! the storage layer like any concurrent values; they are merged with the
//! CRDT merge by a reader ([`merged_state`]) and by the next update at a
//! coordinator (`apply`), whose result supersedes every sibling it merged.

use bytes::Bytes;
use dynkv_crdt::{Convergent, DataType, Update, UpdateError};
use dynkv_vclock::{Content, Object};

use crate::QuorumError;

/// The CRDT merge of every live sibling of `o` (`None`: no live sibling,
/// a new or deleted key). A live sibling that is not a data type state is
/// an error: its value would be lost by merging it away.
pub fn merged_state(o: &Object) -> Result<Option<DataType>, String> {
    let mut out: Option<DataType> = None;
    for c in o.values().into_iter().filter(|c| !c.deleted) {
        if c.content_type != dynkv_crdt::CONTENT_TYPE {
            return Err(format!(
                "the key holds a value of type {} that is not a data type",
                c.content_type
            ));
        }
        let state = DataType::decode(&c.value).map_err(|e| e.to_string())?;
        match &mut out {
            None => out = Some(state),
            Some(acc) if acc.kind() == state.kind() => acc.merge(&state),
            Some(acc) => {
                return Err(format!(
                    "the key holds both a {} and a {}",
                    acc.kind().name(),
                    state.kind().name()
                ));
            }
        }
    }
    Ok(out)
}

/// Applies the encoded operation `op` with `actor` at `now` to the merge of
/// `cur`'s live siblings, returning the content to store (`template`'s
/// timestamp and metadata, the new state as its value). Runs inside the
/// store's update of the key, so no other write of the key interleaves.
pub(crate) fn apply(
    cur: &Object,
    op: &[u8],
    actor: &str,
    now: u64,
    template: &Content,
) -> Result<Content, QuorumError> {
    let update = Update::decode(op).map_err(|e| QuorumError::BadRequest(e.to_string()))?;
    let state = merged_state(cur).map_err(QuorumError::Precondition)?;
    let next = dynkv_crdt::op::apply(state, &update, actor, now).map_err(|e| match e {
        UpdateError::Malformed(m) => QuorumError::BadRequest(m),
        other => QuorumError::Precondition(other.to_string()),
    })?;
    Ok(Content {
        value: Bytes::from(next.encode()),
        content_type: dynkv_crdt::CONTENT_TYPE.to_string(),
        deleted: false,
        modified_micros: template.modified_micros,
        meta: template.meta.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::local_write::{self, LocalWrite, Step};
    use dynkv_crdt::{Op, SetOp};
    use dynkv_vclock::{DvvSet, VersionVector};
    use std::time::Duration;

    fn add(elems: &[&str], remove: &[&str], context: Option<dynkv_crdt::VersionVector>) -> Bytes {
        Bytes::from(
            Update {
                op: Op::Set(SetOp {
                    add: elems.iter().map(|e| e.as_bytes().to_vec()).collect(),
                    remove: remove.iter().map(|e| e.as_bytes().to_vec()).collect(),
                }),
                context,
                hll_precision: 14,
            }
            .encode(),
        )
    }

    fn write(actor: &str, op: Bytes) -> LocalWrite {
        LocalWrite {
            actor: actor.into(),
            floor: 0,
            context: VersionVector::new(),
            content: Content::value(Bytes::new(), dynkv_crdt::CONTENT_TYPE, 1),
            idempotency_key: None,
            supersede: false,
            datatype_op: Some(op),
            window: Duration::from_secs(60),
            max_siblings: 10,
            max_object_bytes: 1 << 20,
        }
    }

    fn elems(o: &Object) -> Vec<String> {
        match merged_state(o).unwrap() {
            Some(DataType::Set(s)) => s
                .value()
                .map(|e| String::from_utf8(e.clone()).unwrap())
                .collect(),
            other => panic!("not a set: {other:?}"),
        }
    }

    #[test]
    fn an_update_merges_every_sibling_and_supersedes_them() {
        // Two replicas took concurrent updates; this one holds both states
        // as siblings after a sync.
        let (a, _) = local_write::apply(None, &write("n1#a", add(&["x"], &[], None)), 1);
        let (b, _) = local_write::apply(None, &write("n2#b", add(&["y"], &[], None)), 1);
        let both = DvvSet::sync(&a.unwrap(), &b.unwrap());
        assert_eq!(both.sibling_count(), 2);
        assert_eq!(elems(&both), ["x", "y"], "a read merges the siblings");
        let (next, step) =
            local_write::apply(Some(both), &write("n1#a", add(&["z"], &["x"], None)), 2);
        assert!(matches!(step, Step::Applied { replayed: false }));
        let next = next.unwrap();
        assert_eq!(next.sibling_count(), 1, "one state supersedes both");
        assert_eq!(elems(&next), ["y", "z"]);
    }

    #[test]
    fn a_failed_precondition_stores_nothing() {
        let (a, _) = local_write::apply(None, &write("n1#a", add(&["x"], &[], None)), 1);
        let a = a.unwrap();
        let (kept, step) =
            local_write::apply(Some(a.clone()), &write("n1#a", add(&[], &["q"], None)), 2);
        assert!(
            matches!(step, Step::Refused(QuorumError::Precondition(m)) if m.contains("not_present"))
        );
        assert_eq!(kept, Some(a.clone()));
        // A plain value under the key is not merged away.
        let plain = DvvSet::update(
            &VersionVector::new(),
            &Object::new(),
            "n2#b",
            Content::value("v", "text/plain", 1),
        );
        let (_, step) = local_write::apply(Some(plain), &write("n1#a", add(&["x"], &[], None)), 2);
        assert!(matches!(step, Step::Refused(QuorumError::Precondition(_))));
        let (_, step) = local_write::apply(Some(a), &write("n1#a", Bytes::from_static(b"\x09")), 2);
        assert!(matches!(step, Step::Refused(QuorumError::BadRequest(_))));
    }
}
