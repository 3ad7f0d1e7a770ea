//! Structured requests (the `arbitrary` crate): plausible `scope[type]=...&expand[0]=...`
//! bodies in every wire form, valid ones with at most one known defect (whose exact refusal is
//! checked) and free-form pairs of plausible keys and values. See src/structured.rs.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    secretstore_fuzz::structured::fuzz_structured(data);
});
