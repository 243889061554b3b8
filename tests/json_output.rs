//! The JSON reports' notice codes: README.md ("JSON output") lists exactly the codes notices
//! carry. The shapes themselves are checked wherever a test makes a command print one
//! (`common::json_shape`).

mod common;

use tproxy_firewalld::system::Code;

#[test]
fn the_documented_notice_codes_are_the_codes_notices_carry() {
    let mut documented = common::json_shape::documented_codes();
    let mut codes: Vec<String> = Code::ALL.iter().map(|c| c.as_str().to_string()).collect();
    documented.sort();
    codes.sort();
    assert_eq!(documented, codes);
}
