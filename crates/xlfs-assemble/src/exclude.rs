//! What a host image leaves out unless the profile keeps it (`[host] keep = [...]`): headers,
//! static libraries, documentation, the compiler and the build tools. Pure.

use xlfs_book::profile::Keep;

/// Programs of a compiler or of the build tools, by file name in a `bin`/`sbin` directory.
const COMPILER_PROGRAMS: [&str; 34] = [
    "cc",
    "c++",
    "gcc",
    "g++",
    "cpp",
    "gcc-ar",
    "gcc-nm",
    "gcc-ranlib",
    "gcov",
    "gcov-dump",
    "gcov-tool",
    "lto-dump",
    "as",
    "ld",
    "ld.bfd",
    "ld.gold",
    "gold",
    "ar",
    "ranlib",
    "nm",
    "objdump",
    "gprof",
    "gprofng",
    "make",
    "autoconf",
    "autoheader",
    "autoreconf",
    "automake",
    "aclocal",
    "libtool",
    "libtoolize",
    "m4",
    "bison",
    "flex",
];

/// Directories only a compiler or build tool uses.
const COMPILER_DIRS: [&str; 6] = [
    "usr/libexec/gcc",
    "usr/lib/gcc",
    "usr/lib/bfd-plugins",
    "usr/share/gcc",
    "usr/share/autoconf",
    "usr/share/automake",
];

const HEADER_DIRS: [&str; 7] = [
    "usr/include",
    "usr/lib/pkgconfig",
    "usr/lib64/pkgconfig",
    "usr/share/pkgconfig",
    "usr/lib/cmake",
    "usr/share/aclocal",
    "usr/share/gettext",
];

/// Documentation, message catalogues and locale sources; and glibc's character set
/// conversion modules (iconv), which a headless host does not use.
const DOC_DIRS: [&str; 9] = [
    "usr/share/man",
    "usr/share/info",
    "usr/share/doc",
    "usr/share/gtk-doc",
    "usr/share/locale",
    "usr/share/i18n",
    "usr/lib/gconv",
    "usr/lib/locale",
    "usr/share/vim/vim91/doc",
];

fn under(path: &str, dirs: &[&str]) -> bool {
    dirs.iter()
        .any(|d| path == *d || (path.starts_with(d) && path.as_bytes().get(d.len()) == Some(&b'/')))
}

/// The class a path belongs to, if it is one a host image leaves out by default.
pub fn class_of(path: &str) -> Option<Keep> {
    let path = path.trim_start_matches('/');
    let name = path.rsplit('/').next().unwrap_or(path);
    let dir = path.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
    if under(path, &HEADER_DIRS) || name.ends_with(".h") && dir.contains("include") {
        return Some(Keep::Headers);
    }
    if name.ends_with(".a") || name.ends_with(".la") || name.ends_with(".o") {
        return Some(Keep::Static);
    }
    if under(path, &DOC_DIRS) {
        return Some(Keep::Docs);
    }
    let bin = matches!(dir, "usr/bin" | "usr/sbin" | "bin" | "sbin");
    if under(path, &COMPILER_DIRS)
        || bin
            && (COMPILER_PROGRAMS.contains(&name)
                || name.ends_with("-gcc")
                || name.ends_with("-g++")
                || name.contains("-gcc-"))
    {
        return Some(Keep::Compilers);
    }
    None
}

/// Whether a host image that keeps `keep` leaves `path` out.
pub fn excluded(path: &str, keep: &[Keep]) -> bool {
    class_of(path).is_some_and(|c| !keep.contains(&c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        for (path, class) in [
            ("usr/include/zlib.h", Some(Keep::Headers)),
            ("usr/lib/pkgconfig/zlib.pc", Some(Keep::Headers)),
            ("usr/lib/cmake/foo/FooConfig.cmake", Some(Keep::Headers)),
            ("usr/lib/libz.a", Some(Keep::Static)),
            ("usr/lib/libfoo.la", Some(Keep::Static)),
            ("usr/lib/crt1.o", Some(Keep::Static)),
            ("usr/share/man/man1/ls.1", Some(Keep::Docs)),
            ("usr/share/info/dir", Some(Keep::Docs)),
            ("usr/share/locale/de/LC_MESSAGES/coreutils.mo", Some(Keep::Docs)),
            ("usr/lib/gconv/UTF-16.so", Some(Keep::Docs)),
            ("usr/bin/gcc", Some(Keep::Compilers)),
            ("usr/bin/x86_64-pc-linux-gnu-gcc", Some(Keep::Compilers)),
            ("usr/bin/x86_64-pc-linux-gnu-gcc-15.2.0", Some(Keep::Compilers)),
            ("usr/bin/ld.bfd", Some(Keep::Compilers)),
            ("usr/bin/make", Some(Keep::Compilers)),
            (
                "usr/libexec/gcc/x86_64-pc-linux-gnu/15.2.0/cc1",
                Some(Keep::Compilers),
            ),
            (
                "usr/lib/gcc/x86_64-pc-linux-gnu/15.2.0/crtbegin.o",
                Some(Keep::Static),
            ),
            // What runs stays.
            ("usr/lib/libz.so.1.3.1", None),
            ("usr/lib/libgcc_s.so.1", None),
            ("usr/bin/ls", None),
            ("usr/sbin/sshd", None),
            ("usr/bin/ldd", None),
            ("usr/bin/asn1parse", None),
            ("usr/share/terminfo/l/linux", None),
            ("usr/share/zoneinfo/UTC", None),
            ("etc/ssl/certs/ca-certificates.crt", None),
            ("usr/lib/libgcc.so", None),
            ("usr/share/mandoc", None),
        ] {
            assert_eq!(class_of(path), class, "{path}");
        }
    }

    #[test]
    fn keep_brings_a_class_back() {
        assert!(excluded("usr/bin/gcc", &[]));
        assert!(!excluded("usr/bin/gcc", &[Keep::Compilers]));
        assert!(excluded("usr/include/zlib.h", &[Keep::Compilers]));
        assert!(!excluded("/usr/include/zlib.h", &[Keep::Headers]));
        assert!(!excluded("usr/bin/ls", &[]));
    }
}
