//! A real upstream package: zlib from the book, its .orig tarball fetched from the Debian
//! archive configured in /etc/apt by the real fetcher, built in the real sandbox.

mod common;
use common::text;
use std::process::Command;

#[test]
fn zlib_is_fetched_from_the_debian_archive_and_built() {
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
    let out = run(&["fetch", "zlib", "--no-runtime"]);
    assert!(
        out.contains("/pool/main/z/zlib/"),
        "fetched from the Debian pool: {out}"
    );
    run(&["build", "zlib", "--no-runtime"]);
    let files = run(&["files", "zlib"]);
    assert!(files.contains("/usr/lib/libz.so.1.3.1"), "{files}");
    assert!(files.contains("/usr/include/zlib.h"), "{files}");
    assert!(
        !files.contains("libz.a"),
        "post-install removed the static library: {files}"
    );
}
