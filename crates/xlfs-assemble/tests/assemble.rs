//! Image assembly on small inputs: real artifacts packed into a real store, assembled into a
//! real initramfs, ext4 images and xl.cfg, then read back and checked: contents, modes, owners.

use std::collections::BTreeMap;
use std::path::Path;
use xlfs_assemble::{assemble, Artifacts, Images};
use xlfs_book::profile::Profile;
use xlfs_book::{Book, BookFile};
use xlfs_store::LocalStore;

mod common;
use common::{mk, recipe};

const PROFILE: &str = r#"
[host]
hostname = "tiny-host"
xen = "xen"
kernel = "linux"
packages = ["tools"]
xen-cmdline = "console=com1 dom0_mem=256M"
bridge = { name = "xenbr0", address = "10.0.0.1/24" }
[[guest]]
name = "g1"
hostname = "tiny-guest"
kernel = "linux"
packages = ["base"]
memory = 64
disk-size = 16
network = { bridge = "xenbr0", address = "10.0.0.2/24", mac = "00:16:3e:00:00:02" }
[boot]
memory = 512
"#;

/// Package trees: what each package "installed".
fn trees(root: &Path) -> BTreeMap<&'static str, std::path::PathBuf> {
    let mut t = BTreeMap::new();
    let base = mk(
        root,
        "base",
        &[
            ("usr/bin/sh", b"#!fake shell\n", 0o755),
            ("etc/passwd", b"root:x:0:0::/root:/bin/sh\n", 0o644),
        ],
    );
    std::os::unix::fs::symlink("usr/bin", base.join("bin")).unwrap();
    t.insert("base", base);
    t.insert(
        "tools",
        mk(
            root,
            "tools",
            &[
                ("usr/sbin/xl", b"fake xl\n", 0o755),
                ("usr/bin/su", b"fake su\n", 0o755),
                ("usr/include/tools.h", b"int x;\n", 0o644),
                ("usr/lib/libtools.a", b"!<arch>\n", 0o644),
                ("usr/lib/libtools.so.1", b"fake lib\n", 0o755),
            ],
        ),
    );
    t.insert(
        "xen",
        mk(
            root,
            "xen",
            &[
                ("boot/xen", b"fake xen\n", 0o644),
                ("boot/xen.gz", b"gz\n", 0o644),
            ],
        ),
    );
    t.insert(
        "linux",
        mk(
            root,
            "linux",
            &[
                ("boot/vmlinuz-1.0", b"fake kernel\n", 0o644),
                ("boot/config-1.0", b"x\n", 0o644),
            ],
        ),
    );
    t
}

fn setup(dir: &Path) -> (Book, Profile, LocalStore, BTreeMap<String, String>) {
    setup_with(dir, PROFILE)
}

/// A guest template for the tests: a user, a rendered file, a service, a first-boot step.
const TEMPLATE: &str = r#"
[template]
packages = ["base"]
[settings.greeting]
type = "string"
default = "hello"
[[group]]
name = "app"
gid = 200
[[user]]
name = "app"
uid = 200
group = "app"
[[file]]
path = "/etc/app.conf"
owner = "app"
mode = "0640"
content = "greeting = {{ settings.greeting }} from {{ guest.name }}\n"
[[service]]
name = "app"
command = "sleep 1000"
user = "app"
[[first-boot]]
name = "key"
run = "echo secret > /etc/app.key"
secrets = ["/etc/app.key"]
"#;

fn setup_with(dir: &Path, profile_text: &str) -> (Book, Profile, LocalStore, BTreeMap<String, String>) {
    let files = vec![
        BookFile {
            path: "guests/app.toml".into(),
            text: TEMPLATE.into(),
        },
        recipe("base", &[], ""),
        recipe("tools", &["base"], "[[file]]\npath = \"usr/bin/su\"\nmode = \"4755\"\n[[file]]\npath = \"usr/sbin/xl\"\ngid = 5\nmode = \"0750\"\n"),
        recipe("xen", &[], ""),
        recipe("linux", &[], ""),
    ];
    let book = Book::from_files(dir, files, &|_| Err(std::io::ErrorKind::NotFound.into())).unwrap();
    let (p, d) = xlfs_book::profile::parse_profile(&dir.join("profiles/tiny.toml"), "tiny", profile_text);
    assert!(d.is_empty(), "{d:?}");
    let mut profile = p.unwrap();
    let d = profile.resolve_templates(&book);
    assert!(d.is_empty(), "{d:?}");
    assert!(profile.check(&book).is_empty());
    let trees = trees(&dir.join("trees"));
    let (store, keys) = common::store_plan(dir, &book, &profile, &trees, 1_700_000_000);
    (book, profile, store, keys)
}

#[test]
fn a_profile_assembles_into_images_that_read_back_right() {
    let dir = tempfile::tempdir().unwrap();
    let (book, profile, store, keys) = setup(dir.path());
    let a = Artifacts {
        book: &book,
        keys,
        store: &store,
    };
    let out = dir.path().join("images/tiny");
    let images = assemble(&a, &profile, &out, 1_700_000_000).unwrap();
    let names: Vec<_> = std::fs::read_dir(dir.path().join("images"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        names,
        vec![std::ffi::OsString::from("tiny")],
        "no temporary directory left"
    );
    assert_eq!(
        std::fs::read(&images.xen).unwrap(),
        b"fake xen\n",
        "the uncompressed xen, not xen.gz"
    );
    assert_eq!(images.kernel_version, "1.0");
    // The audit of dom0's files is part of the images' description: the recipe's setuid su
    // is counted, and it reads back from images.json.
    let audit = images.dom0_audit.as_ref().expect("dom0 is audited");
    assert!(audit.setuid.contains(&"usr/bin/su".to_string()), "{audit:?}");
    assert!(audit.bytes > 0);
    let again = xlfs_assemble::Images::load(&out).unwrap();
    assert_eq!(again.dom0_audit.as_ref(), Some(audit));

    // The dom0 initramfs.
    let cpio = xlfs_image::read_cpio(&images.initramfs).unwrap();
    let get = |p: &str| {
        cpio.iter()
            .find(|e| e.path == p)
            .unwrap_or_else(|| panic!("{p} missing"))
    };
    let su = get("usr/bin/su");
    assert_eq!(
        (su.mode & 0o7777, su.uid, su.gid),
        (0o4755, 0, 0),
        "setuid from the recipe, owned by root"
    );
    let xl = get("usr/sbin/xl");
    assert_eq!((xl.mode & 0o7777, xl.gid), (0o750, 5));
    assert_eq!(
        get("usr/bin/sh").data,
        b"#!fake shell\n",
        "runtime closure: tools needs base"
    );
    assert_eq!(get("bin").link_target().as_deref(), Some("usr/bin"));
    assert!(
        cpio.iter()
            .all(|e| e.path != "usr/include/tools.h" && e.path != "usr/lib/libtools.a"),
        "no dev files"
    );
    assert!(cpio.iter().any(|e| e.path == "usr/lib/libtools.so.1"));
    let rcs = get("etc/init.d/rcS");
    assert_eq!(rcs.mode & 0o7777, 0o755);
    assert!(String::from_utf8_lossy(&rcs.data).contains("xenstored"));
    assert_eq!(get("etc/hostname").data, b"tiny-host\n");
    assert_eq!(
        get("var/lib/xlfs/kernels/vmlinuz-1.0").data,
        b"fake kernel\n",
        "the guest kernel is in dom0"
    );
    let cfg = String::from_utf8_lossy(&get("etc/xen/g1.cfg").data).to_string();
    assert!(
        cfg.contains("kernel = \"/var/lib/xlfs/kernels/vmlinuz-1.0\""),
        "{cfg}"
    );
    let console = get("dev/console");
    assert_eq!(
        (
            console.mode & libc_s_ifmt(),
            console.rdev_major,
            console.rdev_minor
        ),
        (0o020000, 5, 1)
    );
    assert_eq!(get("init").link_target().as_deref(), Some("usr/sbin/init"));
    assert!(
        cpio.iter().all(|e| e.uid == 0 || e.path == "usr/sbin/xl"),
        "everything else belongs to root"
    );

    // The dom0 ext4 image holds the same tree.
    let ext = xlfs_image::read_ext4(&images.host_ext4).unwrap();
    let e = ext.iter().find(|e| e.path == "usr/bin/su").unwrap();
    assert_eq!((e.mode & 0o7777, e.uid, e.gid), (0o4755, 0, 0));
    assert_eq!(
        xlfs_image::ext4_cat(&images.host_ext4, "etc/hostname").unwrap(),
        b"tiny-host\n"
    );

    // The guest's disk: its own packages and configuration.
    let g = &images.guests[0];
    assert_eq!(
        xlfs_image::ext4_cat(&g.disk, "etc/hostname").unwrap(),
        b"tiny-guest\n"
    );
    let rcs = xlfs_image::ext4_cat(&g.disk, "etc/init.d/rcS").unwrap();
    assert!(String::from_utf8_lossy(&rcs).contains("ip addr add 10.0.0.2/24 dev eth0"));
    let gext = xlfs_image::read_ext4(&g.disk).unwrap();
    assert!(
        gext.iter().all(|e| e.path != "usr/sbin/xl"),
        "dom0's tools are not in the guest"
    );
    assert!(std::fs::read_to_string(&g.xl_cfg)
        .unwrap()
        .contains("name = \"g1\""));

    // images.json round-trips, and a second assembly is byte-identical.
    let loaded = Images::load(&out).unwrap();
    assert_eq!(loaded.files, images.files);
    let again = assemble(&a, &profile, &out, 1_700_000_000).unwrap();
    assert_eq!(again.files, images.files, "images are reproducible");

    // A moved images directory (another home, a copy for another user) boots its own files.
    let moved = dir.path().join("elsewhere");
    std::fs::rename(&out, &moved).unwrap();
    let loaded = Images::load(&moved).unwrap();
    assert_eq!(loaded.dir, moved);
    assert_eq!(loaded.xen, moved.join("xen"));
    assert_eq!(loaded.guests[0].disk, moved.join("guest-g1.ext4"));
    assert_eq!(loaded.guests[0].xl_cfg, moved.join("g1.cfg"));
    assert!(loaded.guests[0].disk.exists() && loaded.initramfs.exists());
    // dom0's disk of guest images holds the guest's disk, byte for byte.
    let disk = loaded.guest_images.as_ref().unwrap();
    assert_eq!(disk, &moved.join("guest-images.ext4"));
    assert_eq!(
        xlfs_image::ext4_cat(disk, "g1.img").unwrap(),
        std::fs::read(&loaded.guests[0].disk).unwrap()
    );
}

/// Eleven template guests: one disk of images for dom0 whatever their number, each guest with
/// its own rendered files, accounts and xl.cfg; no secret in any image.
#[test]
fn eleven_template_guests_share_one_disk_of_images() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = PROFILE.split("[[guest]]").next().unwrap().to_string();
    for i in 0..11 {
        text.push_str(&format!(
            "[[guest]]\nname = \"app{i}\"\ntemplate = \"app\"\nkernel = \"linux\"\nmemory = 32\ndisk-size = 8\n\
             network = {{ bridge = \"xenbr0\", address = \"10.0.0.{}/24\" }}\nsettings = {{ greeting = \"hi{i}\" }}\n",
            i + 2
        ));
    }
    text.push_str("[boot]\nmemory = 1024\n");
    let (book, profile, store, keys) = setup_with(dir.path(), &text);
    let a = Artifacts {
        book: &book,
        keys,
        store: &store,
    };
    let out = dir.path().join("images/many");
    let images = assemble(&a, &profile, &out, 1_700_000_000).unwrap();
    assert_eq!(images.guests.len(), 11);
    let disk = images.guest_images.as_ref().unwrap();
    let listing = xlfs_image::read_ext4(disk).unwrap();
    let imgs: Vec<&str> = listing
        .iter()
        .map(|e| e.path.as_str())
        .filter(|p| p.ends_with(".img"))
        .collect();
    assert_eq!(imgs.len(), 11, "{imgs:?}");
    let cpio = xlfs_image::read_cpio(&images.initramfs).unwrap();
    for (i, g) in images.guests.iter().enumerate() {
        let cfg = std::fs::read_to_string(&g.xl_cfg).unwrap();
        assert!(
            cfg.contains(&format!("target=/var/lib/xen/images/app{i}.img")),
            "{cfg}"
        );
        assert!(cpio.iter().any(|e| e.path == format!("etc/xen/app{i}.cfg")));
        let conf = xlfs_image::ext4_cat(&g.disk, "etc/app.conf").unwrap();
        assert_eq!(conf, format!("greeting = hi{i} from app{i}\n").as_bytes());
        let entries = xlfs_image::read_ext4(&g.disk).unwrap();
        let e = entries.iter().find(|e| e.path == "etc/app.conf").unwrap();
        assert_eq!((e.uid, e.gid, e.mode & 0o7777), (200, 200, 0o640));
        assert!(
            entries.iter().all(|e| e.path != "etc/app.key"),
            "no secret in the image"
        );
        let passwd = String::from_utf8(xlfs_image::ext4_cat(&g.disk, "etc/passwd").unwrap()).unwrap();
        assert!(passwd.contains("app:x:200:200:"), "{passwd}");
        let svc = String::from_utf8(xlfs_image::ext4_cat(&g.disk, "etc/xlfs/services/app").unwrap()).unwrap();
        assert!(svc.contains("setuidgid app"));
    }
}

fn libc_s_ifmt() -> u32 {
    0o170000
}

#[test]
fn a_package_that_is_not_built_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let (book, profile, store, mut keys) = setup(dir.path());
    keys.insert("tools".into(), "0".repeat(64));
    let a = Artifacts {
        book: &book,
        keys,
        store: &store,
    };
    let err = assemble(&a, &profile, &dir.path().join("out"), 1_700_000_000).unwrap_err();
    assert!(
        format!("{err:#}").contains("package `tools` is not built"),
        "{err:#}"
    );
    assert!(!dir.path().join("out").exists(), "no images that look complete");
}

/// Two `image` runs at once on one profile: each writes its own fresh directory, both swap in a
/// complete set, and what is left is one complete set and no temporary directory.
#[test]
fn two_concurrent_assemblies_do_not_collide() {
    let dir = tempfile::tempdir().unwrap();
    let (book, profile, store, keys) = setup(dir.path());
    let a = Artifacts {
        book: &book,
        keys,
        store: &store,
    };
    let out = dir.path().join("images/tiny");
    let first = assemble(&a, &profile, &out, 1_700_000_000).unwrap();
    let results: Vec<_> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..2)
            .map(|_| s.spawn(|| assemble(&a, &profile, &out, 1_700_000_000).map(|i| i.files)))
            .collect();
        // Meanwhile the published set is always complete.
        for _ in 0..50 {
            if let Ok(i) = Images::load(&out) {
                assert_eq!(i.files, first.files);
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for r in results {
        assert_eq!(r.unwrap(), first.files);
    }
    let loaded = Images::load(&out).unwrap();
    assert_eq!(loaded.files, first.files);
    for (file, (size, sha)) in &loaded.files {
        let (got, n) = xlfs_util::sha256_file(&out.join(file)).unwrap();
        assert_eq!((&got, n), (sha, *size), "{file}");
    }
    let names: Vec<String> = std::fs::read_dir(dir.path().join("images"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["tiny".to_string()], "no temporary directories left");
}
