//! Assembling root file systems and writing them as images, reproducibly.
//!
//! A [`RootFs`] is built from unpacked artifacts ([`RootFs::add_artifact`],
//! guided by their [`xlfs_store::Manifest`], whose ownership and modes are
//! authoritative — never the disk's) plus generated files, directories,
//! symlinks and device nodes. It is then written as
//!
//! * a cpio "newc" archive for an initramfs ([`write_cpio`], optionally
//!   gzipped), read back with [`read_cpio`];
//! * an ext4 image ([`write_ext4`]) built with `mke2fs -d` and `debugfs`
//!   without root privileges, loop devices or `chown`: files are owned by
//!   root, or by the owner the recipe declares, inside the images whatever
//!   user ran the build. Read back with [`read_ext4`] and [`ext4_cat`].
//!
//! Both writers are deterministic: the same `RootFs` (and options) gives
//! byte-identical output, and both write to a temporary file next to the
//! output which is renamed only when complete.
//!
//! ```no_run
//! use std::path::Path;
//! use xlfs_image::{write_cpio, write_ext4, Ext4Options, RootFs};
//!
//! # fn main() -> Result<(), xlfs_image::ImageError> {
//! let mut fs = RootFs::new();
//! fs.add_dir("etc", 0o755, 0, 0)?;
//! fs.add_file("etc/hostname", b"xen-host\n".to_vec(), 0o644, 0, 0)?;
//! fs.add_symlink("bin", "usr/bin")?;
//! fs.add_device("dev/console", 'c', 5, 1, 0o600)?;
//! write_cpio(&fs, Path::new("initramfs.cpio.gz"), 1_700_000_000, true)?;
//! let opts = Ext4Options { mtime: 1_700_000_000, ..Ext4Options::default() };
//! write_ext4(&fs, Path::new("root.ext4"), &opts)?;
//! # Ok(())
//! # }
//! ```

mod cpio;
mod disk;
mod error;
mod esp;
mod ext4;
mod grub;
mod rootfs;
mod util;

pub mod audit;
pub use cpio::{read_cpio, write_cpio, CpioEntry};
pub use disk::{
    convert_qcow2, guid_bytes, layout, partition_guid, write_disk, write_disk_variant, Contents, DiskLayout,
    DiskSpec, PartLayout, PartSpec, PartType, SECTOR,
};
pub use error::ImageError;
pub use esp::{esp_cat, write_esp, BOOT_PATH as EFI_BOOT_PATH, ESP_MIB};
pub use ext4::{derive_uuid, ext4_cat, ext4_put, read_ext4, write_ext4, Ext4Entry, Ext4Options};
pub use grub::{
    add_grub_modules, grub_mkimage, install_grub_bios, patch_boot_img, patch_core_img, write_grub_disk,
    Platform, ESP_PARTITION, GRUB_EFI_DIR, GRUB_MODULES, GRUB_PC_DIR, ROOT_PARTITION,
};
pub use rootfs::{FileSource, Node, NodeKind, RootFs};
