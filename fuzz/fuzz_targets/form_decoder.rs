//! Arbitrary bytes into the form decoder (`Form::parse`), and split at the first NUL into a
//! query string and a body merged with `Form::extend_from` twice, as a POST is decoded.
//! Checks the decoder's bounds (pairs, depth, array items), that merging equals parsing the
//! two joined with `&`, and that a decoded form re-encodes to itself. See src/lib.rs.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    secretstore_fuzz::fuzz_form(data);
});
