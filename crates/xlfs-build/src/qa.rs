//! The contamination check run after every build, before the artifact is stored: the same job
//! as Yocto's QA checks (`ldd`/host-user-contaminated, `rpaths`, `buildpaths`).
//!
//! - **needed**: every `DT_NEEDED` of an ELF file names a library that the package installs
//!   itself, that one of its declared dependencies installs (the build root: build dependencies
//!   and their runtime closure), or that the toolchain provides. Anything else was picked up from
//!   the build machine.
//! - **rpaths**: every `RPATH`/`RUNPATH` entry lies under `/usr`. `$ORIGIN` (or `${ORIGIN}`)
//!   stands for the directory of the file as installed, so an entry such as `$ORIGIN/../lib` in
//!   `/usr/bin/x` is fine; one that climbs out of `/usr`, a relative entry and an empty entry
//!   (the current directory) are not.
//! - **buildpaths**: no installed file, text or binary, holds the build directory outside the
//!   sandbox, the home, or the sandbox's source directory `/build/src/`.
//!
//! - **shadows**: no installed directory sits where a dependency installs a symbolic link (a
//!   merged `/usr`'s `/bin -> usr/bin`): in a root made of both, the directory would hide the
//!   link and everything behind it.
//! - **strays**: no regular file lies at the top of the tree (`/AnyDBM_File.0`): an install
//!   directory variable was empty.
//! - **layout**: nothing but a directory (or a symbolic link: a merged `/usr`'s `/sbin`) sits
//!   where the file system hierarchy has a directory ([`LAYOUT_DIRS`]): `mv usr/bin/chroot
//!   usr/sbin` into a destdir without `usr/sbin` renames the program to `/usr/sbin`.
//!
//! A recipe may turn a check off with `[build.qa-skip] CHECK = "reason"`.
//!
//! The checks read only the installed tree; what counts as a dependency's or the toolchain's
//! library comes in as sets of file names.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Component, Path, PathBuf};

/// Search strings shorter than this are not looked for (a home at `/x` would match everything).
pub const MIN_BUILD_PATH: usize = 8;

/// The directories of the file system hierarchy (FHS, and LFS's layout) that an installed tree
/// may only hold as directories or symbolic links.
pub const LAYOUT_DIRS: &[&str] = &[
    "bin",
    "boot",
    "dev",
    "etc",
    "etc/default",
    "etc/init.d",
    "etc/profile.d",
    "etc/rc.d",
    "etc/sysconfig",
    "home",
    "lib",
    "lib64",
    "media",
    "mnt",
    "opt",
    "proc",
    "root",
    "run",
    "sbin",
    "srv",
    "sys",
    "tmp",
    "usr",
    "usr/bin",
    "usr/include",
    "usr/lib",
    "usr/lib64",
    "usr/libexec",
    "usr/local",
    "usr/sbin",
    "usr/share",
    "usr/share/doc",
    "usr/share/info",
    "usr/share/locale",
    "usr/share/man",
    "usr/share/man/man1",
    "usr/share/man/man2",
    "usr/share/man/man3",
    "usr/share/man/man4",
    "usr/share/man/man5",
    "usr/share/man/man6",
    "usr/share/man/man7",
    "usr/share/man/man8",
    "usr/share/misc",
    "usr/share/zoneinfo",
    "usr/src",
    "var",
    "var/cache",
    "var/lib",
    "var/local",
    "var/log",
    "var/mail",
    "var/opt",
    "var/spool",
    "var/tmp",
];

/// What the checks compare the installed tree with.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Qa {
    /// File names of the libraries that the declared dependencies install.
    pub dep_libs: BTreeSet<String>,
    /// File names (sonames) of the toolchain's own libraries.
    pub toolchain_libs: BTreeSet<String>,
    /// Strings no installed file may hold.
    pub build_paths: Vec<String>,
    /// Symbolic links near the top of the declared dependencies' outputs (installed path, e.g.
    /// `/bin`, → its target), which no installed directory may hide.
    pub dep_links: BTreeMap<String, String>,
    /// Checks turned off (by name: `needed`, `rpaths`, `buildpaths`, `shadows`, `strays`,
    /// `layout`).
    pub skip: BTreeSet<String>,
}

/// One finding: which check, which installed file, what offends, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Problem {
    pub check: String,
    /// Path in the installed tree, with a leading `/`.
    pub file: String,
    pub value: String,
    pub fix: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: `{}`; {}", self.check, self.file, self.value, self.fix)
    }
}

/// Run the checks on the installed tree `destdir`.
pub fn check(destdir: &Path, qa: &Qa) -> std::io::Result<Vec<Problem>> {
    let own = library_names(destdir, None);
    let searched: Vec<&String> = qa
        .build_paths
        .iter()
        .filter(|p| p.len() >= MIN_BUILD_PATH)
        .collect();
    let mut problems = Vec::new();
    for entry in walkdir::WalkDir::new(destdir).sort_by_file_name() {
        let entry = entry.map_err(std::io::Error::other)?;
        let rel = entry.path().strip_prefix(destdir).unwrap_or(entry.path());
        let installed = Path::new("/").join(rel);
        let file = installed.display().to_string();
        if entry.file_type().is_dir() {
            if let Some(target) = qa.dep_links.get(&file).filter(|_| !qa.skip.contains("shadows")) {
                problems.push(Problem {
                    check: "shadows".into(),
                    file: file.clone(),
                    value: format!("a dependency installs {file} -> {target}"),
                    fix: format!("this directory would hide the dependency's symbolic link in a root made of both: install under the link's target instead (e.g. ./configure --bindir=/usr/bin --sbindir=/usr/sbin, or move the files in post-install to {target})"),
                });
            }
            continue;
        }
        if !entry.file_type().is_symlink()
            && LAYOUT_DIRS.contains(&rel.to_string_lossy().as_ref())
            && !qa.skip.contains("layout")
        {
            problems.push(Problem {
                check: "layout".into(),
                file: file.clone(),
                value: "not a directory, where the file system hierarchy has one".into(),
                fix: format!("a command probably moved or copied a file to {file} while that directory did not exist in the destdir: make it first (install -d \"$DESTDIR\"{file}) or name the file in the destination"),
            });
        }
        if !entry.file_type().is_file() {
            continue;
        }
        if entry.depth() == 1 && !qa.skip.contains("strays") {
            problems.push(Problem {
                check: "strays".into(),
                file: file.clone(),
                value: "a regular file at the top of the filesystem".into(),
                fix: "an install directory was probably empty (a man page or data directory the configure step did not find): set it explicitly, e.g. perl's -D man3dir=/usr/share/man/man3".into(),
            });
        }
        let bytes = std::fs::read(entry.path())?;
        if let Some(dynamic) = xlfs_store::inspect_elf(&bytes) {
            if !qa.skip.contains("needed") {
                for lib in &dynamic.needed {
                    let name = lib.rsplit('/').next().unwrap_or(lib);
                    if own.contains(name) || qa.dep_libs.contains(name) || qa.toolchain_libs.contains(name) {
                        continue;
                    }
                    problems.push(Problem {
                        check: "needed".into(),
                        file: file.clone(),
                        value: lib.clone(),
                        fix: "no declared dependency and not the toolchain provides this library, so it came from the build machine: add the package that provides it to depends.build (and depends.run), or configure the build not to use it".into(),
                    });
                }
            }
            if !qa.skip.contains("rpaths") {
                for entry in dynamic.rpaths.iter().flat_map(|r| r.split(':')) {
                    if rpath_ok(entry, &installed) {
                        continue;
                    }
                    problems.push(Problem {
                        check: "rpaths".into(),
                        file: file.clone(),
                        value: entry.to_string(),
                        fix: "RPATH/RUNPATH entries must lie under /usr (or be $ORIGIN-relative and stay there): configure the build without it (e.g. --disable-rpath, -DCMAKE_SKIP_RPATH=ON) or remove it with `chrpath -d` / `patchelf --remove-rpath` in post-install".into(),
                    });
                }
            }
        }
        if !qa.skip.contains("buildpaths") {
            for p in &searched {
                if memchr::memmem::find(&bytes, p.as_bytes()).is_some() {
                    problems.push(Problem {
                        check: "buildpaths".into(),
                        file: file.clone(),
                        value: p.to_string(),
                        fix: "the file records where it was built: strip debug information, pass -ffile-prefix-map=/build/src=. or fix the script that wrote the path; if it is harmless, add [build.qa-skip] buildpaths = \"why\" to the recipe".into(),
                    });
                }
            }
        }
    }
    Ok(problems)
}

/// Names of the files and symbolic links that look like shared libraries (`*.so`, `*.so.*`)
/// below `root`; with `dirs`, only in those directories of `root` (and one level below them,
/// for Debian's multiarch `usr/lib/x86_64-linux-gnu`).
pub fn library_names(root: &Path, dirs: Option<&[&str]>) -> BTreeSet<String> {
    let starts: Vec<(PathBuf, usize)> = match dirs {
        Some(dirs) => dirs.iter().map(|d| (root.join(d), 2)).collect(),
        None => vec![(root.to_path_buf(), usize::MAX)],
    };
    let mut names = BTreeSet::new();
    for (start, depth) in starts {
        for e in walkdir::WalkDir::new(start)
            .max_depth(depth)
            .into_iter()
            .filter_map(Result::ok)
        {
            if e.file_type().is_dir() {
                continue;
            }
            let name = e.file_name().to_string_lossy();
            if name.ends_with(".so") || name.contains(".so.") {
                names.insert(name.into_owned());
            }
        }
    }
    names
}

/// The symbolic links of `root` at most `depth` levels down, as installed paths (`/bin`) with
/// their targets.
pub fn link_paths(root: &Path, depth: usize) -> BTreeMap<String, String> {
    walkdir::WalkDir::new(root)
        .min_depth(1)
        .max_depth(depth)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.path_is_symlink())
        .filter_map(|e| {
            let target = std::fs::read_link(e.path()).ok()?;
            let rel = e.path().strip_prefix(root).ok()?;
            Some((
                Path::new("/").join(rel).display().to_string(),
                target.display().to_string(),
            ))
        })
        .collect()
}

/// Whether an RPATH/RUNPATH entry of the file installed at `installed` stays under `/usr`.
pub fn rpath_ok(entry: &str, installed: &Path) -> bool {
    let origin = installed.parent().unwrap_or(Path::new("/"));
    let expanded = if let Some(rest) = entry
        .strip_prefix("$ORIGIN")
        .or_else(|| entry.strip_prefix("${ORIGIN}"))
    {
        if !(rest.is_empty() || rest.starts_with('/')) {
            return false;
        }
        format!("{}{rest}", origin.display())
    } else if entry.starts_with('/') {
        entry.to_string()
    } else {
        // Empty (the current directory) or relative: depends on where the program runs.
        return false;
    };
    if expanded.contains('$') {
        // $LIB, $PLATFORM: expanded by the loader, not checked here.
        return false;
    }
    let mut path = PathBuf::from("/");
    for c in Path::new(&expanded).components() {
        match c {
            Component::Normal(n) => path.push(n),
            Component::ParentDir => {
                path.pop();
            }
            _ => {}
        }
    }
    path.starts_with("/usr")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shadows_and_strays() {
        let dep = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dep.path().join("usr/bin")).unwrap();
        std::os::unix::fs::symlink("usr/bin", dep.path().join("bin")).unwrap();
        std::os::unix::fs::symlink("../../lib/x", dep.path().join("usr/bin/deep-enough")).unwrap();
        let links = link_paths(dep.path(), 3);
        assert_eq!(links.get("/bin").map(String::as_str), Some("usr/bin"));
        assert!(links.contains_key("/usr/bin/deep-enough"));
        assert_eq!(link_paths(dep.path(), 1).len(), 1);

        let dest = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dest.path().join("bin")).unwrap();
        std::fs::write(dest.path().join("bin/dmesg"), b"x").unwrap();
        std::fs::create_dir_all(dest.path().join("usr/share")).unwrap();
        std::fs::write(dest.path().join("AnyDBM_File.0"), b"man").unwrap();
        std::os::unix::fs::symlink("usr/lib", dest.path().join("lib")).unwrap();
        let mut qa = Qa {
            dep_links: links,
            ..Qa::default()
        };
        let found = check(dest.path(), &qa).unwrap();
        let got: Vec<(&str, &str)> = found
            .iter()
            .map(|p| (p.check.as_str(), p.file.as_str()))
            .collect();
        assert_eq!(got, [("strays", "/AnyDBM_File.0"), ("shadows", "/bin")]);
        assert!(found[1].value.contains("/bin -> usr/bin"), "{}", found[1]);

        // `mv usr/bin/chroot usr/sbin` without usr/sbin: the program is now /usr/sbin. A link
        // there (merged /usr) and a file below it are fine.
        std::fs::write(dest.path().join("usr/sbin"), b"\x7fELF").unwrap();
        std::os::unix::fs::symlink("usr/bin", dest.path().join("sbin")).unwrap();
        std::fs::write(dest.path().join("usr/share/sbin"), b"x").unwrap();
        let found = check(dest.path(), &qa).unwrap();
        let layout: Vec<&str> = found
            .iter()
            .filter(|p| p.check == "layout")
            .map(|p| p.file.as_str())
            .collect();
        assert_eq!(layout, ["/usr/sbin"]);
        assert!(found
            .iter()
            .any(|p| p.fix.contains("install -d \"$DESTDIR\"/usr/sbin")));

        qa.skip = ["shadows", "strays", "layout"].map(String::from).into();
        assert!(check(dest.path(), &qa).unwrap().is_empty());
    }

    #[test]
    fn rpaths() {
        let bin = Path::new("/usr/bin/x");
        for ok in [
            "/usr/lib",
            "/usr/lib/xen",
            "$ORIGIN/../lib",
            "${ORIGIN}",
            "/usr/lib/../lib64",
        ] {
            assert!(rpath_ok(ok, bin), "{ok}");
        }
        for bad in [
            "/build/x",
            "/build/src/zlib-1.3.1",
            "/sysroot/usr/lib",
            "/tmp",
            "/lib",
            "lib",
            "",
            "$ORIGIN/../../lib",
            "$ORIGINx",
            "/usr/../etc",
            "/usr/$LIB",
        ] {
            assert!(!rpath_ok(bad, bin), "{bad:?}");
        }
    }
}
