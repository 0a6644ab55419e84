//! The EFI system partition: a FAT32 file system written to a plain file with the `fatfs` crate
//! (no `mkfs.vfat`, no loop device, no root), holding the boot loader at the removable-media
//! path `\EFI\BOOT\BOOTX64.EFI`, which UEFI firmware boots without NVRAM entries.
//!
//! Deterministic: the volume ID comes from the caller (derived from the disk's seed), and every
//! directory entry carries the DOS epoch (1980-01-01), the `fatfs` crate's time without a clock.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

use crate::error::{ImageError, IoContext};
use crate::util::TempOutput;

/// Size of the ESP xlfs writes. FAT32 needs at least 65,525 clusters: with 512-byte clusters,
/// 64 MiB has 131,072. The image file is sparse, so the unused space costs nothing.
pub const ESP_MIB: u64 = 64;

/// Where UEFI firmware looks for an x86-64 boot loader on removable media, and on any disk
/// without a boot entry for it.
pub const BOOT_PATH: &str = "EFI/BOOT/BOOTX64.EFI";

/// Write a FAT32 file system of [`ESP_MIB`] MiB to `out` (atomically) holding `files` (paths
/// with `/`, directories made as needed), labelled `label` (at most 11 ASCII characters).
pub fn write_esp(out: &Path, label: &str, volume_id: u32, files: &[(&str, &[u8])]) -> Result<(), ImageError> {
    if label.len() > 11 || !label.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
        return Err(ImageError::unsupported(
            "ESP label",
            format!("`{label}` is not at most 11 printable ASCII characters"),
        ));
    }
    let mut name = [b' '; 11];
    name[..label.len()].copy_from_slice(label.to_ascii_uppercase().as_bytes());
    let tmp = TempOutput::new(out)?;
    let path = tmp.path().to_path_buf();
    {
        let f = tmp.file().try_clone().at(&path)?;
        f.set_len(ESP_MIB << 20).at(&path)?;
        let opts = fatfs::FormatVolumeOptions::new()
            .fat_type(fatfs::FatType::Fat32)
            .bytes_per_cluster(512)
            .volume_id(volume_id)
            .volume_label(name);
        fatfs::format_volume(&f, opts).map_err(|e| fat_error(&path, "formatting", e))?;
    }
    {
        let f = OpenOptions::new().read(true).write(true).open(&path).at(&path)?;
        let fs =
            fatfs::FileSystem::new(f, fatfs::FsOptions::new()).map_err(|e| fat_error(&path, "opening", e))?;
        for (file, bytes) in files {
            let (dirs, base) = match file.rsplit_once('/') {
                Some((d, b)) => (Some(d), b),
                None => (None, *file),
            };
            let mut dir = fs.root_dir();
            if let Some(d) = dirs {
                for part in d.split('/') {
                    dir = match dir.open_dir(part) {
                        Ok(sub) => sub,
                        Err(_) => dir
                            .create_dir(part)
                            .map_err(|e| fat_error(&path, &format!("making {d}"), e))?,
                    };
                }
            }
            let mut w = dir
                .create_file(base)
                .map_err(|e| fat_error(&path, &format!("writing {file}"), e))?;
            w.truncate()
                .map_err(|e| fat_error(&path, &format!("writing {file}"), e))?;
            w.write_all(bytes)
                .map_err(|e| fat_error(&path, &format!("writing {file}"), e))?;
            w.flush()
                .map_err(|e| fat_error(&path, &format!("writing {file}"), e))?;
        }
        fs.unmount().map_err(|e| fat_error(&path, "closing", e))?;
    }
    tmp.finish()
}

/// The bytes of `file` (a path with `/`) in the FAT file system at byte `offset` of `image` (an
/// ESP image, or a whole disk with the partition's offset).
pub fn esp_cat(image: &Path, offset: u64, file: &str) -> Result<Vec<u8>, ImageError> {
    use std::io::{Read, Seek, SeekFrom};
    let f = File::open(image).at(image)?;
    let part = Slice {
        f,
        start: offset,
        pos: 0,
    };
    let fs =
        fatfs::FileSystem::new(part, fatfs::FsOptions::new()).map_err(|e| fat_error(image, "opening", e))?;
    let mut r = fs
        .root_dir()
        .open_file(file)
        .map_err(|e| fat_error(image, &format!("reading {file}"), e))?;
    let mut bytes = Vec::new();
    r.read_to_end(&mut bytes)
        .map_err(|e| fat_error(image, &format!("reading {file}"), e))?;
    return Ok(bytes);

    /// A file seen from `start` on (the FAT file system of one partition of a disk image).
    struct Slice {
        f: File,
        start: u64,
        pos: u64,
    }
    impl Read for Slice {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.f.seek(SeekFrom::Start(self.start + self.pos))?;
            let n = self.f.read(buf)?;
            self.pos += n as u64;
            Ok(n)
        }
    }
    impl Write for Slice {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                "read only",
            ))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    impl Seek for Slice {
        fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
            self.pos = match to {
                SeekFrom::Start(p) => p,
                SeekFrom::Current(d) => self.pos.checked_add_signed(d).unwrap_or(0),
                SeekFrom::End(d) => {
                    let len = self.f.metadata()?.len().saturating_sub(self.start);
                    len.checked_add_signed(d).unwrap_or(0)
                }
            };
            Ok(self.pos)
        }
    }
}

fn fat_error(path: &Path, what: &str, e: std::io::Error) -> ImageError {
    ImageError::malformed(path, "FAT32 (EFI system partition)", format!("{what}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_esp_holds_its_files_and_is_deterministic() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.fat"), dir.path().join("b.fat"));
        let loader = vec![0x4d, 0x5a, 1, 2, 3];
        let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let files: &[(&str, &[u8])] = &[(BOOT_PATH, &loader), ("EFI/xlfs/big.bin", &big)];
        write_esp(&a, "ESP", 0x1234_5678, files).unwrap();
        write_esp(&b, "ESP", 0x1234_5678, files).unwrap();
        assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
        assert_eq!(std::fs::metadata(&a).unwrap().len(), ESP_MIB << 20);
        assert_eq!(esp_cat(&a, 0, BOOT_PATH).unwrap(), loader);
        assert_eq!(esp_cat(&a, 0, "EFI/xlfs/big.bin").unwrap(), big);
        // FAT32: the boot sector names its type at offset 82.
        assert_eq!(&std::fs::read(&a).unwrap()[82..90], b"FAT32   ");
        let err = write_esp(&a, "a label too long", 1, files).unwrap_err();
        assert!(err.to_string().contains("11"), "{err}");
    }
}
