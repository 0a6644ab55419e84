//! GRUB's install on a disk image file. For BIOS, as `grub-bios-setup` does it on a device:
//!
//! * `boot.img` (one sector) goes into the MBR, keeping the disk's partition table and BPB,
//!   with the LBA of core.img's first sector in its kernel-sector field and the boot-drive check
//!   turned into `nop`s (hard disks: some BIOSes pass a wrong drive number);
//! * `core.img` (from `grub-mkimage -O i386-pc`: diskboot.img's sector, then the rest) goes into
//!   the BIOS boot partition, with diskboot's block list pointing at the sectors after it.
//!
//! Offsets from GRUB 2.12 `include/grub/i386/pc/boot.h` and `grub-core/boot/i386/pc/diskboot.S`.
//!
//! For UEFI, `grub-mkimage -O x86_64-efi` makes BOOTX64.EFI, which goes into an EFI system
//! partition written by [`crate::write_esp`]; both loaders read the same `/boot/grub` of the root.

use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use crate::disk::{DiskLayout, PartType, SECTOR};
use crate::error::{ImageError, IoContext};

/// `GRUB_BOOT_MACHINE_BPB_START` .. `GRUB_BOOT_MACHINE_BPB_END`: kept from the disk.
const BPB: std::ops::Range<usize> = 0x03..0x5a;
/// `GRUB_BOOT_MACHINE_KERNEL_SECTOR`: u64 LBA of core.img's first sector.
const KERNEL_SECTOR: usize = 0x5c;
/// `GRUB_BOOT_MACHINE_BOOT_DRIVE`: 0xff = the drive the BIOS booted from.
const BOOT_DRIVE: usize = 0x64;
/// `GRUB_BOOT_MACHINE_DRIVE_CHECK`: a 2-byte `jmp` that hard disks replace by two `nop`s.
const DRIVE_CHECK: usize = 0x66;
/// `GRUB_BOOT_MACHINE_WINDOWS_NT_MAGIC` .. `GRUB_BOOT_MACHINE_PART_END`: disk signature and
/// partition table, kept from the disk.
const TABLE: std::ops::Range<usize> = 0x1b8..0x1fe;
/// diskboot.img's first block list entry (u64 start, u16 sectors, u16 segment), at the end of
/// its sector; entries go downwards and end with one whose length is 0.
const BLOCKLIST: usize = 0x200 - 12;
/// Where diskboot loads the rest of core.img: `GRUB_BOOT_I386_PC_KERNEL_SEG + 0x20`.
const KERNEL_SEGMENT: u16 = 0x820;

fn bad(what: &str, reason: impl Into<String>) -> ImageError {
    ImageError::unsupported(what, reason)
}

/// boot.img patched for a disk whose first sector is `mbr` and whose core.img starts at
/// `core_lba`.
pub fn patch_boot_img(boot_img: &[u8], mbr: &[u8], core_lba: u64) -> Result<Vec<u8>, ImageError> {
    if boot_img.len() != 512 || boot_img[510..] != [0x55, 0xAA] {
        return Err(bad(
            "boot.img",
            format!(
                "is {} bytes without the 55 AA signature; expected GRUB's i386-pc boot.img (512 bytes)",
                boot_img.len()
            ),
        ));
    }
    if boot_img[BOOT_DRIVE] != 0xff {
        return Err(bad(
            "boot.img",
            "its boot drive byte is not 0xff: not a pristine i386-pc boot.img",
        ));
    }
    let mut b = boot_img.to_vec();
    b[BPB].copy_from_slice(&mbr[BPB]);
    b[TABLE].copy_from_slice(&mbr[TABLE]);
    b[KERNEL_SECTOR..KERNEL_SECTOR + 8].copy_from_slice(&core_lba.to_le_bytes());
    b[DRIVE_CHECK] = 0x90;
    b[DRIVE_CHECK + 1] = 0x90;
    Ok(b)
}

/// core.img with diskboot's block list pointing at `core_lba + 1` (the rest follows the first
/// sector contiguously).
pub fn patch_core_img(core_img: &[u8], core_lba: u64) -> Result<Vec<u8>, ImageError> {
    if core_img.len() <= 512 {
        return Err(bad(
            "core.img",
            format!(
                "is {} bytes; expected diskboot's sector and more from `grub-mkimage -O i386-pc`",
                core_img.len()
            ),
        ));
    }
    // grub-mkimage does not pad the last sector.
    let rest = (core_img.len() - 512).div_ceil(512);
    let mut c = core_img.to_vec();
    c.resize(512 * (rest + 1), 0);
    let entry = &mut c[BLOCKLIST..BLOCKLIST + 12];
    let len = u16::from_le_bytes([entry[8], entry[9]]) as usize;
    let segment = u16::from_le_bytes([entry[10], entry[11]]);
    if len != rest || segment != KERNEL_SEGMENT {
        return Err(bad(
            "core.img",
            format!(
                "diskboot's block list says {len} sectors at segment {segment:#x}, but the image has {rest} sectors after diskboot: not an i386-pc core.img"
            ),
        ));
    }
    entry[0..8].copy_from_slice(&(core_lba + 1).to_le_bytes());
    // The entry below ends the list.
    if c[BLOCKLIST - 12 + 8..BLOCKLIST - 12 + 10] != [0, 0] {
        return Err(bad("core.img", "diskboot's block list has a second entry"));
    }
    Ok(c)
}

/// Install GRUB for BIOS on the disk image `disk` (written by [`crate::write_disk`] with a
/// [`PartType::BiosBoot`] partition): boot.img into the MBR, core.img into that partition.
pub fn install_grub_bios(
    disk: &Path,
    layout: &DiskLayout,
    boot_img: &[u8],
    core_img: &[u8],
) -> Result<(), ImageError> {
    let part = layout.find(PartType::BiosBoot).ok_or_else(|| {
        bad(
            &disk.display().to_string(),
            "has no BIOS boot partition for GRUB's core.img; add one (1 MiB) to the disk",
        )
    })?;
    let room = part.sectors() * SECTOR;
    if (core_img.len() as u64).next_multiple_of(SECTOR) > room {
        return Err(bad(
            "core.img",
            format!(
                "is {} bytes but the BIOS boot partition holds {room}; make the partition larger or embed fewer modules",
                core_img.len()
            ),
        ));
    }
    let core = patch_core_img(core_img, part.first_lba)?;
    let mut f = OpenOptions::new().read(true).write(true).open(disk).at(disk)?;
    let mut mbr = [0u8; 512];
    f.read_exact(&mut mbr).at(disk)?;
    if mbr[450] != 0xEE {
        return Err(bad(
            &disk.display().to_string(),
            "has no protective MBR (a GPT disk is expected)",
        ));
    }
    let boot = patch_boot_img(boot_img, &mbr, part.first_lba)?;
    f.seek(SeekFrom::Start(0)).at(disk)?;
    f.write_all(&boot).at(disk)?;
    f.seek(SeekFrom::Start(part.first_lba * SECTOR)).at(disk)?;
    f.write_all(&core).at(disk)?;
    f.sync_all().at(disk)
}

/// Where GRUB's i386-pc files are in the `grub` package's artifact.
pub const GRUB_PC_DIR: &str = "usr/lib/grub/i386-pc";
/// Where GRUB's x86_64-efi files are in the `grub-efi` package's artifact.
pub const GRUB_EFI_DIR: &str = "usr/lib/grub/x86_64-efi";

/// The modules both loaders embed: enough to read GPT and ext4 and run grub.cfg on a serial
/// console; the rest load from `/boot/grub/TARGET` on demand. [`Platform::modules`] adds the
/// firmware's own.
pub const GRUB_MODULES: &[&str] = &[
    "part_gpt",
    "ext2",
    "normal",
    "configfile",
    "serial",
    "terminal",
    "echo",
    "test",
    "loadenv",
    "multiboot2",
    "linux",
    "reboot",
    "halt",
];

/// A GRUB platform xlfs installs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Platform {
    /// BIOS: core.img in the BIOS boot partition, boot.img in the MBR (the `grub` package).
    Bios,
    /// UEFI: BOOTX64.EFI in the EFI system partition (the `grub-efi` package).
    Efi,
}

impl Platform {
    /// `grub-mkimage -O`'s format, and the name of the module directory.
    pub fn target(self) -> &'static str {
        match self {
            Platform::Bios => "i386-pc",
            Platform::Efi => "x86_64-efi",
        }
    }

    /// The module directory in the platform's GRUB artifact.
    pub fn dir(self) -> &'static str {
        match self {
            Platform::Bios => GRUB_PC_DIR,
            Platform::Efi => GRUB_EFI_DIR,
        }
    }

    /// The modules embedded in the image firmware loads: [`GRUB_MODULES`], plus the BIOS's
    /// disks, or the UEFI firmware's FAT (its own partition) and graphics output (Xen and Linux
    /// take their console geometry from it).
    pub fn modules(self) -> Vec<&'static str> {
        let own: &[&str] = match self {
            Platform::Bios => &["biosdisk"],
            Platform::Efi => &["fat", "efi_gop"],
        };
        own.iter().chain(GRUB_MODULES).copied().collect()
    }
}

/// The image the firmware loads (core.img for BIOS, BOOTX64.EFI for UEFI): `grub-mkimage -O
/// TARGET` run from the platform's GRUB artifact tree `grub`, with `prefix` (e.g.
/// `(hd0,gpt2)/boot/grub`) and the platform's [`Platform::modules`] embedded.
pub fn grub_mkimage(grub: &Path, platform: Platform, prefix: &str) -> Result<Vec<u8>, ImageError> {
    let tool = grub.join("usr/bin/grub-mkimage");
    let out = tempfile::NamedTempFile::new().at(std::env::temp_dir())?;
    let o = std::process::Command::new(&tool)
        .arg("-d")
        .arg(grub.join(platform.dir()))
        .args(["-O", platform.target(), "-p", prefix, "-o"])
        .arg(out.path())
        .args(platform.modules())
        .env("LC_ALL", "C")
        .output()
        .map_err(|e| ImageError::ToolMissing {
            tool: tool.display().to_string(),
            source: e,
        })?;
    if !o.status.success() {
        return Err(ImageError::Tool {
            tool: "grub-mkimage".into(),
            image: out.path().to_path_buf(),
            status: o.status.to_string(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        });
    }
    std::fs::read(out.path()).at(out.path())
}

/// Put GRUB's modules and lists (`*.mod`, `*.lst`) from the platform's artifact tree `grub`
/// into `boot/grub/TARGET` of `fs`, where the loader's prefix finds them.
pub fn add_grub_modules(fs: &mut crate::RootFs, grub: &Path, platform: Platform) -> Result<(), ImageError> {
    let dir = grub.join(platform.dir());
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .at(&dir)?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_, _>>()
        .at(&dir)?;
    names.retain(|n| n.ends_with(".mod") || n.ends_with(".lst"));
    names.sort();
    if !names.iter().any(|n| n == "normal.mod") {
        return Err(ImageError::unsupported(
            dir.display().to_string(),
            format!(
                "holds no normal.mod: not the {} modules of a GRUB build",
                platform.target()
            ),
        ));
    }
    let target = format!("boot/grub/{}", platform.target());
    fs.add_dir(&target, 0o755, 0, 0)?;
    for n in names {
        fs.add_file_from(&format!("{target}/{n}"), &dir.join(&n), 0o644, 0, 0)?;
    }
    Ok(())
}

/// The partition number of the root file system on a disk from [`write_grub_disk`].
pub const ROOT_PARTITION: u32 = 2;
/// The partition number of the EFI system partition on a disk from [`write_grub_disk`] with
/// an EFI GRUB. It follows the root, so that the root is `gpt2` on every xlfs disk.
pub const ESP_PARTITION: u32 = 3;

/// A bootable disk: GPT with a 1 MiB BIOS boot partition (core.img), the ext4 root (partition
/// 2) made from `fs` and, when `efi` (the `grub-efi` artifact's tree) is given, an EFI system
/// partition (partition 3) with BOOTX64.EFI, so that BIOS and UEFI machines boot the same
/// grub.cfg. `fs` should hold `boot/grub/grub.cfg`; the modules are added here. Written
/// atomically to `raw`; also converted to `qcow2` if given.
pub fn write_grub_disk(
    mut fs: crate::RootFs,
    grub: &Path,
    efi: Option<&Path>,
    ext4: &crate::Ext4Options,
    seed: &str,
    raw: &Path,
    qcow2: Option<&Path>,
) -> Result<DiskLayout, ImageError> {
    use crate::disk::{write_disk, Contents, DiskSpec, PartSpec};
    let prefix = format!("(hd0,gpt{ROOT_PARTITION})/boot/grub");
    add_grub_modules(&mut fs, grub, Platform::Bios)?;
    if let Some(efi) = efi {
        add_grub_modules(&mut fs, efi, Platform::Efi)?;
    }
    let dir = crate::util::parent_dir(raw);
    let work = tempfile::Builder::new()
        .prefix(".xlfs-disk.")
        .tempdir_in(&dir)
        .at(&dir)?;
    let root = work.path().join("root.ext4");
    crate::write_ext4(&fs, &root, ext4)?;
    let mut partitions = vec![
        PartSpec {
            name: "bios-boot".into(),
            kind: PartType::BiosBoot,
            contents: Contents::Zeros { mib: 1 },
        },
        PartSpec {
            name: ext4.label.clone(),
            kind: PartType::LinuxRootX86_64,
            contents: Contents::File(root),
        },
    ];
    if let Some(efi) = efi {
        let loader = grub_mkimage(efi, Platform::Efi, &prefix)?;
        let esp = work.path().join("esp.fat");
        let id = u32::from_str_radix(&crate::derive_uuid(&format!("{seed} esp"))[..8], 16).unwrap_or(0);
        crate::esp::write_esp(&esp, "EFI", id, &[(crate::esp::BOOT_PATH, &loader)])?;
        partitions.push(PartSpec {
            name: "efi-system".into(),
            kind: PartType::Esp,
            contents: Contents::File(esp),
        });
    }
    let spec = DiskSpec {
        partitions,
        seed: seed.into(),
    };
    let disk = work.path().join("disk.img");
    let layout = write_disk(&spec, &disk)?;
    let core = grub_mkimage(grub, Platform::Bios, &prefix)?;
    let boot_img_path = grub.join(GRUB_PC_DIR).join("boot.img");
    let boot_img = std::fs::read(&boot_img_path).at(&boot_img_path)?;
    install_grub_bios(&disk, &layout, &boot_img, &core)?;
    if let Some(q) = qcow2 {
        crate::disk::convert_qcow2(&disk, q)?;
    }
    std::fs::rename(&disk, raw).at(raw)?;
    Ok(layout)
}
