//! Regressions found by fuzzing the decoders (see docs/CHAOS.md).

use dynkv_vclock::{VersionVector, decode_object};

/// fuzz/regressions/object/zero-counter-entry: an entry with counter 0 is
/// no event at all; accepting it made equal clocks compare unequal.
#[test]
fn a_decoded_object_has_no_zero_counter() {
    // Version 1, one entry: actor "\x01\x01", counter 0, no values; no anonymous values.
    let decoded = decode_object(&[1, 1, 2, 1, 1, 0, 0, 0]);
    assert!(decoded.is_err(), "an entry with counter 0 must be refused");
    if let Ok(o) = decoded {
        let clock = o.join();
        assert_eq!(
            clock,
            VersionVector::from_pairs(clock.entries().iter().cloned())
        );
    }
}
