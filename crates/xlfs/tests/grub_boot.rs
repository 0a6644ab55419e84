//! GRUB from source, installed by xlfs on a GPT disk image file, booting under QEMU (TCG).
//!
//! The book's `grub` (BIOS) and `grub-efi` (UEFI) are built from an empty home in the pinned
//! toolchain root (a few minutes each); xlfs then writes a disk with both whose grub.cfg runs the
//! boot watchdog's prelude and prints a marker on the serial console, and QEMU boots it twice
//! from SeaBIOS: the first boot takes the once-only `next_entry` and erases it from grubenv
//! (GRUB's `save_env` on our ext4), the second boot sees only `saved_entry`. Then OVMF boots a
//! copy with `next_entry` set again through the EFI system partition. The generated grub.cfg
//! of the quick profile passes `grub-script-check`.

mod common;
use common::{plan_steps, text, toolchains};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use xlfs_image::{Ext4Options, RootFs};

/// Build `package` (grub or grub-efi) in `home`; the path of its artifact's tree.
fn build_grub(home: &Path, package: &str) -> PathBuf {
    let book = concat!(env!("CARGO_MANIFEST_DIR"), "/../../book");
    let run = |args: &[&str]| {
        let started = Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_xlfs"))
            .arg("--book")
            .arg(book)
            .arg("--home")
            .arg(home)
            .arg("--toolchains")
            .arg(toolchains())
            .args(args)
            .env_remove("XLFS_DEBIAN_MIRROR")
            .env_remove("XLFS_MIRROR_DIR")
            .env_remove("XLFS_SOURCES")
            .output()
            .unwrap();
        let t = text(&out);
        assert!(out.status.success(), "xlfs {args:?}:\n{t}");
        eprintln!("xlfs {args:?}: {:.1}s", started.elapsed().as_secs_f64());
        t
    };
    run(&["toolchain"]);
    let out = run(&["build", package, "--no-runtime"]);
    assert!(out.contains("failed 0") || out.contains("all cached"), "{out}");
    let steps = plan_steps(&run(&["plan", "--json", package]));
    let (_, key, status) = steps.iter().find(|s| s.0 == package).expect("grub planned");
    assert_eq!(status, "cached");
    let store = xlfs_store::LocalStore::open(home.join("store")).unwrap();
    store.tree(key).unwrap()
}

/// Boot `disk` (qcow2) until QEMU exits (GRUB's `reboot` with `-no-reboot`); the serial output.
/// `uefi`: from OVMF (Debian's `ovmf`), else from QEMU's SeaBIOS.
fn boot(disk: &Path, dir: &Path, uefi: bool) -> String {
    let serial = dir.join("serial.txt");
    let _ = std::fs::remove_file(&serial);
    let mut child = Command::new("qemu-system-x86_64")
        .args(["-machine", "pc", "-accel", "tcg", "-m", "128", "-display", "none"])
        .args(["-no-reboot", "-monitor", "none", "-nodefaults", "-vga", "std"])
        .args(if uefi {
            &["-bios", "/usr/share/ovmf/OVMF.fd"][..]
        } else {
            &[]
        })
        .arg("-serial")
        .arg(format!("file:{}", serial.display()))
        .arg("-drive")
        .arg(format!("file={},format=qcow2,if=ide", disk.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("qemu-system-x86_64 (scripts/host-packages.txt)");
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let out = std::fs::read_to_string(&serial).unwrap_or_default();
            assert!(status.success(), "QEMU: {status}\nserial:\n{out}");
            return out;
        }
        if started.elapsed() > Duration::from_secs(240) {
            let _ = child.kill();
            let _ = child.wait();
            let out = std::fs::read_to_string(&serial).unwrap_or_default();
            panic!("GRUB did not reboot within 240 s; serial console:\n{out}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn grub_from_source_boots_a_gpt_disk_written_by_xlfs() {
    // XLFS_TEST_GRUB_HOME reuses a home where grub is built (the build is then cached).
    let home = tempfile::tempdir().unwrap();
    let home = std::env::var_os("XLFS_TEST_GRUB_HOME").map_or(home.path().to_path_buf(), PathBuf::from);
    let grub = build_grub(&home, "grub");
    let grub_efi = build_grub(&home, "grub-efi");
    let common = ["kernel.img", "normal.mod", "multiboot2.mod", "moddep.lst"];
    for (package, dir, own) in [
        (
            "grub",
            grub.join(xlfs_image::GRUB_PC_DIR),
            &["boot.img", "diskboot.img"][..],
        ),
        (
            "grub-efi",
            grub_efi.join(xlfs_image::GRUB_EFI_DIR),
            &["efi_gop.mod"],
        ),
    ] {
        for f in common.iter().chain(own) {
            assert!(dir.join(f).is_file(), "{f} in the {package} artifact");
        }
    }

    // The quick profile's grub.cfg is valid GRUB script.
    let dir = tempfile::tempdir().unwrap();
    let profile_text = include_str!("../../../book/profiles/quick.toml");
    let (p, d) = xlfs_book::profile::parse_profile(Path::new("profiles/quick.toml"), "quick", profile_text);
    assert!(d.is_empty(), "{d:?}");
    let files = xlfs_system::grub::BootFiles {
        xen: "/boot/xen.gz".into(),
        kernel: "/boot/vmlinuz".into(),
        initrd: Some("/boot/initramfs.cpio.gz".into()),
        root: Some("/dev/sda2".into()),
    };
    let cfg_path = dir.path().join("grub.cfg");
    std::fs::write(&cfg_path, xlfs_system::grub::grub_cfg(&p.unwrap(), &files)).unwrap();
    let out = Command::new(grub.join("usr/bin/grub-script-check"))
        .arg(&cfg_path)
        .output()
        .unwrap();
    assert!(out.status.success(), "grub-script-check: {}", text(&out));

    // A disk whose grub.cfg reports what the watchdog prelude chose, then reboots.
    let cfg = format!(
        "serial --unit=0 --speed=115200\nterminal_input serial console\nterminal_output serial console\n{}\
         echo \"XLFS-GRUB-OK default=${{default}} trial=${{xlfs_trial}} fallback=${{fallback}}\"\nreboot\n",
        xlfs_system::grub::WATCHDOG_PRELUDE
    );
    let mut fs = RootFs::new();
    fs.add_file("boot/grub/grub.cfg", cfg.into_bytes(), 0o644, 0, 0)
        .unwrap();
    let env = xlfs_system::grub::grubenv(&[("saved_entry", "xen"), ("next_entry", "xen-new")]);
    fs.add_file("boot/grub/grubenv", env, 0o644, 0, 0).unwrap();
    let raw = dir.path().join("disk.img");
    let qcow = dir.path().join("disk.qcow2");
    let opts = Ext4Options {
        mtime: 1_704_067_200,
        ..Ext4Options::default()
    };
    let layout = xlfs_image::write_grub_disk(
        fs,
        &grub,
        Some(&grub_efi),
        &opts,
        "grub boot test",
        &raw,
        Some(&qcow),
    )
    .unwrap();
    assert_eq!(
        layout.partitions[1].number, 2,
        "the root is gpt2, the loaders' prefix"
    );
    let v = Command::new("sgdisk").arg("-v").arg(&raw).output().unwrap();
    assert!(text(&v).contains("No problems found"), "{}", text(&v));
    // The EFI system partition: partition 3, FAT32, GRUB's EFI image at the removable-media path.
    let esp = layout.find(xlfs_image::PartType::Esp).expect("an ESP");
    assert_eq!(esp.number, xlfs_image::ESP_PARTITION);
    let info = Command::new("sgdisk")
        .args(["-i", "3"])
        .arg(&raw)
        .output()
        .unwrap();
    assert!(
        text(&info).contains("C12A7328-F81F-11D2-BA4B-00A0C93EC93B"),
        "{}",
        text(&info)
    );
    let loader = xlfs_image::esp_cat(
        &raw,
        esp.first_lba * xlfs_image::SECTOR,
        xlfs_image::EFI_BOOT_PATH,
    )
    .unwrap();
    assert_eq!(&loader[..2], b"MZ", "BOOTX64.EFI is a PE image");

    let first = boot(&qcow, dir.path(), false);
    assert!(
        first.contains("XLFS-GRUB-OK default=xen-new trial=1 fallback=xen linux"),
        "first boot:\n{first}"
    );
    // save_env erased next_entry on the disk: the second boot is back on saved_entry.
    let second = boot(&qcow, dir.path(), false);
    assert!(
        second.contains("XLFS-GRUB-OK default=xen trial=0 fallback=xen linux"),
        "second boot:\n{second}"
    );
    // The same disk from UEFI firmware: OVMF loads BOOTX64.EFI from the ESP, which reads the
    // same grub.cfg and grubenv from the root.
    let next = dir.path().join("disk-next.qcow2");
    let mut fs = RootFs::new();
    fs.add_file(
        "boot/grub/grubenv",
        xlfs_system::grub::grubenv(&[("saved_entry", "xen"), ("next_entry", "xen-new")]),
        0o644,
        0,
        0,
    )
    .unwrap();
    xlfs_image::write_disk_variant(
        &raw,
        &layout,
        xlfs_image::ROOT_PARTITION,
        &fs,
        1_704_067_200,
        &next,
    )
    .unwrap();
    let efi = boot(&next, dir.path(), true);
    assert!(
        efi.contains("XLFS-GRUB-OK default=xen-new trial=1 fallback=xen linux"),
        "UEFI boot:\n{efi}"
    );

    // A BusyBox profile's disk (`disk-image = true`): Xen, the kernel and the initramfs of the
    // images directory in /boot of its ext4 partition, and a grub.cfg that loads Xen by
    // multiboot2 with them. (`xlfs boot disk --check` boots such a disk for real.)
    let images = dir.path().join("images");
    std::fs::create_dir_all(&images).unwrap();
    for (f, bytes) in [
        ("xen", "XEN"),
        ("vmlinuz", "LINUX"),
        ("dom0.cpio.gz", "INITRAMFS"),
    ] {
        std::fs::write(images.join(f), bytes).unwrap();
    }
    let disk_text = include_str!("../../../book/profiles/disk.toml");
    let (p, d) = xlfs_book::profile::parse_profile(Path::new("profiles/disk.toml"), "disk", disk_text);
    assert!(d.is_empty(), "{d:?}");
    let p = p.unwrap();
    assert!(p.host.uefi, "the disk profile boots from UEFI too");
    let trees = xlfs_assemble::GrubTrees {
        bios: &grub,
        efi: Some(&grub_efi),
    };
    let layout = xlfs_assemble::busybox_disk(&p, &images, trees, 1_704_067_200).unwrap();
    let raw = images.join(xlfs_assemble::sysv::DISK_RAW);
    assert!(images.join(xlfs_assemble::sysv::DISK_QCOW2).is_file());
    assert!(layout.find(xlfs_image::PartType::Esp).is_some());
    let root = &layout.partitions[xlfs_image::ROOT_PARTITION as usize - 1];
    let part = format!("{}?offset={}", raw.display(), root.first_lba * xlfs_image::SECTOR);
    let cat = |path: &str| {
        let out = Command::new("debugfs")
            .args(["-R", &format!("cat {path}"), &part])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    assert_eq!(cat("/boot/xen"), "XEN");
    assert_eq!(cat("/boot/vmlinuz"), "LINUX");
    assert_eq!(cat("/boot/initramfs.cpio.gz"), "INITRAMFS");
    let cfg = cat("/boot/grub/grub.cfg");
    assert!(cfg.contains("multiboot2 '/boot/xen' console=com1"), "{cfg}");
    assert!(cfg.contains("module2 '/boot/vmlinuz' "), "{cfg}");
    assert!(
        cfg.contains("module2 --nounzip '/boot/initramfs.cpio.gz'"),
        "{cfg}"
    );
}
