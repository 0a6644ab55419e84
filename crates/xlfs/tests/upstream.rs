//! A real upstream package: zlib from the book, fetched by the real fetcher from its upstream
//! URL or, when that is out of reach, from the Debian archive configured in /etc/apt, and built
//! in the real sandbox.

mod common;
use common::text;
use std::process::Command;

#[test]
fn zlib_is_fetched_from_upstream_or_the_debian_archive_and_built() {
    let dir = tempfile::tempdir().unwrap();
    let book = concat!(env!("CARGO_MANIFEST_DIR"), "/../../book");
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_xlfs"))
            .arg("--book")
            .arg(book)
            .arg("--home")
            .arg(dir.path())
            .args(args)
            .env_remove("XLFS_DEBIAN_MIRROR")
            .env_remove("XLFS_MIRROR_DIR")
            .output()
            .unwrap();
        let t = text(&out);
        assert!(out.status.success(), "xlfs {args:?}:\n{t}");
        t
    };
    let out = run(&["fetch", "zlib-quick", "--no-runtime"]);
    // Whichever place served it, the cached file is the one the recipe pins for that place:
    // the upstream tarball from one of its URLs, or Debian's repack from the pool.
    let recipe = xlfs_book::Book::load(std::path::Path::new(book)).unwrap();
    let source = &recipe.get("zlib-quick").unwrap().sources[0];
    let debian = source.debian.as_ref().unwrap();
    let (file, from) = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("got  ")?.split_once(" from "))
        .unwrap_or_else(|| panic!("no `got FILE from PLACE` line: {out}"));
    let expected = if file == source.file {
        assert!(source.urls.iter().any(|u| u == from), "{file} from {from}: {out}");
        &source.sha256
    } else {
        assert_eq!(file, debian.file, "{out}");
        assert!(from.contains("/pool/main/z/zlib/"), "{file} from {from}: {out}");
        &debian.sha256
    };
    let bytes = std::fs::read(dir.path().join("sources").join(file)).unwrap();
    assert_eq!(
        &hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes)),
        expected
    );
    run(&["build", "zlib-quick", "--no-runtime"]);
    let files = run(&["files", "zlib-quick"]);
    assert!(files.contains("/usr/lib/libz.so.1.3.1"), "{files}");
    assert!(files.contains("/usr/include/zlib.h"), "{files}");
    assert!(
        !files.contains("libz.a"),
        "post-install removed the static library: {files}"
    );
}
