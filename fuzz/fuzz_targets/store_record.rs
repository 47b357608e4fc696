//! The LMA store's binding record, `lma_cnf::record`, on arbitrary bytes: decoding never
//! panics, and whatever decodes can be written again and reads back as the same record. The
//! binary layout is canonical, so a record read from it is written back to the very same
//! bytes; a JSON record of an earlier version also goes round through its own JSON.
//!
//! The first input octet is the record's own: 2 is the binary layout, `{` a JSON record, any
//! other an unknown version.

#![no_main]

use libfuzzer_sys::fuzz_target;
use lma_cnf::record::{VERSION, decode, encode};

fuzz_target!(|data: &[u8]| {
    let Ok(r) = decode(data) else {
        return;
    };
    let bytes = match encode(&r) {
        Ok(b) => b,
        Err(e) => panic!("a record that was read cannot be written: {e}: {r:?}"),
    };
    if data.first() == Some(&VERSION) {
        assert_eq!(bytes, data, "the binary layout is not canonical");
    }
    assert_eq!(decode(&bytes).as_ref(), Ok(&r), "written and read back");
    let json = serde_json::to_vec(&r).expect("a record always has a JSON form");
    assert_eq!(decode(&json).as_ref(), Ok(&r), "as JSON");
});
