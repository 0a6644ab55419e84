//! Static archives made reproducible before packing.
//!
//! GNU `ar` and `ranlib` stamp an archive's symbol table (the member named `/`, `/SYM64/` or
//! `__.SYMDEF`) with the time they ran, unless they run in deterministic mode (`D`, or binutils
//! configured with `--enable-deterministic-archives`, as Debian's are). LFS's binutils is not,
//! so every `.a` an LFS build installs (libc.a, libgcc.a, libtclstub8.6.a...) would differ
//! from build to build by those twelve bytes alone. xlfs writes `0` there, as deterministic
//! mode does; the members and everything else stay as built. Thin archives (`!<thin>`) hold no
//! data and are left alone.
//!
//! [`normalize_armap`] is pure; [`normalize_tree`] walks a DESTDIR.

use std::io::{Read, Write};
use std::path::Path;

const MAGIC: &[u8; 8] = b"!<arch>\n";
const HEADER: usize = 60;
/// The date field of a member header: bytes 16..28, decimal seconds, space-padded.
const DATE: std::ops::Range<usize> = 16..28;
const SIZE: std::ops::Range<usize> = 48..58;

fn is_symbol_table(name: &[u8]) -> bool {
    let name = std::str::from_utf8(name).unwrap_or("").trim_end();
    matches!(name, "/" | "/SYM64/" | "__.SYMDEF" | "__.SYMDEF SORTED")
}

/// Set the date of every symbol table in the ar archive `bytes` to 0. Returns whether anything
/// changed; `false` too for bytes that are not a well-formed archive (they are left as they are).
pub fn normalize_armap(bytes: &mut [u8]) -> bool {
    if !bytes.starts_with(MAGIC) {
        return false;
    }
    // First find the symbol tables, without changing anything: a malformed archive stays intact.
    let mut tables = Vec::new();
    let mut at = MAGIC.len();
    while at < bytes.len() {
        if at + HEADER > bytes.len() || &bytes[at + 58..at + 60] != b"`\n" {
            return false;
        }
        let h = &bytes[at..at + HEADER];
        let Some(size) = std::str::from_utf8(&h[SIZE])
            .ok()
            .and_then(|s| s.trim().parse::<usize>().ok())
        else {
            return false;
        };
        if at + HEADER + size > bytes.len() {
            return false;
        }
        if is_symbol_table(&h[..16]) {
            tables.push(at);
        }
        at += HEADER + size + size % 2;
    }
    let mut zero = [b' '; 12];
    zero[0] = b'0';
    let mut changed = false;
    for t in tables {
        let date = &mut bytes[t + DATE.start..t + DATE.end];
        if date != zero {
            date.copy_from_slice(&zero);
            changed = true;
        }
    }
    changed
}

/// [`normalize_armap`] every regular file of `root` that is an ar archive (symbolic links are not
/// followed); the number of files changed.
pub fn normalize_tree(root: &Path) -> Result<usize, String> {
    let mut n = 0;
    for e in walkdir::WalkDir::new(root).follow_links(false) {
        let e = e.map_err(|e| e.to_string())?;
        if !e.file_type().is_file()
            || e.metadata().map(|m| m.len()).unwrap_or(0) < (MAGIC.len() + HEADER) as u64
        {
            continue;
        }
        let p = e.path();
        let err = |what: &str, x: std::io::Error| format!("{what} {}: {x}", p.display());
        let mut head = [0u8; 8];
        let mut f = std::fs::File::open(p).map_err(|x| err("cannot open", x))?;
        if f.read_exact(&mut head).is_err() || &head != MAGIC {
            continue;
        }
        let mut bytes = head.to_vec();
        f.read_to_end(&mut bytes).map_err(|x| err("cannot read", x))?;
        if normalize_armap(&mut bytes) {
            // In place (open for writing, not a new file): the mode, owner and links stay.
            let mut w = std::fs::OpenOptions::new()
                .write(true)
                .open(p)
                .map_err(|x| err("cannot write", x))?;
            w.write_all(&bytes).map_err(|x| err("cannot write", x))?;
            n += 1;
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// An archive from the build machine's `ar`, in the mode given (`U`: real times, as LFS's
    /// binutils makes them; `D`: deterministic).
    fn archive(dir: &Path, name: &str, mode: &str) -> Vec<u8> {
        let o = dir.join("x.o");
        let c = dir.join("x.c");
        std::fs::write(&c, "int xlfs_answer(void) { return 42; }\n").unwrap();
        let st = Command::new("cc")
            .arg("-c")
            .arg(&c)
            .arg("-o")
            .arg(&o)
            .status()
            .unwrap();
        assert!(st.success());
        let a = dir.join(name);
        let _ = std::fs::remove_file(&a);
        let st = Command::new("ar")
            .arg(format!("rcs{mode}"))
            .arg(&a)
            .arg(&o)
            .status()
            .unwrap();
        assert!(st.success());
        std::fs::read(&a).unwrap()
    }

    #[test]
    fn a_symbol_table_s_time_becomes_what_deterministic_mode_writes() {
        let dir = tempfile::tempdir().unwrap();
        let real = archive(dir.path(), "u.a", "U");
        let det = archive(dir.path(), "d.a", "D");
        assert_ne!(
            real[MAGIC.len()..][DATE].to_vec(),
            det[MAGIC.len()..][DATE].to_vec()
        );
        // The member's own header differs too in U mode (its file's time, owner, mode), so
        // compare the symbol table's header and everything after the member headers' dates.
        let mut fixed = real.clone();
        assert!(normalize_armap(&mut fixed));
        assert_eq!(fixed[..MAGIC.len() + HEADER], det[..MAGIC.len() + HEADER]);
        assert_eq!(fixed.len(), real.len());
        // Idempotent, and a deterministic archive is left as it is.
        assert!(!normalize_armap(&mut fixed));
        let mut d = det.clone();
        assert!(!normalize_armap(&mut d));
        assert_eq!(d, det);
        // Not an archive, or a truncated one: untouched.
        let mut text = b"!<arch>\nnot really".to_vec();
        assert!(!normalize_armap(&mut text));
        let mut cut = real[..real.len() - 10].to_vec();
        let before = cut.clone();
        assert!(!normalize_armap(&mut cut));
        assert_eq!(cut, before);
    }

    #[test]
    fn a_tree_s_archives_are_fixed_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("destdir");
        std::fs::create_dir_all(root.join("usr/lib")).unwrap();
        let real = archive(dir.path(), "u.a", "U");
        std::fs::write(root.join("usr/lib/libx.a"), &real).unwrap();
        std::os::unix::fs::symlink("libx.a", root.join("usr/lib/liby.a")).unwrap();
        std::fs::write(root.join("usr/lib/notes.txt"), "!<arch>\n".repeat(20)).unwrap();
        assert_eq!(normalize_tree(&root).unwrap(), 1);
        let mut expect = real.clone();
        normalize_armap(&mut expect);
        assert_eq!(std::fs::read(root.join("usr/lib/libx.a")).unwrap(), expect);
        assert_eq!(normalize_tree(&root).unwrap(), 0);
    }
}
