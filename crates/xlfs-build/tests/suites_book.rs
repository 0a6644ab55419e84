//! The book's test-suite allowlists judge the failures they were written for, and only those.

use std::path::Path;
use xlfs_build::suites::{parse, unexpected, Results};

#[test]
fn binutils_allows_its_measured_failure_and_nothing_else() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../book");
    let book = xlfs_book::Book::load(&root).unwrap_or_else(|e| panic!("the book has problems:\n{e}"));
    let tests = book
        .get("binutils")
        .unwrap()
        .tests
        .clone()
        .expect("binutils has [build.tests]");
    // Lines as build/binutils/binutils.sum has them after `make -k check` (xlfs rebuild --check).
    let mut r = Results::default();
    parse(
        "PASS: ar deterministic archive\n\
         FAIL: replacing non-deterministic member (wrong size, expected: 928)\n\
         PASS: ar long file names\n",
        &mut r,
    );
    assert_eq!(r.failures.len(), 1);
    assert_eq!(unexpected(&r, &tests.allow).unwrap(), Vec::<String>::new());
    parse("FAIL: ar thin archive\n", &mut r);
    assert_eq!(
        unexpected(&r, &tests.allow).unwrap(),
        vec!["FAIL: ar thin archive".to_string()]
    );
}
