//! Helpers shared by the integration tests: building tar archives on the
//! fly (including malicious members written with raw headers) and
//! compressing them.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};

use tar::{EntryType, Header};

/// Fixed mtime written into every member.
pub const MTIME: u64 = 1_600_000_000;

/// Compression applied to a test archive.
#[derive(Debug, Clone, Copy)]
pub enum Comp {
    None,
    Gz,
    Xz,
    Bz2,
    Zst,
}

impl Comp {
    pub fn ext(self) -> &'static str {
        match self {
            Comp::None => "tar",
            Comp::Gz => "tar.gz",
            Comp::Xz => "tar.xz",
            Comp::Bz2 => "tar.bz2",
            Comp::Zst => "tar.zst",
        }
    }

    pub fn compress(self, data: &[u8]) -> Vec<u8> {
        match self {
            Comp::None => data.to_vec(),
            Comp::Gz => {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                e.write_all(data).unwrap();
                e.finish().unwrap()
            }
            Comp::Xz => {
                let mut e = liblzma::write::XzEncoder::new(Vec::new(), 1);
                e.write_all(data).unwrap();
                e.finish().unwrap()
            }
            Comp::Bz2 => {
                let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
                e.write_all(data).unwrap();
                e.finish().unwrap()
            }
            Comp::Zst => zstd::encode_all(data, 1).unwrap(),
        }
    }
}

/// Builds a tar archive in memory. Every member is written with a raw
/// header so that paths and link targets the `tar` crate would refuse to
/// write (`..`, absolute paths) can be crafted.
pub struct Tar {
    b: tar::Builder<Vec<u8>>,
}

impl Default for Tar {
    fn default() -> Self {
        Self::new()
    }
}

impl Tar {
    pub fn new() -> Self {
        Tar {
            b: tar::Builder::new(Vec::new()),
        }
    }

    /// Appends a member with raw name and link-name bytes (each at most
    /// 100 bytes).
    pub fn raw(&mut self, name: &str, kind: EntryType, mode: u32, link: &str, data: &[u8]) -> &mut Self {
        let mut h = Header::new_gnu();
        {
            let old = h.as_old_mut();
            old.name[..name.len()].copy_from_slice(name.as_bytes());
            old.linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(data.len() as u64);
        h.set_mtime(MTIME);
        h.set_uid(1234);
        h.set_gid(1234);
        h.set_cksum();
        self.b.append(&h, data).unwrap();
        self
    }

    pub fn file(&mut self, name: &str, mode: u32, data: &[u8]) -> &mut Self {
        self.raw(name, EntryType::Regular, mode, "", data)
    }

    pub fn dir(&mut self, name: &str, mode: u32) -> &mut Self {
        self.raw(name, EntryType::Directory, mode, "", b"")
    }

    pub fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.raw(name, EntryType::Symlink, 0o777, target, b"")
    }

    pub fn hardlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.raw(name, EntryType::Link, 0o644, target, b"")
    }

    /// Appends a regular file through the builder's own path handling
    /// (which emits GNU long-name headers for long paths).
    pub fn long_file(&mut self, name: &str, data: &[u8]) -> &mut Self {
        let mut h = Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(MTIME);
        h.set_entry_type(EntryType::Regular);
        self.b.append_data(&mut h, name, data).unwrap();
        self
    }

    /// Appends a PAX global header like the one `git archive` writes.
    pub fn pax_global(&mut self) -> &mut Self {
        let rec = b"52 comment=0123456789abcdef0123456789abcdef01234567\n";
        self.raw("pax_global_header", EntryType::XGlobalHeader, 0o666, "", rec)
    }

    pub fn bytes(&mut self) -> Vec<u8> {
        let b = std::mem::replace(&mut self.b, tar::Builder::new(Vec::new()));
        b.into_inner().unwrap()
    }

    /// Finishes the archive, compresses it and writes it into `dir`.
    pub fn write(&mut self, dir: &Path, name: &str, comp: Comp) -> PathBuf {
        let data = comp.compress(&self.bytes());
        let path = dir.join(format!("{name}.{}", comp.ext()));
        std::fs::write(&path, data).unwrap();
        path
    }
}

/// Names of the entries of a directory, sorted.
pub fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}
