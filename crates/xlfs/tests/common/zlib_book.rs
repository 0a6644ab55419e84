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

/// A package in the `host` environment whose output is the toolchain root's own compilers and
/// tools (Debian's gcc, binutils, glibc, coreutils, file, ...): a root for `chroot` builds that
/// is not the build machine's and has what `icecc-create-env` runs.
const DEBIAN_CC: &str = r#"[package]
name = "debian-cc"
version = "1.0"
license = "GPL-3.0-or-later"

[build]
env = "host"

[build.qa-skip]
needed = "a copy of the toolchain root's programs: their libraries come with them"
rpaths = "a copy of the toolchain root's programs"
buildpaths = "a copy of the toolchain root's programs"

[build.steps]
install = '''
cd "$DESTDIR"
cp -a /bin /sbin /lib /lib64 .
mkdir -p etc usr/share
cp -a /etc/alternatives /etc/ld.so.conf /etc/ld.so.conf.d /etc/passwd /etc/group etc/
cp -a /usr/sbin /usr/lib64 /usr/include /usr/libexec usr/
# Less to pack: what zlib's build and icecc-create-env do not run.
x="--exclude=*python3* --exclude=*perl* --exclude=*libicu* --exclude=*san.so* --exclude=*san.a
   --exclude=./cmake --exclude=./ctest --exclude=./cpack --exclude=*lto-dump* --exclude=*/lto1
   --exclude=./x86_64-linux-gnu/libcrypto.a --exclude=./x86_64-linux-gnu/libssl.a"
for d in bin lib; do
    mkdir -p usr/$d
    (cd /usr/$d && tar cf - $x .) | tar xf - -C usr/$d
done
cp -a /usr/share/misc usr/share/
find . -perm /6000 -type f -exec chmod ug-s {} +
'''
"#;

/// The same book, with zlib built in a `chroot` root made of `debian-cc` alone.
pub fn chroot_zlib_book(dir: &Path, extra_build: &str) -> PathBuf {
    let book = zlib_book(dir, &format!("env = \"chroot\"\n{extra_build}"));
    let recipe = book.join("zlib-quick.toml");
    let text = std::fs::read_to_string(&recipe)
        .unwrap()
        .replace("run = []", "run = []\nbuild = [\"debian-cc\"]");
    std::fs::write(&recipe, text).unwrap();
    std::fs::write(book.join("debian-cc.toml"), DEBIAN_CC).unwrap();
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
