//! GPT disk images checked by independent tools (`sgdisk -v`, `sfdisk --json`, `qemu-img`),
//! and GRUB's boot.img/core.img patching on crafted images.

use std::path::Path;
use std::process::Command;

use xlfs_image::{
    convert_qcow2, install_grub_bios, patch_boot_img, patch_core_img, write_disk, write_ext4, Contents,
    DiskSpec, Ext4Options, PartSpec, PartType, RootFs,
};

fn run(cmd: &str, args: &[&str]) -> (bool, String) {
    let o = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e} (scripts/host-packages.txt installs it)"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.success(), text)
}

/// A disk with a 1 MiB BIOS boot partition, a root file system and a 2 MiB ESP.
fn sample(dir: &Path) -> (DiskSpec, std::path::PathBuf) {
    let mut fs = RootFs::new();
    fs.add_dir("boot", 0o755, 0, 0).unwrap();
    fs.add_file("boot/hello", b"hello\n".to_vec(), 0o644, 0, 0)
        .unwrap();
    let root = dir.join("root.ext4");
    let opts = Ext4Options {
        size_mib: 5,
        mtime: 1_700_000_000,
        ..Ext4Options::default()
    };
    write_ext4(&fs, &root, &opts).unwrap();
    let spec = DiskSpec {
        partitions: vec![
            PartSpec {
                name: "bios-boot".into(),
                kind: PartType::BiosBoot,
                contents: Contents::Zeros { mib: 1 },
            },
            PartSpec {
                name: "xlfs-root".into(),
                kind: PartType::LinuxRootX86_64,
                contents: Contents::File(root.clone()),
            },
            PartSpec {
                name: "esp".into(),
                kind: PartType::Esp,
                contents: Contents::Zeros { mib: 2 },
            },
        ],
        seed: "test disk".into(),
    };
    (spec, root)
}

/// `sgdisk -v` found nothing wrong: no problems, and no caution or warning about a header or
/// table it had to regenerate from the other copy.
fn sgdisk_verifies(disk: &Path) -> (bool, String) {
    let (ok, out) = run("sgdisk", &["-v", disk.to_str().unwrap()]);
    let clean =
        ok && out.contains("No problems found") && !out.contains("Caution") && !out.contains("Warning");
    (clean, out)
}

#[test]
fn gpt_layout_is_what_sgdisk_and_sfdisk_read() {
    let dir = tempfile::tempdir().unwrap();
    let (spec, root) = sample(dir.path());
    let disk = dir.path().join("disk.img");
    let layout = write_disk(&spec, &disk).unwrap();
    // 1 MiB before, 1 + 5 + 2 MiB of partitions, 1 MiB after.
    assert_eq!(layout.sectors, 10 * 2048);
    assert_eq!(std::fs::metadata(&disk).unwrap().len(), 10 << 20);
    let starts: Vec<(u64, u64)> = layout
        .partitions
        .iter()
        .map(|p| (p.first_lba, p.last_lba))
        .collect();
    assert_eq!(starts, [(2048, 4095), (4096, 14335), (14336, 18431)]);

    // sgdisk checks the protective MBR, both headers, both entry arrays and their CRC32s.
    let (clean, out) = sgdisk_verifies(&disk);
    assert!(clean, "{out}");

    let (ok, out) = run("sfdisk", &["--json", disk.to_str().unwrap()]);
    assert!(ok, "{out}");
    let t: serde_json::Value = serde_json::from_str(&out).unwrap();
    let t = &t["partitiontable"];
    assert_eq!(t["label"], "gpt");
    assert_eq!(t["id"], layout.guid.as_str());
    assert_eq!(t["firstlba"], 34);
    assert_eq!(t["lastlba"], layout.sectors - 34);
    let parts = t["partitions"].as_array().unwrap();
    assert_eq!(parts.len(), 3);
    for (p, l) in parts.iter().zip(&layout.partitions) {
        assert_eq!(p["start"], l.first_lba);
        assert_eq!(p["size"], l.sectors());
        assert_eq!(p["type"], l.kind.guid());
        assert_eq!(p["uuid"], l.guid.as_str());
        assert_eq!(p["name"], l.name.as_str());
    }

    // The root partition holds the ext4 image, byte for byte.
    let bytes = std::fs::read(&disk).unwrap();
    let ext4 = std::fs::read(&root).unwrap();
    let at = (layout.partitions[1].first_lba * 512) as usize;
    assert!(bytes[at..at + ext4.len()] == ext4[..]);

    // Same inputs, same bytes.
    let again = dir.path().join("again.img");
    write_disk(&spec, &again).unwrap();
    assert!(std::fs::read(&again).unwrap() == bytes);

    // The check can fail: a flipped bit in the primary entries, or a lost backup header.
    let mut broken = bytes.clone();
    broken[2 * 512 + 40] ^= 1;
    std::fs::write(&again, &broken).unwrap();
    let (clean, out) = sgdisk_verifies(&again);
    assert!(!clean, "{out}");
    let mut broken = bytes.clone();
    let n = broken.len();
    broken[n - 512..].fill(0);
    std::fs::write(&again, &broken).unwrap();
    let (clean, out) = sgdisk_verifies(&again);
    assert!(!clean, "{out}");
}

#[test]
fn qcow2_holds_the_same_disk() {
    let dir = tempfile::tempdir().unwrap();
    let (spec, _) = sample(dir.path());
    let raw = dir.path().join("disk.img");
    let qcow = dir.path().join("disk.qcow2");
    write_disk(&spec, &raw).unwrap();
    convert_qcow2(&raw, &qcow).unwrap();
    let (ok, out) = run("qemu-img", &["info", "--output=json", qcow.to_str().unwrap()]);
    assert!(ok, "{out}");
    let info: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(info["format"], "qcow2");
    assert_eq!(info["virtual-size"], 10 << 20);
    let (ok, out) = run(
        "qemu-img",
        &[
            "compare",
            "-f",
            "raw",
            "-F",
            "qcow2",
            raw.to_str().unwrap(),
            qcow.to_str().unwrap(),
        ],
    );
    assert!(ok && out.contains("Images are identical"), "{out}");
    // A missing input names the tool and the file.
    let err = convert_qcow2(&dir.path().join("none.img"), &qcow)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("qemu-img convert failed on") && err.contains("none.img"),
        "{err}"
    );
}

/// A boot.img as GRUB builds it: code, boot drive 0xff, the drive-check `jmp`, signature.
fn fake_boot_img() -> Vec<u8> {
    let mut b = vec![0xC3u8; 512];
    b[0x64] = 0xff;
    b[0x66] = 0xeb; // jmp 3f
    b[0x67] = 0x05;
    b[0x1b8..0x1fe].fill(0);
    b[510] = 0x55;
    b[511] = 0xAA;
    b
}

/// A core.img as grub-mkimage writes it: diskboot's sector with a block list of `rest` sectors,
/// then `rest` sectors (the last one short).
fn fake_core_img(rest: usize) -> Vec<u8> {
    let mut c = vec![0xABu8; 512 + rest * 512 - 100];
    c[0x1e8..0x1f4].fill(0);
    c[0x1f4..0x1fc].copy_from_slice(&2u64.to_le_bytes());
    c[0x1fc..0x1fe].copy_from_slice(&(rest as u16).to_le_bytes());
    c[0x1fe..0x200].copy_from_slice(&0x820u16.to_le_bytes());
    c
}

#[test]
fn grub_bios_install_patches_boot_and_core_and_keeps_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let (spec, _) = sample(dir.path());
    let disk = dir.path().join("disk.img");
    let layout = write_disk(&spec, &disk).unwrap();
    let before = std::fs::read(&disk).unwrap();
    let core = fake_core_img(60);
    install_grub_bios(&disk, &layout, &fake_boot_img(), &core).unwrap();
    let after = std::fs::read(&disk).unwrap();

    let mbr = &after[..512];
    assert_eq!(
        &mbr[0x5c..0x64],
        &2048u64.to_le_bytes(),
        "kernel sector = BIOS boot partition"
    );
    assert_eq!(&mbr[0x66..0x68], &[0x90, 0x90], "drive check off");
    assert_eq!(mbr[0x64], 0xff);
    assert_eq!(
        &mbr[0x1b8..0x200],
        &before[0x1b8..0x200],
        "partition table and signature kept"
    );
    assert_eq!(mbr[0], 0xC3, "boot code");
    let core_at = 2048 * 512;
    assert_eq!(
        &after[core_at + 0x1f4..core_at + 0x1fc],
        &2049u64.to_le_bytes(),
        "block list start"
    );
    assert_eq!(&after[core_at + 0x1fc..core_at + 0x200], &[60, 0, 0x20, 0x08]);
    assert_eq!(&after[core_at + 512..core_at + core.len()], &core[512..]);
    assert!(
        after[core_at + core.len()..core_at + 61 * 512]
            .iter()
            .all(|b| *b == 0),
        "padded"
    );
    // Everything else is untouched, and the GPT still verifies.
    assert_eq!(&after[512..core_at], &before[512..core_at]);
    assert_eq!(&after[core_at + 61 * 512..], &before[core_at + 61 * 512..]);
    let (clean, out) = sgdisk_verifies(&disk);
    assert!(clean, "{out}");

    // Wrong inputs are refused with the reason.
    let err = patch_boot_img(&[0; 512], &before[..512], 2048)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("boot.img: is 512 bytes without the 55 AA signature"),
        "{err}"
    );
    let mut bad = fake_core_img(3);
    bad[0x1fc] = 7;
    let err = patch_core_img(&bad, 2048).unwrap_err().to_string();
    assert!(
        err.contains("block list says 7 sectors at segment 0x820, but the image has 3"),
        "{err}"
    );
    let err = install_grub_bios(&disk, &layout, &fake_boot_img(), &fake_core_img(2100))
        .unwrap_err()
        .to_string();
    assert!(err.contains("but the BIOS boot partition holds 1048576"), "{err}");
}

/// The ext4 file system of partition `n` of a (raw or qcow2) disk, as a file of its own.
fn partition_of(disk: &Path, format: &str, layout: &xlfs_image::DiskLayout, n: usize, out: &Path) {
    let raw = out.with_extension("whole");
    let (ok, text) = run(
        "qemu-img",
        &[
            "convert",
            "-f",
            format,
            "-O",
            "raw",
            disk.to_str().unwrap(),
            raw.to_str().unwrap(),
        ],
    );
    assert!(ok, "{text}");
    let bytes = std::fs::read(&raw).unwrap();
    let p = &layout.partitions[n - 1];
    std::fs::write(
        out,
        &bytes[(p.first_lba * 512) as usize..((p.last_lba + 1) * 512) as usize],
    )
    .unwrap();
}

/// A variant of a disk with a few files put into its root: a qcow2 over the unchanged raw disk
/// holding only what differs, with the new files, modes and owners; moved with its base it
/// still opens; a clash of a file with a directory is refused.
#[test]
fn a_disk_variant_differs_in_its_files_only() {
    let dir = tempfile::tempdir().unwrap();
    let mut fs = RootFs::new();
    fs.add_dir("root", 0o700, 0, 0).unwrap();
    fs.add_file("etc/shadow", b"root:!:1::::::\n".to_vec(), 0o600, 0, 0)
        .unwrap();
    fs.add_file("usr/bin/big", vec![7u8; 3 << 20], 0o755, 0, 0)
        .unwrap();
    let root = dir.path().join("root.ext4");
    let opts = Ext4Options {
        size_mib: 24,
        mtime: 1_700_000_000,
        ..Ext4Options::default()
    };
    write_ext4(&fs, &root, &opts).unwrap();
    let spec = DiskSpec {
        partitions: vec![
            PartSpec {
                name: "bios-boot".into(),
                kind: PartType::BiosBoot,
                contents: Contents::Zeros { mib: 1 },
            },
            PartSpec {
                name: "root".into(),
                kind: PartType::LinuxRootX86_64,
                contents: Contents::File(root),
            },
        ],
        seed: "variant test".into(),
    };
    // A space in the directory: qemu-io's commands are split on spaces.
    let out = dir.path().join("my images");
    std::fs::create_dir(&out).unwrap();
    let base = out.join("disk.img");
    let layout = write_disk(&spec, &base).unwrap();
    let before = std::fs::read(&base).unwrap();

    let mut edits = RootFs::new();
    edits
        .add_file("etc/shadow", b"root:$6$salt$hash:1::::::\n".to_vec(), 0o600, 0, 0)
        .unwrap();
    edits.add_dir("root", 0o755, 0, 0).unwrap();
    edits.add_dir("root/.ssh", 0o700, 0, 0).unwrap();
    edits
        .add_file(
            "root/.ssh/authorized_keys",
            b"ssh-ed25519 AAAA check\n".to_vec(),
            0o600,
            0,
            0,
        )
        .unwrap();
    let variant = out.join("check.qcow2");
    xlfs_image::write_disk_variant(&base, &layout, 2, &edits, 1_700_000_000, &variant).unwrap();
    assert!(
        std::fs::read(&base).unwrap() == before,
        "the base disk is unchanged"
    );
    let (ok, info) = run("qemu-img", &["info", "--output=json", variant.to_str().unwrap()]);
    assert!(ok, "{info}");
    let info: serde_json::Value = serde_json::from_str(&info).unwrap();
    assert_eq!(info["backing-filename"], "disk.img", "{info}");
    assert_eq!(info["backing-filename-format"], "raw");
    let stored = std::fs::metadata(&variant).unwrap().len();
    let (_, map) = run("qemu-img", &["map", variant.to_str().unwrap()]);
    assert!(
        stored < 2 << 20,
        "the variant holds only what differs: {stored} bytes\n{map}"
    );

    // Moved together, the pair still opens: the variant's root has the edits, the base not.
    let moved = dir.path().join("moved");
    std::fs::rename(&out, &moved).unwrap();
    let ext = dir.path().join("variant.ext4");
    partition_of(&moved.join("check.qcow2"), "qcow2", &layout, 2, &ext);
    assert_eq!(
        xlfs_image::ext4_cat(&ext, "root/.ssh/authorized_keys").unwrap(),
        b"ssh-ed25519 AAAA check\n"
    );
    assert_eq!(
        xlfs_image::ext4_cat(&ext, "etc/shadow").unwrap(),
        b"root:$6$salt$hash:1::::::\n"
    );
    assert_eq!(xlfs_image::ext4_cat(&ext, "usr/bin/big").unwrap().len(), 3 << 20);
    let listing = xlfs_image::read_ext4(&ext).unwrap();
    let get = |p: &str| listing.iter().find(|e| e.path == p).unwrap();
    assert_eq!(
        get("root").mode & 0o7777,
        0o700,
        "an existing directory keeps its mode"
    );
    assert_eq!(get("root/.ssh").mode & 0o7777, 0o700);
    let keys = get("root/.ssh/authorized_keys");
    assert_eq!((keys.mode & 0o7777, keys.uid, keys.gid), (0o600, 0, 0));
    let base_ext = dir.path().join("base.ext4");
    partition_of(&moved.join("disk.img"), "raw", &layout, 2, &base_ext);
    let base_listing = xlfs_image::read_ext4(&base_ext).unwrap();
    assert!(base_listing.iter().all(|e| !e.path.starts_with("root/.ssh")));
    assert_eq!(
        xlfs_image::ext4_cat(&base_ext, "etc/shadow").unwrap(),
        b"root:!:1::::::\n"
    );

    // A file where the disk has a directory is refused, and nothing is written.
    let mut bad = RootFs::new();
    bad.add_file("root", b"x".to_vec(), 0o644, 0, 0).unwrap();
    let err = xlfs_image::write_disk_variant(
        &moved.join("disk.img"),
        &layout,
        2,
        &bad,
        1,
        &moved.join("bad.qcow2"),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("root") && err.contains("regular file"), "{err}");
    assert!(!moved.join("bad.qcow2").exists());
    // A variant elsewhere than its base is refused.
    let err = xlfs_image::write_disk_variant(&moved.join("disk.img"), &layout, 2, &edits, 1, &ext)
        .unwrap_err()
        .to_string();
    assert!(err.contains("directory of its base"), "{err}");
}
