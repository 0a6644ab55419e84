//! The audit of an assembled root file system, before it is written: what the issue calls the
//! "host contamination" proof and the image budget.
//!
//! - every ELF file's interpreter (`PT_INTERP`) and every `DT_NEEDED` library resolves inside
//!   the image (through `RPATH`/`RUNPATH` with `$ORIGIN`, the trusted directories and the
//!   directories of `/etc/ld.so.conf`, following the image's own symbolic links);
//! - no file holds a build-machine path (the caller passes the strings: the build directory, the
//!   home, the build machine's target triple...);
//! - the budget's facts: total size, setuid/setgid files, Python, X11 libraries, compilers.
//!
//! Pure over a [`RootFs`]: file contents are read from their sources, nothing is written.

use crate::rootfs::{FileSource, NodeKind, RootFs};
use std::collections::{BTreeMap, BTreeSet};

/// What the audit found.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Audit {
    /// `path: problem` for every unresolved interpreter or library.
    pub unresolved: Vec<String>,
    /// `path: string` for every build-machine string found.
    pub build_paths: Vec<String>,
    /// Files with the setuid or setgid bit.
    pub setuid: Vec<String>,
    /// Python interpreters or modules found.
    pub python: Vec<String>,
    /// X11 client libraries found.
    pub x11: Vec<String>,
    /// Compilers, assemblers and linkers found.
    pub compilers: Vec<String>,
    /// Sum of the regular files' sizes.
    pub bytes: u64,
    /// ELF files checked.
    pub elf_files: usize,
}

impl Audit {
    /// A one-line summary.
    pub fn summary(&self) -> String {
        format!(
            "{} ELF files, {} unresolved, {} build paths, {} setuid/setgid, python {}, X11 {}, compilers {}, {:.1} MiB",
            self.elf_files,
            self.unresolved.len(),
            self.build_paths.len(),
            self.setuid.len(),
            self.python.len(),
            self.x11.len(),
            self.compilers.len(),
            self.bytes as f64 / (1024.0 * 1024.0)
        )
    }
}

const TRUSTED_DIRS: [&str; 4] = ["lib64", "usr/lib64", "lib", "usr/lib"];

/// Read a file's bytes from the image.
fn read(fs: &RootFs, path: &str) -> Option<Vec<u8>> {
    match &fs.get(path)?.kind {
        NodeKind::File { source } => match source {
            FileSource::Bytes(b) => Some(b.clone()),
            FileSource::Path(p) => std::fs::read(p).ok(),
        },
        _ => None,
    }
}

/// Resolve `path` (absolute or relative to the image root, no leading `/` needed) inside the
/// image, following symbolic links (at most 40), to a regular file's path.
pub fn resolve(fs: &RootFs, path: &str) -> Option<String> {
    let mut parts: Vec<String> = Vec::new();
    let mut todo: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .rev()
        .collect();
    let mut hops = 0;
    while let Some(part) = todo.pop() {
        match part.as_str() {
            "." => continue,
            ".." => {
                parts.pop();
                continue;
            }
            _ => {}
        }
        parts.push(part);
        let here = parts.join("/");
        let node = fs.get(&here)?;
        if let NodeKind::Symlink { target } = &node.kind {
            hops += 1;
            if hops > 40 {
                return None;
            }
            parts.pop();
            if target.starts_with('/') {
                parts.clear();
            }
            todo.extend(
                target
                    .split('/')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .rev(),
            );
        }
    }
    let p = parts.join("/");
    matches!(fs.get(&p)?.kind, NodeKind::File { .. }).then_some(p)
}

/// The directories `/etc/ld.so.conf` lists (with its `include` globs of one `*`).
fn ld_so_conf_dirs(fs: &RootFs) -> Vec<String> {
    let mut dirs = Vec::new();
    let mut files = vec!["etc/ld.so.conf".to_string()];
    let mut seen = BTreeSet::new();
    while let Some(f) = files.pop() {
        if !seen.insert(f.clone()) {
            continue;
        }
        let Some(text) = read(fs, &f) else { continue };
        for line in String::from_utf8_lossy(&text).lines() {
            let line = line.split('#').next().unwrap_or("").trim();
            if let Some(pattern) = line.strip_prefix("include ") {
                let pattern = pattern.trim().trim_start_matches('/');
                let (dir, file) = pattern.rsplit_once('/').unwrap_or(("", pattern));
                let (pre, post) = file.split_once('*').unwrap_or((file, ""));
                for p in fs.paths() {
                    let Some(name) = p.strip_prefix(dir).and_then(|r| r.strip_prefix('/')) else {
                        continue;
                    };
                    if !name.contains('/') && name.starts_with(pre) && name.ends_with(post) {
                        files.push(p.to_string());
                    }
                }
            } else if !line.is_empty() {
                dirs.push(line.trim_start_matches('/').to_string());
            }
        }
    }
    dirs
}

/// Audit `fs`: `forbidden` are the build-machine strings no file may hold.
pub fn audit(fs: &RootFs, forbidden: &[&str]) -> Audit {
    let mut a = Audit::default();
    let conf_dirs = ld_so_conf_dirs(fs);
    let finders: Vec<memchr::memmem::Finder> = forbidden
        .iter()
        .filter(|s| !s.is_empty())
        .map(|s| memchr::memmem::Finder::new(s.as_bytes()))
        .collect();
    let mut found_cache: BTreeMap<String, bool> = BTreeMap::new();
    for (path, node) in fs.iter() {
        let name = path.rsplit('/').next().unwrap_or(path);
        // An interpreter (usr/bin/python3.13), its library directory (usr/lib/python3.13) or a
        // script or compiled module.
        let python = name == "python" || name.starts_with("python2") || name.starts_with("python3");
        if python || name.ends_with(".py") || name.ends_with(".pyc") {
            a.python.push(path.to_string());
        }
        if name.starts_with("libX11") || name.starts_with("libxcb") || name.starts_with("libXext") {
            a.x11.push(path.to_string());
        }
        if path.starts_with("usr/bin/") || path.starts_with("usr/sbin/") || path.starts_with("bin/") {
            let compilers = [
                "cc", "gcc", "c++", "g++", "cpp", "as", "ld", "ld.bfd", "ld.gold", "clang", "tcc",
            ];
            if compilers.contains(&name) || name.ends_with("-gcc") {
                a.compilers.push(path.to_string());
            }
        }
        let NodeKind::File { .. } = node.kind else {
            continue;
        };
        if node.mode & 0o6000 != 0 {
            a.setuid.push(path.to_string());
        }
        let Some(bytes) = read(fs, path) else {
            a.unresolved.push(format!("{path}: cannot read its content"));
            continue;
        };
        a.bytes += bytes.len() as u64;
        for (f, s) in finders.iter().zip(forbidden.iter().filter(|s| !s.is_empty())) {
            if f.find(&bytes).is_some() {
                a.build_paths.push(format!("{path}: {s}"));
            }
        }
        let Some(info) = xlfs_store::inspect_elf(&bytes) else {
            continue;
        };
        a.elf_files += 1;
        if let Some(interp) = &info.interp {
            if resolve(fs, interp).is_none() {
                a.unresolved
                    .push(format!("{path}: interpreter {interp} is not in the image"));
            }
        }
        let origin = path.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
        let mut dirs: Vec<String> = Vec::new();
        for r in &info.rpaths {
            for d in r.split(':').filter(|d| !d.is_empty()) {
                dirs.push(
                    d.replace("$ORIGIN", &format!("/{origin}"))
                        .replace("${ORIGIN}", &format!("/{origin}")),
                );
            }
        }
        dirs.extend(TRUSTED_DIRS.iter().map(|d| d.to_string()));
        dirs.extend(conf_dirs.iter().cloned());
        for lib in &info.needed {
            let key = format!("{}\u{0}{lib}", dirs.join(":"));
            let ok = *found_cache.entry(key).or_insert_with(|| {
                if lib.contains('/') {
                    return resolve(fs, lib).is_some();
                }
                dirs.iter().any(|d| resolve(fs, &format!("{d}/{lib}")).is_some())
            });
            if !ok {
                a.unresolved
                    .push(format!("{path}: needs {lib}, which is not in the image"));
            }
        }
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal x86-64 ELF executable with a PT_INTERP and a dynamic section needing `libs`.
    fn elf(interp: &str, libs: &[&str]) -> Vec<u8> {
        // Layout: ELF header (64) | 3 program headers (3*56) | interp | strtab | dynamic.
        let phoff = 64usize;
        let mut strtab = vec![0u8];
        let mut offs = Vec::new();
        for l in libs {
            offs.push(strtab.len() as u64);
            strtab.extend_from_slice(l.as_bytes());
            strtab.push(0);
        }
        let interp_off = phoff + 3 * 56;
        let interp_bytes = [interp.as_bytes(), &[0]].concat();
        let str_off = interp_off + interp_bytes.len();
        let dyn_off = (str_off + strtab.len()).div_ceil(8) * 8;
        let mut dynamic: Vec<(u64, u64)> = offs.iter().map(|o| (1u64, *o)).collect(); // DT_NEEDED
        dynamic.push((5, str_off as u64)); // DT_STRTAB (vaddr = offset: one PT_LOAD at 0)
        dynamic.push((10, strtab.len() as u64)); // DT_STRSZ
        dynamic.push((0, 0));
        let total = dyn_off + dynamic.len() * 16;
        let mut b = vec![0u8; total];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 2; // 64-bit
        b[5] = 1; // little endian
        b[6] = 1;
        b[16..18].copy_from_slice(&3u16.to_le_bytes()); // ET_DYN
        b[18..20].copy_from_slice(&62u16.to_le_bytes()); // x86-64
        b[20..24].copy_from_slice(&1u32.to_le_bytes());
        b[32..40].copy_from_slice(&(phoff as u64).to_le_bytes());
        b[52..54].copy_from_slice(&64u16.to_le_bytes());
        b[54..56].copy_from_slice(&56u16.to_le_bytes());
        b[56..58].copy_from_slice(&3u16.to_le_bytes());
        let ph = |b: &mut Vec<u8>, i: usize, ty: u32, off: usize, size: usize| {
            let o = phoff + i * 56;
            b[o..o + 4].copy_from_slice(&ty.to_le_bytes());
            b[o + 8..o + 16].copy_from_slice(&(off as u64).to_le_bytes());
            b[o + 16..o + 24].copy_from_slice(&(off as u64).to_le_bytes());
            b[o + 24..o + 32].copy_from_slice(&(off as u64).to_le_bytes());
            b[o + 32..o + 40].copy_from_slice(&(size as u64).to_le_bytes());
            b[o + 40..o + 48].copy_from_slice(&(size as u64).to_le_bytes());
        };
        ph(&mut b, 0, 3, interp_off, interp_bytes.len()); // PT_INTERP
        ph(&mut b, 1, 1, 0, total); // PT_LOAD
        ph(&mut b, 2, 2, dyn_off, dynamic.len() * 16); // PT_DYNAMIC
        b[interp_off..interp_off + interp_bytes.len()].copy_from_slice(&interp_bytes);
        b[str_off..str_off + strtab.len()].copy_from_slice(&strtab);
        for (i, (t, v)) in dynamic.iter().enumerate() {
            let o = dyn_off + i * 16;
            b[o..o + 8].copy_from_slice(&t.to_le_bytes());
            b[o + 8..o + 16].copy_from_slice(&v.to_le_bytes());
        }
        b
    }

    fn image() -> RootFs {
        let mut fs = RootFs::new();
        for d in [
            "usr",
            "usr/bin",
            "usr/lib",
            "lib64",
            "etc",
            "etc/ld.so.conf.d",
            "opt",
            "opt/x",
        ] {
            fs.add_dir(d, 0o755, 0, 0).unwrap();
        }
        fs.add_symlink("lib", "usr/lib").unwrap();
        fs.add_file("usr/lib/ld-linux-x86-64.so.2", b"loader".to_vec(), 0o755, 0, 0)
            .unwrap();
        fs.add_symlink("lib64/ld-linux-x86-64.so.2", "../lib/ld-linux-x86-64.so.2")
            .unwrap();
        fs.add_file("usr/lib/libc.so.6", b"libc".to_vec(), 0o755, 0, 0)
            .unwrap();
        fs.add_file("opt/x/libx.so.1", b"x".to_vec(), 0o755, 0, 0)
            .unwrap();
        fs.add_file(
            "etc/ld.so.conf",
            b"include /etc/ld.so.conf.d/*.conf\n".to_vec(),
            0o644,
            0,
            0,
        )
        .unwrap();
        fs.add_file("etc/ld.so.conf.d/x.conf", b"/opt/x\n".to_vec(), 0o644, 0, 0)
            .unwrap();
        fs
    }

    #[test]
    fn interpreters_and_libraries_resolve_through_links_and_ld_so_conf() {
        let mut fs = image();
        let ok = elf("/lib64/ld-linux-x86-64.so.2", &["libc.so.6", "libx.so.1"]);
        fs.add_file("usr/bin/ok", ok, 0o755, 0, 0).unwrap();
        let a = audit(&fs, &[]);
        assert_eq!(a.elf_files, 1);
        assert!(a.unresolved.is_empty(), "{:?}", a.unresolved);

        let bad = elf("/lib/ld-musl-x86_64.so.1", &["libc.so.6", "libssl.so.3"]);
        fs.add_file("usr/bin/bad", bad, 0o4755, 0, 0).unwrap();
        let a = audit(&fs, &[]);
        assert_eq!(
            a.unresolved,
            [
                "usr/bin/bad: interpreter /lib/ld-musl-x86_64.so.1 is not in the image",
                "usr/bin/bad: needs libssl.so.3, which is not in the image"
            ]
        );
        assert_eq!(a.setuid, ["usr/bin/bad"]);
    }

    #[test]
    fn build_machine_strings_python_x11_and_compilers_are_found() {
        let mut fs = image();
        fs.add_file(
            "usr/lib/libfoo.so",
            b"built in /build/src/foo-1.0".to_vec(),
            0o644,
            0,
            0,
        )
        .unwrap();
        fs.add_file("usr/lib/libX11.so.6", b"x".to_vec(), 0o644, 0, 0)
            .unwrap();
        fs.add_file("usr/bin/python3.13", b"x".to_vec(), 0o755, 0, 0)
            .unwrap();
        fs.add_file("usr/bin/gcc", b"x".to_vec(), 0o755, 0, 0).unwrap();
        fs.add_file("usr/bin/helper.py", b"x".to_vec(), 0o755, 0, 0)
            .unwrap();
        let a = audit(&fs, &["/build/src/", "x86_64-linux-gnu"]);
        assert_eq!(a.build_paths, ["usr/lib/libfoo.so: /build/src/"]);
        assert_eq!(a.x11, ["usr/lib/libX11.so.6"]);
        assert_eq!(a.python, ["usr/bin/helper.py", "usr/bin/python3.13"]);
        assert_eq!(a.compilers, ["usr/bin/gcc"]);
        assert!(a.summary().contains("1 build paths"));
    }

    #[test]
    fn symlink_loops_and_dangling_links_do_not_resolve() {
        let mut fs = image();
        fs.add_symlink("usr/lib/a", "b").unwrap();
        fs.add_symlink("usr/lib/b", "a").unwrap();
        fs.add_symlink("usr/lib/c", "/nowhere").unwrap();
        assert_eq!(resolve(&fs, "/usr/lib/a"), None);
        assert_eq!(resolve(&fs, "usr/lib/c"), None);
        assert_eq!(
            resolve(&fs, "/lib64/ld-linux-x86-64.so.2").as_deref(),
            Some("usr/lib/ld-linux-x86-64.so.2")
        );
    }
}
