//! Whole-disk images: a GUID partition table (protective MBR, primary and backup headers and
//! entry arrays with their CRC32s) with partitions whose contents are files (an ext4 image from
//! [`crate::write_ext4`], …) or zeros, written to a plain file — no loop devices, no root. Then
//! converted to qcow2 with `qemu-img convert`.
//!
//! The layout is deterministic: partitions start on 1 MiB boundaries in the order given, GUIDs
//! are derived from a seed ([`crate::derive_uuid`]), and the same inputs give the same bytes.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{ImageError, IoContext};
use crate::util::TempOutput;

/// Bytes per logical sector.
pub const SECTOR: u64 = 512;
/// Partitions start on multiples of this many sectors (1 MiB).
const ALIGN: u64 = 2048;
/// Entries in each partition entry array (the usual 128 × 128 bytes = 32 sectors).
const ENTRIES: u64 = 128;
const ENTRY_SIZE: u64 = 128;
const ENTRY_SECTORS: u64 = ENTRIES * ENTRY_SIZE / SECTOR;

/// GPT partition types used by xlfs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PartType {
    /// Where GRUB's core.img lives on a BIOS machine (`21686148-6449-6E6F-744E-656564454649`).
    BiosBoot,
    /// EFI system partition (`C12A7328-F81F-11D2-BA4B-00A0C93EC93B`).
    Esp,
    /// The root file system of an x86-64 Linux system (Discoverable Partitions,
    /// `4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709`).
    LinuxRootX86_64,
}

impl PartType {
    /// The type GUID in its usual text form.
    pub fn guid(self) -> &'static str {
        match self {
            PartType::BiosBoot => "21686148-6449-6E6F-744E-656564454649",
            PartType::Esp => "C12A7328-F81F-11D2-BA4B-00A0C93EC93B",
            PartType::LinuxRootX86_64 => "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709",
        }
    }
}

/// What a partition holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Contents {
    /// This many MiB of zeros.
    Zeros { mib: u64 },
    /// The bytes of this file (the partition is its size rounded up to 1 MiB).
    File(PathBuf),
}

/// One partition of a [`DiskSpec`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartSpec {
    /// GPT partition name (at most 36 UTF-16 code units).
    pub name: String,
    pub kind: PartType,
    pub contents: Contents,
}

/// A disk to write: its partitions in order (partition 1 first) and the seed of its GUIDs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskSpec {
    pub partitions: Vec<PartSpec>,
    /// The disk and partition GUIDs are derived from this string.
    pub seed: String,
}

/// Where a partition ended up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartLayout {
    /// 1-based, as GRUB's `gptN` and Linux's `sdaN`.
    pub number: u32,
    pub name: String,
    pub kind: PartType,
    /// The partition's own GUID (`PARTUUID=`), upper case.
    pub guid: String,
    pub first_lba: u64,
    /// Inclusive.
    pub last_lba: u64,
}

impl PartLayout {
    pub fn sectors(&self) -> u64 {
        self.last_lba - self.first_lba + 1
    }
}

/// The layout of a written disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskLayout {
    /// Size of the disk in sectors.
    pub sectors: u64,
    /// The disk GUID, upper case.
    pub guid: String,
    pub partitions: Vec<PartLayout>,
}

impl DiskLayout {
    /// The first partition of this type.
    pub fn find(&self, kind: PartType) -> Option<&PartLayout> {
        self.partitions.iter().find(|p| p.kind == kind)
    }
}

/// A GUID's 16 bytes as stored on disk: the first three fields little-endian.
pub fn guid_bytes(guid: &str) -> Option<[u8; 16]> {
    let hex: String = guid.chars().filter(|c| *c != '-').collect();
    if hex.len() != 32 || guid.len() != 36 {
        return None;
    }
    let raw = hex::decode(hex).ok()?;
    let mut b = [0u8; 16];
    b.copy_from_slice(&raw);
    b[0..4].reverse();
    b[4..6].reverse();
    b[6..8].reverse();
    Some(b)
}

fn size_in_sectors(contents: &Contents) -> Result<u64, ImageError> {
    let bytes = match contents {
        Contents::Zeros { mib } => mib << 20,
        Contents::File(p) => std::fs::metadata(p).at(p)?.len(),
    };
    Ok(bytes.div_ceil(SECTOR))
}

/// The layout `spec` gets (reads only the sizes of the content files).
/// The GUID of partition `number` (from 1) of a disk written with `seed`: known before the
/// disk is written, e.g. for the root's `PARTUUID=` in `/etc/fstab` and on the kernel's line.
pub fn partition_guid(seed: &str, number: u32) -> String {
    crate::derive_uuid(&format!("{seed} partition {number}")).to_uppercase()
}

pub fn layout(spec: &DiskSpec) -> Result<DiskLayout, ImageError> {
    if spec.partitions.is_empty() || spec.partitions.len() as u64 > ENTRIES {
        return Err(ImageError::unsupported(
            "disk",
            format!(
                "a disk has 1 to {ENTRIES} partitions, not {}",
                spec.partitions.len()
            ),
        ));
    }
    let mut next = ALIGN;
    let mut parts = Vec::new();
    for (i, p) in spec.partitions.iter().enumerate() {
        if p.name.encode_utf16().count() > 36 {
            return Err(ImageError::unsupported(
                format!("partition {}", i + 1),
                format!("the name `{}` is longer than 36 UTF-16 units", p.name),
            ));
        }
        let sectors = size_in_sectors(&p.contents)?.max(1).next_multiple_of(ALIGN);
        parts.push(PartLayout {
            number: i as u32 + 1,
            name: p.name.clone(),
            kind: p.kind,
            guid: partition_guid(&spec.seed, i as u32 + 1),
            first_lba: next,
            last_lba: next + sectors - 1,
        });
        next += sectors;
    }
    // 1 MiB after the last partition holds the backup entries and header.
    Ok(DiskLayout {
        sectors: next + ALIGN,
        guid: crate::derive_uuid(&format!("{} disk", spec.seed)).to_uppercase(),
        partitions: parts,
    })
}

/// The protective MBR: one partition of type 0xEE over the whole disk (as far as 32 bits go).
fn protective_mbr(sectors: u64) -> [u8; 512] {
    let mut m = [0u8; 512];
    let e = &mut m[446..462];
    e[0] = 0x00; // not bootable
    e[1..4].copy_from_slice(&[0x00, 0x02, 0x00]); // CHS of LBA 1
    e[4] = 0xEE;
    e[5..8].copy_from_slice(&[0xFF, 0xFF, 0xFF]);
    e[8..12].copy_from_slice(&1u32.to_le_bytes());
    let size = (sectors - 1).min(u32::MAX as u64) as u32;
    e[12..16].copy_from_slice(&size.to_le_bytes());
    m[510] = 0x55;
    m[511] = 0xAA;
    m
}

fn entries(layout: &DiskLayout) -> Vec<u8> {
    let mut a = vec![0u8; (ENTRIES * ENTRY_SIZE) as usize];
    for (i, p) in layout.partitions.iter().enumerate() {
        let e = &mut a[i * ENTRY_SIZE as usize..(i + 1) * ENTRY_SIZE as usize];
        e[0..16].copy_from_slice(&guid_bytes(p.kind.guid()).expect("valid type GUID"));
        e[16..32].copy_from_slice(&guid_bytes(&p.guid).expect("derived GUID"));
        e[32..40].copy_from_slice(&p.first_lba.to_le_bytes());
        e[40..48].copy_from_slice(&p.last_lba.to_le_bytes());
        // Attributes: none (bit 2, legacy BIOS bootable, is for MBR-style boot code only).
        for (j, u) in p.name.encode_utf16().enumerate() {
            e[56 + 2 * j..58 + 2 * j].copy_from_slice(&u.to_le_bytes());
        }
    }
    a
}

fn header(layout: &DiskLayout, backup: bool, entries_crc: u32) -> [u8; 512] {
    let last = layout.sectors - 1;
    let (current, other, entries_lba) = if backup {
        (last, 1, last - ENTRY_SECTORS)
    } else {
        (1, last, 2)
    };
    let mut h = [0u8; 512];
    h[0..8].copy_from_slice(b"EFI PART");
    h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
    h[12..16].copy_from_slice(&92u32.to_le_bytes());
    h[24..32].copy_from_slice(&current.to_le_bytes());
    h[32..40].copy_from_slice(&other.to_le_bytes());
    h[40..48].copy_from_slice(&(2 + ENTRY_SECTORS).to_le_bytes());
    h[48..56].copy_from_slice(&(last - 1 - ENTRY_SECTORS).to_le_bytes());
    h[56..72].copy_from_slice(&guid_bytes(&layout.guid).expect("derived GUID"));
    h[72..80].copy_from_slice(&entries_lba.to_le_bytes());
    h[80..84].copy_from_slice(&(ENTRIES as u32).to_le_bytes());
    h[84..88].copy_from_slice(&(ENTRY_SIZE as u32).to_le_bytes());
    h[88..92].copy_from_slice(&entries_crc.to_le_bytes());
    let crc = crc32fast::hash(&h[..92]);
    h[16..20].copy_from_slice(&crc.to_le_bytes());
    h
}

fn write_at(f: &mut File, path: &Path, lba: u64, bytes: &[u8]) -> Result<(), ImageError> {
    f.seek(SeekFrom::Start(lba * SECTOR)).at(path)?;
    f.write_all(bytes).at(path)
}

/// Write the raw disk image `out` (atomically: a temporary file renamed when complete).
/// The file is sparse where the disk is zeros.
pub fn write_disk(spec: &DiskSpec, out: &Path) -> Result<DiskLayout, ImageError> {
    let layout = layout(spec)?;
    let tmp = TempOutput::new(out)?;
    let path = tmp.path().to_path_buf();
    let mut f = tmp.file().try_clone().at(&path)?;
    f.set_len(layout.sectors * SECTOR).at(&path)?;
    write_at(&mut f, &path, 0, &protective_mbr(layout.sectors))?;
    let table = entries(&layout);
    let crc = crc32fast::hash(&table);
    write_at(&mut f, &path, 1, &header(&layout, false, crc))?;
    write_at(&mut f, &path, 2, &table)?;
    write_at(&mut f, &path, layout.sectors - 1 - ENTRY_SECTORS, &table)?;
    write_at(&mut f, &path, layout.sectors - 1, &header(&layout, true, crc))?;
    for (p, l) in spec.partitions.iter().zip(&layout.partitions) {
        if let Contents::File(src) = &p.contents {
            let r = File::open(src).at(src)?;
            f.seek(SeekFrom::Start(l.first_lba * SECTOR)).at(&path)?;
            let n = std::io::copy(&mut r.take(l.sectors() * SECTOR), &mut f).at(&path)?;
            if n != std::fs::metadata(src).at(src)?.len() {
                return Err(ImageError::malformed(
                    src,
                    "partition contents",
                    "changed while being copied",
                ));
            }
        }
    }
    drop(f);
    tmp.finish()?;
    Ok(layout)
}

/// Convert a raw disk image to qcow2 with `qemu-img convert` (atomically, like every writer).
pub fn convert_qcow2(raw: &Path, out: &Path) -> Result<(), ImageError> {
    let tmp = TempOutput::new(out)?;
    let o = Command::new("qemu-img")
        .args(["convert", "-q", "-f", "raw", "-O", "qcow2"])
        .arg(raw)
        .arg(tmp.path())
        .output()
        .map_err(|e| ImageError::ToolMissing {
            tool: "qemu-img (Debian package qemu-utils)".into(),
            source: e,
        })?;
    if !o.status.success() {
        return Err(ImageError::Tool {
            tool: "qemu-img convert".into(),
            image: raw.to_path_buf(),
            status: o.status.to_string(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        });
    }
    tmp.finish()
}

/// Copy `src` to `dst` leaving holes where `src` has 1 MiB runs of zeros (a written disk is
/// mostly holes).
fn sparse_copy(src: &Path, dst: &Path) -> Result<(), ImageError> {
    const CHUNK: usize = 1 << 20;
    let mut r = File::open(src).at(src)?;
    let len = r.metadata().at(src)?.len();
    let mut w = File::create(dst).at(dst)?;
    w.set_len(len).at(dst)?;
    let mut buf = vec![0u8; CHUNK];
    let zeros = vec![0u8; CHUNK];
    let mut at = 0u64;
    while at < len {
        let n = (len - at).min(CHUNK as u64) as usize;
        r.read_exact(&mut buf[..n]).at(src)?;
        // A slice comparison (memcmp), fast also in unoptimised builds.
        if buf[..n] != zeros[..n] {
            w.seek(SeekFrom::Start(at)).at(dst)?;
            w.write_all(&buf[..n]).at(dst)?;
        }
        at += n as u64;
    }
    Ok(())
}

/// A variant of the raw disk `base` (written by [`write_disk`] or
/// [`crate::write_grub_disk`], with `layout`): `edits` put into the ext4 file system of
/// partition `partition` (1-based) as [`crate::ext4_put`] does, written as the qcow2 `out`
/// whose backing file is `base`, so that it holds only the clusters that differ (`qemu-img
/// convert -B`). `base` is not changed. `out` must be in `base`'s directory: the backing file
/// is named by its file name alone, so the pair can be moved together.
pub fn write_disk_variant(
    base: &Path,
    layout: &DiskLayout,
    partition: u32,
    edits: &crate::RootFs,
    mtime: u64,
    out: &Path,
) -> Result<(), ImageError> {
    let dir = crate::util::parent_dir(out);
    let same_dir = std::fs::canonicalize(&dir).at(&dir)?
        == std::fs::canonicalize(crate::util::parent_dir(base)).at(base)?;
    let name = base.file_name().map(|n| n.to_string_lossy().into_owned());
    let Some(name) = name.filter(|_| same_dir) else {
        return Err(ImageError::unsupported(
            out.display().to_string(),
            format!(
                "a disk variant goes into the directory of its base {}",
                base.display()
            ),
        ));
    };
    let part = layout
        .partitions
        .iter()
        .find(|p| p.number == partition)
        .ok_or_else(|| {
            ImageError::unsupported(
                base.display().to_string(),
                format!("the disk has no partition {partition}"),
            )
        })?;
    let work = tempfile::Builder::new()
        .prefix(".xlfs-variant.")
        .tempdir_in(&dir)
        .at(&dir)?;
    let copy = work.path().join("variant.img");
    sparse_copy(base, &copy)?;
    crate::ext4_put(&copy, part.first_lba * SECTOR, edits, mtime)?;
    // The clusters that differ, as runs; the qcow2 gets only those (`qemu-io write -s`).
    let runs = differing_runs(base, &copy)?;
    let tmp = TempOutput::new(out)?;
    let mut create = Command::new("qemu-img");
    create
        .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
        .arg(&name)
        .arg(tmp.path());
    tool(&mut create, "qemu-img create", base)?;
    for (k, batch) in runs.chunks(200).enumerate() {
        // Chunks named relative to the work directory: qemu-io splits its commands on spaces.
        let mut io = Command::new("qemu-io");
        io.current_dir(work.path()).args(["-f", "qcow2"]);
        let mut r = File::open(&copy).at(&copy)?;
        for (j, (at, len)) in batch.iter().enumerate() {
            let chunk_name = format!("run-{k}-{j}");
            let chunk = work.path().join(&chunk_name);
            let mut bytes = vec![0u8; *len as usize];
            r.seek(SeekFrom::Start(*at)).at(&copy)?;
            r.read_exact(&mut bytes).at(&copy)?;
            std::fs::write(&chunk, &bytes).at(&chunk)?;
            io.arg("-c").arg(format!("write -q -s {chunk_name} {at} {len}"));
        }
        io.arg(std::fs::canonicalize(tmp.path()).at(tmp.path())?);
        tool(&mut io, "qemu-io write", &copy)?;
    }
    tmp.finish()
}

/// Run a QEMU tool; its failure names the image.
fn tool(cmd: &mut Command, what: &str, image: &Path) -> Result<(), ImageError> {
    let o = cmd.output().map_err(|e| ImageError::ToolMissing {
        tool: format!("{what} (Debian package qemu-utils)"),
        source: e,
    })?;
    // qemu-io reports a failed command on stdout and still exits 0.
    let stdout = String::from_utf8_lossy(&o.stdout);
    if !o.status.success() || stdout.contains("failed") {
        return Err(ImageError::Tool {
            tool: what.into(),
            image: image.to_path_buf(),
            status: o.status.to_string(),
            stderr: format!("{}{stdout}", String::from_utf8_lossy(&o.stderr)),
        });
    }
    Ok(())
}

/// The byte ranges (offset, length) where `b` differs from `a` (files of one size), in
/// 64 KiB clusters (qcow2's), adjacent ones merged up to 16 MiB.
fn differing_runs(a: &Path, b: &Path) -> Result<Vec<(u64, u64)>, ImageError> {
    const CLUSTER: usize = 64 << 10;
    const MAX_RUN: u64 = 16 << 20;
    let mut fa = std::io::BufReader::with_capacity(1 << 20, File::open(a).at(a)?);
    let mut fb = std::io::BufReader::with_capacity(1 << 20, File::open(b).at(b)?);
    let len = std::fs::metadata(a).at(a)?.len();
    if std::fs::metadata(b).at(b)?.len() != len {
        return Err(ImageError::malformed(
            b,
            "disk variant",
            "its size differs from the base's",
        ));
    }
    let (mut xa, mut xb) = (vec![0u8; CLUSTER], vec![0u8; CLUSTER]);
    let mut runs: Vec<(u64, u64)> = Vec::new();
    let mut at = 0u64;
    while at < len {
        let n = (len - at).min(CLUSTER as u64) as usize;
        fa.read_exact(&mut xa[..n]).at(a)?;
        fb.read_exact(&mut xb[..n]).at(b)?;
        if xa[..n] != xb[..n] {
            match runs.last_mut() {
                Some((s, l)) if *s + *l == at && *l < MAX_RUN => *l += n as u64,
                _ => runs.push((at, n as u64)),
            }
        }
        at += n as u64;
    }
    Ok(runs)
}
