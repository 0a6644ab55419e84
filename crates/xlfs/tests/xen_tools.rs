//! The check that would have caught the fresh-machine failure (libxenlight's DT_NEEDED libyajl
//! not found by ld): xen-tools and its build closure (zlib, libuuid, yajl) built from an empty
//! home, in the pinned toolchain root, with sources fetched by the real fetcher from the Debian
//! archive apt is configured with. The toolchain root is kept across runs in [`toolchains`];
//! when it is missing, creating it is part of this test (and timed).

mod common;
use common::{text, toolchains};
use std::process::Command;
use std::time::Instant;

#[test]
fn xen_tools_builds_from_an_empty_home_in_the_pinned_toolchain_root() {
    let home = tempfile::tempdir().unwrap();
    let book = concat!(env!("CARGO_MANIFEST_DIR"), "/../../book");
    let run = |args: &[&str]| {
        let started = Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_xlfs"))
            .arg("--book")
            .arg(book)
            .arg("--home")
            .arg(home.path())
            .arg("--toolchains")
            .arg(toolchains())
            .args(args)
            .env_remove("XLFS_DEBIAN_MIRROR")
            .env_remove("XLFS_MIRROR_DIR")
            .env_remove("XLFS_SOURCES")
            .output()
            .unwrap();
        let t = text(&out);
        assert!(out.status.success(), "xlfs {args:?}:\n{t}");
        eprintln!("xlfs {args:?}: {:.1}s", started.elapsed().as_secs_f64());
        t
    };
    let tc = run(&["toolchain"]);
    eprintln!("{tc}");
    let out = run(&["build", "xen-tools", "--no-runtime"]);
    assert!(out.contains("failed 0"), "{out}");
    assert!(
        out.contains("built 5, cached 0"),
        "an empty home builds filesystem, zlib-quick, libuuid, yajl and xen-tools (not glibc: the toolchain provides it): {out}"
    );
    let files = run(&["files", "yajl"]);
    assert!(files.contains("/usr/lib/libyajl.so.2"), "{files}");
    let files = run(&["files", "xen-tools"]);
    for f in ["/usr/sbin/xl", "/usr/lib/libxenlight.so", "/usr/sbin/xenstored"] {
        assert!(files.contains(f), "{f} in xen-tools: {files}");
    }
    // The build ran in the toolchain root with the dependencies first on PATH.
    let log = run(&["log", "xen-tools"]);
    assert!(log.contains("==> xlfs: done"), "{log}");
}
