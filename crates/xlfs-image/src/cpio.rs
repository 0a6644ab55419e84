//! Deterministic cpio "newc" archives (initramfs images) and reading them back.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::Path;

use flate2::write::GzEncoder;
use flate2::{Compression, GzBuilder};

use crate::error::{ImageError, IoContext};
use crate::rootfs::{FileSource, Node, NodeKind, RootFs};
use crate::util::TempOutput;

const MAGIC: &[u8; 6] = b"070701";
const MAGIC_CRC: &[u8; 6] = b"070702";
const HEADER_LEN: usize = 110;
const TRAILER: &str = "TRAILER!!!";

/// One entry of a cpio archive, as read back by [`read_cpio`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpioEntry {
    /// Path as stored in the archive (`.` for the root directory).
    pub path: String,
    /// Inode number field.
    pub ino: u32,
    /// Full `st_mode` including the file type bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Link count field.
    pub nlink: u32,
    /// Modification time (seconds since the epoch).
    pub mtime: u64,
    /// Size of the data in the archive.
    pub size: u64,
    /// File content for regular files, link target for symlinks, empty
    /// otherwise.
    pub data: Vec<u8>,
    /// Device major number (`rdevmajor`) for device nodes.
    pub rdev_major: u32,
    /// Device minor number (`rdevminor`) for device nodes.
    pub rdev_minor: u32,
}

impl CpioEntry {
    /// The file type bits of [`CpioEntry::mode`] (`libc::S_IFREG`, ...).
    pub fn file_type(&self) -> u32 {
        self.mode & libc::S_IFMT
    }

    /// The link target if this is a symlink.
    pub fn link_target(&self) -> Option<String> {
        (self.file_type() == libc::S_IFLNK).then(|| String::from_utf8_lossy(&self.data).into_owned())
    }
}

/// Writes `fs` as a cpio "newc" archive to `out` (optionally gzipped).
///
/// The archive is a pure function of `fs` (and of the content of the
/// source files): entries are sorted bytewise by path (parents before
/// children) after a first `.` entry for the root directory; every mtime is
/// `mtime`; inode numbers are assigned sequentially from 1; `devmajor`/
/// `devminor` are 0; directories have `nlink = 2 + subdirectories`, other
/// entries 1. Files that were hard links in an artifact are stored as
/// independent files (the kernel's initramfs unpacker and `cpio -i` accept
/// either). The archive ends with a `TRAILER!!!` entry and is padded with
/// zeros to a multiple of 512 bytes.
///
/// With `gzip`, the archive is wrapped in a gzip stream with mtime 0, no
/// file name, OS byte 3 (Unix) and compression level 6 — byte-identical for
/// identical input with the same `flate2` backend version.
///
/// The output is written to a temporary file next to `out` and renamed at
/// the end.
pub fn write_cpio(fs: &RootFs, out: &Path, mtime: u64, gzip: bool) -> Result<(), ImageError> {
    let tmp = TempOutput::new(out)?;
    let file = tmp.file().try_clone().at(tmp.path())?;
    let w = BufWriter::with_capacity(1 << 20, file);
    let res = if gzip {
        let gz = GzBuilder::new()
            .mtime(0)
            .operating_system(3)
            .write(w, Compression::new(6));
        write_cpio_stream(fs, gz, mtime, tmp.path())
            .and_then(|gz: GzEncoder<BufWriter<File>>| gz.finish().and_then(|mut w| w.flush()).at(tmp.path()))
    } else {
        write_cpio_stream(fs, w, mtime, tmp.path()).and_then(|mut w| w.flush().at(tmp.path()))
    };
    res?;
    tmp.finish()
}

/// Writes the uncompressed archive to `w` and returns it. `errpath` names
/// the output in write errors.
fn write_cpio_stream<W: Write>(fs: &RootFs, w: W, mtime: u64, errpath: &Path) -> Result<W, ImageError> {
    let mtime = u32::try_from(mtime)
        .map_err(|_| ImageError::unsupported(format!("mtime {mtime}"), "does not fit cpio newc (32 bits)"))?;
    // Number of subdirectories of each directory ("" = root).
    let mut subdirs: HashMap<&str, u32> = HashMap::new();
    for (path, node) in fs.iter() {
        if node.is_dir() {
            let parent = path.rfind('/').map_or("", |i| &path[..i]);
            *subdirs.entry(parent).or_default() += 1;
        }
    }
    let mut w = Counting { inner: w, count: 0 };
    let io_err = |e: io::Error| ImageError::io(errpath, e);

    let root = fs.root();
    let nlink = 2 + subdirs.get("").copied().unwrap_or(0);
    let hdr = header(1, root, nlink, mtime, 0, (0, 0), ".");
    w.write_all(&hdr).map_err(io_err)?;

    let mut ino = 1u32;
    for (path, node) in fs.iter() {
        ino += 1;
        match &node.kind {
            NodeKind::File { source } => {
                let (mut reader, size): (Box<dyn Read>, u64) = match source {
                    FileSource::Bytes(b) => (Box::new(&b[..]), b.len() as u64),
                    FileSource::Path(p) => {
                        let f = File::open(p).at(p)?;
                        let size = f.metadata().at(p)?.len();
                        (Box::new(f), size)
                    }
                };
                let size32 = u32::try_from(size).map_err(|_| {
                    ImageError::unsupported(path, format!("{size} bytes is too large for cpio newc (4 GiB)"))
                })?;
                w.write_all(&header(ino, node, 1, mtime, size32, (0, 0), path))
                    .map_err(io_err)?;
                let copied = io::copy(&mut reader.by_ref().take(size), &mut w).map_err(|e| match source {
                    FileSource::Path(p) => ImageError::io(p, e),
                    FileSource::Bytes(_) => io_err(e),
                })?;
                if copied != size {
                    let src = match source {
                        FileSource::Path(p) => p.display().to_string(),
                        FileSource::Bytes(_) => path.to_string(),
                    };
                    return Err(ImageError::unsupported(src, "file shrank while being archived"));
                }
                pad4(&mut w).map_err(io_err)?;
            }
            NodeKind::Symlink { target } => {
                let len = target.len() as u32;
                w.write_all(&header(ino, node, 1, mtime, len, (0, 0), path))
                    .map_err(io_err)?;
                w.write_all(target.as_bytes()).map_err(io_err)?;
                pad4(&mut w).map_err(io_err)?;
            }
            NodeKind::Dir => {
                let nlink = 2 + subdirs.get(path).copied().unwrap_or(0);
                w.write_all(&header(ino, node, nlink, mtime, 0, (0, 0), path))
                    .map_err(io_err)?;
            }
            NodeKind::CharDev { major, minor } | NodeKind::BlockDev { major, minor } => {
                w.write_all(&header(ino, node, 1, mtime, 0, (*major, *minor), path))
                    .map_err(io_err)?;
            }
            NodeKind::Fifo => {
                w.write_all(&header(ino, node, 1, mtime, 0, (0, 0), path))
                    .map_err(io_err)?;
            }
        }
    }
    let trailer = raw_header([0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0], TRAILER);
    w.write_all(&trailer).map_err(io_err)?;
    let rem = (w.count % 512) as usize;
    if rem != 0 {
        w.write_all(&vec![0u8; 512 - rem]).map_err(io_err)?;
    }
    Ok(w.inner)
}

/// Header + NUL-terminated name + padding for one entry.
fn header(ino: u32, node: &Node, nlink: u32, mtime: u32, size: u32, rdev: (u32, u32), name: &str) -> Vec<u8> {
    raw_header(
        [
            ino,
            node.st_mode(),
            node.uid,
            node.gid,
            nlink,
            mtime,
            size,
            0,
            0,
            rdev.0,
            rdev.1,
        ],
        name,
    )
}

/// `fields`: ino, mode, uid, gid, nlink, mtime, filesize, devmajor,
/// devminor, rdevmajor, rdevminor (namesize and check are derived).
fn raw_header(fields: [u32; 11], name: &str) -> Vec<u8> {
    let mut h = Vec::with_capacity(HEADER_LEN + name.len() + 4);
    h.extend_from_slice(MAGIC);
    for f in fields {
        h.extend_from_slice(format!("{f:08X}").as_bytes());
    }
    h.extend_from_slice(format!("{:08X}", name.len() + 1).as_bytes());
    h.extend_from_slice(b"00000000");
    h.extend_from_slice(name.as_bytes());
    h.push(0);
    while h.len() % 4 != 0 {
        h.push(0);
    }
    h
}

fn pad4<W: Write>(w: &mut Counting<W>) -> io::Result<()> {
    let rem = (w.count % 4) as usize;
    if rem != 0 {
        w.write_all(&[0u8; 3][..4 - rem])?;
    }
    Ok(())
}

/// A writer that counts the bytes written through it.
struct Counting<W> {
    inner: W,
    count: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Reads a cpio "newc" (or "crc") archive, optionally gzip-compressed
/// (detected by its magic), up to its `TRAILER!!!` entry.
///
/// Meant for verification: the whole archive is read into memory.
pub fn read_cpio(path: &Path) -> Result<Vec<CpioEntry>, ImageError> {
    let raw = fs::read(path).at(path)?;
    let data = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .at(path)?;
        out
    } else {
        raw
    };
    parse_cpio(&data).map_err(|reason| ImageError::malformed(path, "cpio archive", reason))
}

fn parse_cpio(data: &[u8]) -> Result<Vec<CpioEntry>, String> {
    let mut entries = Vec::new();
    let mut pos = 0usize;
    loop {
        let hdr = data
            .get(pos..pos + HEADER_LEN)
            .ok_or_else(|| format!("truncated header at offset {pos}"))?;
        if &hdr[..6] != MAGIC && &hdr[..6] != MAGIC_CRC {
            return Err(format!("bad magic at offset {pos}"));
        }
        let mut f = [0u32; 13];
        for (i, v) in f.iter_mut().enumerate() {
            let s = std::str::from_utf8(&hdr[6 + 8 * i..14 + 8 * i]).map_err(|_| "non-ASCII header")?;
            *v = u32::from_str_radix(s, 16).map_err(|_| format!("bad header field {s:?} at offset {pos}"))?;
        }
        let namesize = f[11] as usize;
        let name_start = pos + HEADER_LEN;
        let name_bytes = data
            .get(name_start..name_start + namesize)
            .ok_or_else(|| format!("truncated name at offset {pos}"))?;
        let name = String::from_utf8_lossy(name_bytes.strip_suffix(&[0]).unwrap_or(name_bytes)).into_owned();
        let data_start = align4(name_start + namesize);
        let size = f[6] as usize;
        let body = data
            .get(data_start..data_start + size)
            .ok_or_else(|| format!("truncated data of {name:?}"))?;
        pos = align4(data_start + size);
        if name == TRAILER {
            break;
        }
        entries.push(CpioEntry {
            path: name,
            ino: f[0],
            mode: f[1],
            uid: f[2],
            gid: f[3],
            nlink: f[4],
            mtime: f[5] as u64,
            size: size as u64,
            data: body.to_vec(),
            rdev_major: f[9],
            rdev_minor: f[10],
        });
    }
    Ok(entries)
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_layout() {
        let h = raw_header([1, 0o40755, 0, 0, 2, 5, 0, 0, 0, 0, 0], ".");
        assert_eq!(h.len(), 112);
        assert_eq!(&h[..6], b"070701");
        assert_eq!(&h[6..14], b"00000001");
        assert_eq!(&h[94..102], b"00000002"); // namesize
        assert_eq!(&h[110..112], b".\0");
    }

    #[test]
    fn roundtrip_in_memory() {
        let mut fs = RootFs::new();
        fs.add_file("a/b", b"hello".to_vec(), 0o644, 1, 2).unwrap();
        fs.add_symlink("l", "a/b").unwrap();
        let buf = write_cpio_stream(&fs, Vec::new(), 7, Path::new("mem")).unwrap();
        assert_eq!(buf.len() % 512, 0);
        let e = parse_cpio(&buf).unwrap();
        let names: Vec<_> = e.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(names, [".", "a", "a/b", "l"]);
        assert_eq!(e[2].data, b"hello");
        assert_eq!(e[3].link_target().as_deref(), Some("a/b"));
        assert_eq!(e[0].nlink, 3);
    }
}
