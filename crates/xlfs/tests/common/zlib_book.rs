//! A book of one real package for the ccache and icecream tests: zlib, from the tarball the
//! book pins, with the real book's toolchain root, build tools root and template.
#![allow(dead_code)]

use super::common;
use common::text;
use std::path::{Path, PathBuf};
use std::process::Command;

const REAL_BOOK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../book");

/// A book of one real recipe, zlib-quick (its runtime dependency on the C library dropped: the
/// toolchain root's libc serves), with the real book's toolchain and tools roots and template.
pub fn zlib_book(dir: &Path, extra_build: &str) -> PathBuf {
    let real = xlfs_book::Book::load(Path::new(REAL_BOOK)).unwrap();
    let c = &real.config;
    let list = |v: &[String]| {
        v.iter()
            .map(|p| format!("\"{p}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let book = dir.join("book");
    std::fs::create_dir_all(book.join("templates")).unwrap();
    std::fs::write(
        book.join("book.toml"),
        format!(
            "[book]\nname = \"cc-test\"\nsource-date-epoch = 1704067200\n\n\
             [toolchain.host]\nsuite = \"{}\"\npackages = [{}]\n\n\
             [toolchain.tools]\nsuite = \"{}\"\npackages = [{}]\n",
            c.host_toolchain.suite,
            list(&c.host_toolchain.packages),
            c.build_tools.suite,
            list(&c.build_tools.packages),
        ),
    )
    .unwrap();
    std::fs::copy(
        Path::new(REAL_BOOK).join("templates/autotools.toml"),
        book.join("templates/autotools.toml"),
    )
    .unwrap();
    let recipe = std::fs::read_to_string(Path::new(REAL_BOOK).join("base/zlib-quick.toml"))
        .unwrap()
        .replace("run = [\"glibc-quick\"]", "run = []")
        .replace("[build]\n", &format!("[build]\n{extra_build}"));
    std::fs::write(book.join("zlib-quick.toml"), recipe).unwrap();
    book
}

pub fn xlfs(book: &Path, home: &Path, sources: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_xlfs"))
        .arg("--book")
        .arg(book)
        .arg("--home")
        .arg(home)
        .arg("--sources")
        .arg(sources)
        .arg("--toolchains")
        .arg(common::toolchains())
        .args(args)
        .env_remove("XLFS_DEBIAN_MIRROR")
        .env_remove("XLFS_MIRROR_DIR")
        .env_remove("XLFS_CCACHE")
        .env_remove("XLFS_ICECC")
        .output()
        .unwrap();
    let t = text(&out);
    assert!(out.status.success(), "xlfs {args:?}:\n{t}");
    t
}

/// The artifact's sha256 from a build log's last line.
pub fn artifact(log: &str) -> String {
    log.lines()
        .rev()
        .find_map(|l| l.split_once(", artifact ")?.1.split_whitespace().next())
        .unwrap_or_else(|| panic!("no artifact line in the log:\n{log}"))
        .to_string()
}
