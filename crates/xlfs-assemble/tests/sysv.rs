//! A SysV host assembled from small synthetic packages into a real GPT disk (GRUB's tools are a
//! stand-in: the disk is not booted here): the closure's files without the excluded classes,
//! the generated configuration, chrony as a client only, the time zone, the guests' disks, the
//! fatal budget, and the boot check's credentials in the check disk only, never in the
//! deliverable disk.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use xlfs_assemble::sysv::{CheckCredentials, SysvInputs, CHECK_DISK, DISK_QCOW2, DISK_RAW};
use xlfs_assemble::{assemble_with, Artifacts, Images};
use xlfs_book::profile::Profile;
use xlfs_book::Book;
use xlfs_store::LocalStore;

mod common;
use common::{mk, recipe};

const EPOCH: u64 = 1_700_000_000;
/// The profile's key (valid: the profile is validated) and the check's.
const PROFILE_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJYRch0E2Zkxt8T/4TIEnwPjIqM/QtIZKGLzl/4zTJrp admin@laptop";
const CHECK_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICHECKCHECKCHECKCHECKCHECKCHECKCHECKCHECKCHE xlfs-boot-check";
const CHECK_HASH: &str = "$6$checksalt$CHECKHASHCHECKHASHCHECKHASH";

fn profile_text(timezone: &str, setuid: u32) -> String {
    format!(
        r#"
[host]
hostname = "tiny-host"
xen = "xen"
kernel = "linux"
init = "sysv"
disk-image = true
packages = ["base", "chrony"]
bridge = {{ name = "xenbr0", address = "10.0.0.1/24" }}
fqdn = "tiny-host.example.org"
interfaces = [{{ name = "eth0", bridge = "xenbr0" }}]
ntp = ["ntp1.example.org", "ntp2.example.org"]
timezone = "{timezone}"
root-password = "none"
ssh-keys = ["{PROFILE_KEY}"]
serial = {{ port = "com1", speed = 115200 }}
[host.budget]
root-size = 150
setuid = {setuid}
python = false
x11 = false
compilers = false
[[guest]]
name = "g1"
hostname = "tiny-guest"
kernel = "linux"
packages = ["base"]
memory = 64
disk-size = 16
network = {{ bridge = "xenbr0", address = "10.0.0.2/24", mac = "00:16:3e:00:00:02" }}
[boot]
memory = 512
check-credentials = true
"#
    )
}

/// A core.img as grub-mkimage writes it: diskboot's sector with a block list of 2 sectors at
/// segment 0x820, then those sectors.
fn fake_core_img() -> Vec<u8> {
    let mut c = vec![0x90u8; 512 * 3];
    let e = 0x200 - 12;
    c[e..e + 8].fill(0);
    c[e + 8..e + 10].copy_from_slice(&2u16.to_le_bytes());
    c[e + 10..e + 12].copy_from_slice(&0x820u16.to_le_bytes());
    c[e - 12..e].fill(0);
    c
}

fn fake_boot_img() -> Vec<u8> {
    let mut b = vec![0xC3u8; 512];
    b[0x64] = 0xff;
    b[0x66] = 0xeb;
    b[0x67] = 0x05;
    b[0x1b8..0x1fe].fill(0);
    b[510] = 0x55;
    b[511] = 0xAA;
    b
}

/// What each package "installed".
fn trees(root: &Path) -> BTreeMap<&'static str, PathBuf> {
    let mut t = BTreeMap::new();
    let base = mk(
        root,
        "base",
        &[
            (
                "etc/passwd",
                b"root:x:0:0:root:/root:/bin/bash\nbin:x:1:1:bin:/dev/null:/usr/bin/false\n",
                0o644,
            ),
            (
                "etc/shadow",
                b"root:*:19000:0:99999:7:::\nbin:!:19000:0:99999:7:::\n",
                0o600,
            ),
            ("usr/bin/bash", b"#!fake shell\n", 0o755),
            ("usr/bin/su", b"fake su\n", 0o755),
            ("usr/include/base.h", b"int x;\n", 0o644),
            ("usr/lib/libbase.a", b"!<arch>\n", 0o644),
            ("usr/share/man/man1/bash.1", b".TH BASH 1\n", 0o644),
            ("usr/share/zoneinfo/UTC", b"TZif2 fake\n", 0o644),
        ],
    );
    std::os::unix::fs::symlink("usr/bin", base.join("bin")).unwrap();
    t.insert("base", base);
    t.insert(
        "chrony",
        mk(
            root,
            "chrony",
            &[
                ("usr/sbin/chronyd", b"fake chronyd\n", 0o755),
                (
                    "etc/chrony.conf",
                    b"# the package's\npool pool.ntp.org iburst\ndriftfile /var/lib/chrony/drift\nport 123\nrtcsync\n",
                    0o644,
                ),
            ],
        ),
    );
    t.insert("xen", mk(root, "xen", &[("boot/xen", b"fake xen\n", 0o644)]));
    t.insert(
        "linux",
        mk(
            root,
            "linux",
            &[
                ("boot/vmlinuz-1.0", b"fake kernel\n", 0o644),
                ("boot/System.map-1.0", b"map\n", 0o644),
                ("usr/lib/modules/1.0/modules.dep", b"\n", 0o644),
            ],
        ),
    );
    // GRUB's tools as far as the disk writer uses them: grub-mkimage writes a core.img.
    let pc = xlfs_image::GRUB_PC_DIR;
    let core = fake_core_img();
    let boot = fake_boot_img();
    let mkimage = format!(
        "#!/bin/sh\nwhile [ $# -gt 0 ]; do case \"$1\" in -o) out=$2; shift;; esac; shift; done\n\
         cp \"$(dirname \"$0\")/../../{pc}/core.fake\" \"$out\"\n"
    );
    t.insert(
        "grub",
        mk(
            root,
            "grub",
            &[
                ("usr/bin/grub-mkimage", mkimage.as_bytes(), 0o755),
                (&format!("{pc}/core.fake"), &core, 0o644),
                (&format!("{pc}/boot.img"), &boot, 0o644),
                (&format!("{pc}/normal.mod"), b"mod\n", 0o644),
                (&format!("{pc}/moddep.lst"), b"normal:\n", 0o644),
            ],
        ),
    );
    t
}

struct World {
    _dir: tempfile::TempDir,
    root: PathBuf,
    book: Book,
    store: LocalStore,
    keys: BTreeMap<String, String>,
    grub: PathBuf,
}

fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let files = vec![
        recipe(
            "base",
            &[],
            "[[file]]\npath = \"usr/bin/su\"\nmode = \"4755\"\n[[file]]\npath = \"etc/shadow\"\nmode = \"0600\"\n",
        ),
        recipe("chrony", &["base"], ""),
        recipe("xen", &[], ""),
        recipe("linux", &[], ""),
        recipe("grub", &[], ""),
    ];
    let book = Book::from_files(&root, files, &|_| Err(std::io::ErrorKind::NotFound.into())).unwrap();
    let (profile, _) = load(&root, &book, &profile_text("UTC", 1));
    let trees = trees(&root.join("trees"));
    let (store, keys) = common::store_plan(&root, &book, &profile, &trees, EPOCH);
    let grub = trees["grub"].clone();
    World {
        _dir: dir,
        root,
        book,
        store,
        keys,
        grub,
    }
}

fn load(root: &Path, book: &Book, text: &str) -> (Profile, ()) {
    let (p, d) = xlfs_book::profile::parse_profile(&root.join("profiles/tiny.toml"), "tiny", text);
    assert!(d.is_empty(), "{d:?}");
    let profile = p.unwrap();
    let d = profile.check(book);
    assert!(d.is_empty(), "{d:?}");
    (profile, ())
}

fn creds() -> CheckCredentials {
    CheckCredentials {
        public_key: CHECK_KEY.into(),
        password_hash: CHECK_HASH.into(),
    }
}

fn assemble(
    w: &World,
    text: &str,
    out: &str,
    credentials: Option<CheckCredentials>,
) -> anyhow::Result<Images> {
    let (profile, _) = load(&w.root, &w.book, text);
    let a = Artifacts {
        book: &w.book,
        keys: w.keys.clone(),
        store: &w.store,
    };
    let inputs = SysvInputs {
        grub: xlfs_assemble::GrubTrees {
            bios: &w.grub,
            efi: None,
        },
        binutils: None,
        credentials,
    };
    assemble_with(
        &a,
        &profile,
        &w.root.join(out),
        EPOCH,
        xlfs_assemble::Disk::Sysv(&inputs),
    )
}

/// Partition 2 (the root) of a raw or qcow2 disk, as e2fsprogs name it: `DISK?offset=N` (a
/// qcow2 is converted to a sparse raw disk first).
fn root_of(disk: &Path, format: &str, images: &Images, scratch: &Path) -> PathBuf {
    assert!(images.root_partuuid.is_some());
    let raw = if format == "raw" {
        disk.to_path_buf()
    } else {
        let o = Command::new("qemu-img")
            .args(["convert", "-f", format, "-O", "raw"])
            .arg(disk)
            .arg(scratch)
            .output()
            .expect("qemu-img (scripts/host-packages.txt)");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        scratch.to_path_buf()
    };
    // The root partition starts after 1 MiB of GPT and the 1 MiB BIOS boot partition.
    PathBuf::from(format!("{}?offset={}", raw.display(), 2 << 20))
}

fn cat(ext4: &Path, path: &str) -> String {
    String::from_utf8(xlfs_image::ext4_cat(ext4, path).unwrap_or_else(|e| panic!("{path}: {e}"))).unwrap()
}

/// Whether the file holds `needle` anywhere (`grep -F` over the bytes: the disks are large).
fn contains(file: &Path, needle: &str) -> bool {
    let s = Command::new("grep")
        .args(["-q", "-a", "-F", needle])
        .arg(file)
        .status()
        .unwrap();
    assert!(
        s.code().is_some_and(|c| c <= 1),
        "grep failed on {}",
        file.display()
    );
    s.success()
}

#[test]
fn the_deliverable_disk_has_no_check_credentials_and_the_check_disk_has_them() {
    let w = world();
    let images = assemble(&w, &profile_text("UTC", 1), "images/tiny", Some(creds())).unwrap();
    let dir = w.root.join("images/tiny");
    assert_eq!(images.disk.as_deref(), Some(dir.join(DISK_RAW).as_path()));
    assert_eq!(images.check_disk.as_deref(), Some(dir.join(CHECK_DISK).as_path()));
    for f in [DISK_RAW, DISK_QCOW2, CHECK_DISK] {
        assert!(images.files.contains_key(f), "{f} is listed with its hash");
    }

    // Not one byte of the check's key or password hash in the deliverable, raw or qcow2.
    for f in [DISK_RAW, DISK_QCOW2] {
        let disk = dir.join(f);
        assert!(!contains(&disk, "CHECKCHECK"), "{f} holds the check key");
        assert!(
            !contains(&disk, "CHECKHASH"),
            "{f} holds the console password's hash"
        );
        assert!(contains(&disk, "admin@laptop"), "{f} holds the profile's key");
    }
    let root = root_of(&dir.join(DISK_RAW), "raw", &images, &w.root.join("unused"));
    assert_eq!(
        cat(&root, "root/.ssh/authorized_keys"),
        format!("{PROFILE_KEY}\n")
    );
    let shadow = cat(&root, "etc/shadow");
    assert!(
        shadow.starts_with("root:!:"),
        "root-password = \"none\" locks it: {shadow}"
    );
    assert!(
        shadow.contains("\nbin:!:19000:"),
        "the other lines stay: {shadow}"
    );

    // The check disk: a qcow2 over the deliverable raw disk, with both keys and the hash.
    let o = Command::new("qemu-img")
        .args(["info", "--output=json"])
        .arg(dir.join(CHECK_DISK))
        .output()
        .unwrap();
    let info: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(info["backing-filename"], DISK_RAW, "{info}");
    assert!(
        contains(&dir.join(CHECK_DISK), "CHECKCHECK"),
        "the check disk holds the key"
    );
    let check = root_of(&dir.join(CHECK_DISK), "qcow2", &images, &w.root.join("check.img"));
    assert_eq!(
        cat(&check, "root/.ssh/authorized_keys"),
        format!("{PROFILE_KEY}\n{CHECK_KEY}\n")
    );
    let shadow = cat(&check, "etc/shadow");
    assert!(shadow.starts_with(&format!("root:{CHECK_HASH}:")), "{shadow}");
    assert!(shadow.contains("\nbin:!:19000:"), "{shadow}");
    let listing = xlfs_image::read_ext4(&check).unwrap();
    let get = |p: &str| {
        listing
            .iter()
            .find(|e| e.path == p)
            .unwrap_or_else(|| panic!("{p}"))
    };
    for (p, mode) in [
        ("etc/shadow", 0o600),
        ("root", 0o700),
        ("root/.ssh", 0o700),
        ("root/.ssh/authorized_keys", 0o600),
    ] {
        let e = get(p);
        assert_eq!((e.mode & 0o7777, e.uid, e.gid), (mode, 0, 0), "{p}");
    }
    // Everything else is the deliverable's.
    assert_eq!(cat(&check, "etc/chrony.conf"), cat(&root, "etc/chrony.conf"));

    // Without check credentials: the same deliverable disk, byte for byte, and no check disk.
    let plain = assemble(&w, &profile_text("UTC", 1), "images/plain", None).unwrap();
    assert_eq!(plain.files[DISK_RAW], images.files[DISK_RAW]);
    assert!(plain.check_disk.is_none());
    assert!(!w.root.join("images/plain").join(CHECK_DISK).exists());
    // images.json keeps the check disk, also when the directory moves.
    std::fs::rename(&dir, w.root.join("moved")).unwrap();
    let loaded = Images::load(&w.root.join("moved")).unwrap();
    assert_eq!(loaded.check_disk, Some(w.root.join("moved").join(CHECK_DISK)));
}

#[test]
fn the_root_is_the_closure_with_its_configuration() {
    let w = world();
    let images = assemble(&w, &profile_text("UTC", 1), "images/tiny", None).unwrap();
    let root = root_of(
        images.disk.as_ref().unwrap(),
        "raw",
        &images,
        &w.root.join("unused"),
    );
    let listing = xlfs_image::read_ext4(&root).unwrap();
    let has = |p: &str| listing.iter().any(|e| e.path == p);
    // The packages, without headers, static libraries, documentation; the kernel's modules
    // without its /boot files, which go to /boot from the kernel package only.
    for p in [
        "usr/bin/bash",
        "usr/sbin/chronyd",
        "usr/lib/modules/1.0/modules.dep",
        "boot/xen",
        "boot/vmlinuz-1.0",
    ] {
        assert!(has(p), "{p} is in the root");
    }
    for p in [
        "usr/include/base.h",
        "usr/lib/libbase.a",
        "usr/share/man/man1/bash.1",
        "boot/System.map-1.0",
    ] {
        assert!(!has(p), "{p} stays out");
    }
    let su = listing.iter().find(|e| e.path == "usr/bin/su").unwrap();
    assert_eq!(su.mode & 0o7777, 0o4755);
    assert_eq!(
        images.packages.keys().map(String::as_str).collect::<Vec<_>>(),
        ["base", "chrony", "linux"]
    );
    // chrony: the machine's servers instead of the pool, and a client only.
    let chrony = cat(&root, "etc/chrony.conf");
    assert!(
        chrony.contains("server ntp1.example.org iburst\nserver ntp2.example.org iburst\n"),
        "{chrony}"
    );
    assert!(
        !chrony.contains("pool ") && !chrony.contains("port 123"),
        "{chrony}"
    );
    assert!(chrony.ends_with("port 0\ncmdport 0\n"), "{chrony}");
    assert!(chrony.contains("driftfile /var/lib/chrony/drift\n") && chrony.contains("rtcsync\n"));
    // The time zone, the configuration, GRUB's files.
    let localtime = listing.iter().find(|e| e.path == "etc/localtime").unwrap();
    assert_eq!(localtime.target.as_deref(), Some("/usr/share/zoneinfo/UTC"));
    assert_eq!(cat(&root, "etc/lfs-release"), "12.4\n");
    assert_eq!(cat(&root, "etc/hostname"), "tiny-host\n");
    assert!(cat(&root, "etc/fstab").contains(&format!(
        "PARTUUID={} / ext4",
        images.root_partuuid.as_ref().unwrap().to_lowercase()
    )));
    // Every mount point of fstab outside the file systems mounted on / (devtmpfs, sysfs makes
    // its own) is a directory of the root: proc and sys are in no package.
    let fstab = cat(&root, "etc/fstab");
    let mounts: Vec<&str> = fstab
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    for m in &mounts {
        let top = m.trim_start_matches('/');
        if top.is_empty()
            || mounts
                .iter()
                .any(|o| *o != "/" && o != m && m.starts_with(&format!("{o}/")))
        {
            continue;
        }
        let e = listing
            .iter()
            .find(|e| e.path == top)
            .unwrap_or_else(|| panic!("mount point {m}"));
        assert_eq!(e.mode & 0o170000, 0o040000, "mount point {m} is a directory");
    }
    assert!(mounts.contains(&"/proc") && mounts.contains(&"/sys"), "{fstab}");
    assert!(cat(&root, "etc/inittab").contains("agetty -L 115200 ttyS0"));
    assert!(cat(&root, "boot/grub/grub.cfg").contains("multiboot2"));
    assert!(has("boot/grub/i386-pc/normal.mod"));
    assert!(cat(&root, "etc/xen/g1.cfg").contains("name = \"g1\""));
    // The guest's disk is on dom0's root, byte for byte, and its kernel.
    let guest = cat(&root, "var/lib/xlfs/kernels/vmlinuz-1.0");
    assert_eq!(guest, "fake kernel\n");
    let img = listing
        .iter()
        .find(|e| e.path.starts_with("var/lib/xen/images/"))
        .expect("the guest's disk in /var/lib/xen/images");
    assert_eq!(
        xlfs_image::ext4_cat(&root, &img.path).unwrap(),
        std::fs::read(&images.guests[0].disk).unwrap()
    );
    // The audit is of dom0's own files: not the guest's disk.
    let audit = images.dom0_audit.as_ref().unwrap();
    assert!(audit.bytes < 1 << 20, "{}", audit.summary());
    assert_eq!(audit.setuid, ["usr/bin/su"]);
}

#[test]
fn a_zone_that_is_not_there_and_a_broken_budget_are_fatal() {
    let w = world();
    let err = assemble(&w, &profile_text("Mars/Olympus_Mons", 1), "images/tz", None).unwrap_err();
    let e = format!("{err:#}");
    assert!(
        e.contains("host.timezone") && e.contains("Mars/Olympus_Mons") && e.contains("tzdata"),
        "{e}"
    );
    assert!(!w.root.join("images/tz").exists(), "no images that look complete");

    let err = assemble(&w, &profile_text("UTC", 0), "images/budget", None).unwrap_err();
    let e = format!("{err:#}");
    assert!(
        e.contains("[host.budget]")
            && e.contains("/usr/bin/su (from package `base`)")
            && e.contains("the budget allows 0"),
        "{e}"
    );
    assert!(!w.root.join("images/budget").exists());
}
