//! Arbitrary bytes (query NUL body) decoded as the server decodes a request, then validated by
//! `params::parse` as each of the four operations in a fixed namespace. An accepted request
//! must satisfy the contract and hold exactly what the form said; a refusal must be a 4xx in
//! the contract's error shape with a documented code and a non-empty param where present.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    secretstore_fuzz::fuzz_request(data);
});
