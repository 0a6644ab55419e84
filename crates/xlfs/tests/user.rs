//! `xlfs build` as an ordinary user: a dedicated test user with its own home and a subordinate
//! id range builds real C packages; what its builds made under subordinate ids (which the user
//! cannot remove by itself) is removed through the build's user namespace, on success and by
//! `xlfs gc`. Runs as root to create the user, then drops to it for every xlfs command.

mod common;
use common::*;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const USER: &str = "xlfs-user-test";
/// The test user's subordinate range: away from adduser's (100000+), xlfs's root default and
/// the sandbox suite's test user (1600000000+65536).
const SUB: u32 = 1_600_100_000;

/// The user (created once, idempotently) with its subordinate id range.
fn test_user() -> (u32, u32) {
    xlfs_util::testing::user_with_subids(USER, SUB)
}

struct User {
    uid: u32,
    gid: u32,
    /// The user's own `$HOME` (xlfs's home and download cache are its defaults below it).
    home: PathBuf,
}

impl User {
    fn new(w: &World) -> User {
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test runs as root and drops to a test user"
        );
        let (uid, gid) = test_user();
        // The world (book, mirror) is readable; the user's home is its own.
        std::fs::set_permissions(w.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let home = w.path().join("user");
        std::fs::create_dir(&home).unwrap();
        std::os::unix::fs::chown(&home, Some(uid), Some(gid)).unwrap();
        User { uid, gid, home }
    }

    fn run(&self, w: &World, args: &[&str]) -> Output {
        Command::new("setpriv")
            .arg(format!("--reuid={}", self.uid))
            .arg(format!("--regid={}", self.gid))
            .arg("--clear-groups")
            .arg(env!("CARGO_BIN_EXE_xlfs"))
            .arg("--book")
            .arg(w.book())
            .arg("--mirror-dir")
            .arg(w.mirror())
            .arg("--debian-mirror")
            .arg("http://127.0.0.1:9/debian")
            // The world's toolchain root, made by root: the user only reads it.
            .arg("--toolchains")
            .arg(common::toolchains())
            .args(args)
            .env_clear()
            .env("HOME", &self.home)
            .env("PATH", "/usr/bin:/bin")
            .current_dir(&self.home)
            .output()
            .unwrap()
    }
    fn ok(&self, w: &World, args: &[&str]) -> String {
        let out = self.run(w, args);
        let t = text(&out);
        assert!(out.status.success(), "xlfs {args:?} as {USER} failed:\n{t}");
        t
    }
    fn fails(&self, w: &World, args: &[&str]) -> String {
        let out = self.run(w, args);
        let t = text(&out);
        assert!(
            !out.status.success(),
            "xlfs {args:?} as {USER} should have failed:\n{t}"
        );
        t
    }
    /// The build trees in the user's xlfs home.
    fn build_trees(&self) -> Vec<PathBuf> {
        let builds = self.home.join(".local/share/xlfs/builds");
        match std::fs::read_dir(&builds) {
            Ok(d) => d.map(|e| e.unwrap().path()).collect(),
            Err(_) => Vec::new(),
        }
    }
}

/// A recipe whose install step also leaves, in its build tree, a directory only sub-uid 1000
/// can enter, and installs a file owned by 1000:1000; then runs `last`.
fn owned_recipe(w: &World, last: &str) {
    let tb = tarball("owned-1.0", &[("f", "owned\n", 0o644)]);
    let sha = w.add_tarball("owned-1.0.tar.gz", &tb);
    w.write_recipe(
        "owned",
        &format!(
            "[package]\nname = \"owned\"\nversion = \"1.0\"\nlicense = \"MIT\"\n\n\
             [[source]]\nfile = \"owned-1.0.tar.gz\"\nsha256 = \"{sha}\"\n\n\
             [build.steps]\ninstall = '''\n\
             mkdir -p /build/private/deeper && touch /build/private/deeper/f\n\
             chown -R 1000:1000 /build/private && chmod 0700 /build/private /build/private/deeper\n\
             install -D -m 0644 f \"$DESTDIR/usr/share/owned/f\"\n\
             chown 1000:1000 \"$DESTDIR/usr/share/owned/f\"\n\
             {last}\n'''\n"
        ),
    );
}

fn line<'a>(files: &'a str, path: &str) -> &'a str {
    files
        .lines()
        .find(|l| {
            let p = format!(" /{path}");
            l.ends_with(&p) || l.contains(&format!("{p}  [needs ")) || l.contains(&format!("{p} -> "))
        })
        .unwrap_or_else(|| panic!("{path} not in:\n{files}"))
}

#[test]
fn an_ordinary_user_builds_collects_garbage_and_rebuilds() {
    let w = World::new();
    w.greet_and_hello(&["libgreet"]);
    let user = User::new(&w);
    // The doctor knows an ordinary user with subordinate ids is ready (not "run as root").
    let doctor = user.run(&w, &["doctor"]);
    let text = text(&doctor);
    assert!(
        text.contains("ok      ordinary user with subordinate ids"),
        "{text}"
    );
    assert!(!text.contains("MISSING subordinate"), "{text}");

    // Real C packages, one linking the other from its build root, as the user.
    let out = user.ok(&w, &["build", "hello", "--check"]);
    assert!(out.contains("built 2, cached 0, failed 0"), "{out}");
    let log = user.ok(&w, &["log", "hello"]);
    assert!(log.contains("hello from libgreet"), "{log}");
    let files = user.ok(&w, &["files", "hello"]);
    assert!(
        line(&files, "usr/bin/hello").starts_with("- 0755     0:0     "),
        "{files}"
    );
    assert!(
        line(&files, "usr/bin").starts_with("d 0755     0:0     "),
        "{files}"
    );
    let store = user.home.join(".local/share/xlfs");
    assert_eq!(std::fs::metadata(&store).unwrap().uid(), user.uid);

    // A failed build keeps its tree, with files only sub-uids own: the user cannot remove them.
    owned_recipe(&w, "false");
    let out = user.fails(&w, &["build", "owned"]);
    assert!(out.contains("FAILED owned"), "{out}");
    let trees = user.build_trees();
    assert_eq!(trees.len(), 1, "{trees:?}");
    let private = trees[0].join("private");
    let meta = std::fs::metadata(&private).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (SUB + 999, SUB + 999));
    let rm = Command::new("setpriv")
        .arg(format!("--reuid={}", user.uid))
        .arg(format!("--regid={}", user.gid))
        .arg("--clear-groups")
        .args(["rm", "-rf"])
        .arg(&private)
        .output()
        .unwrap();
    assert!(!rm.status.success(), "the user alone cannot remove it");
    assert!(private.join("deeper/f").exists());

    // Its build step had ended, so while its key is the book's, gc keeps it (the next build goes
    // on in it); once the recipe changed, gc removes it (through the build's user namespace).
    let out = user.ok(&w, &["gc"]);
    assert!(out.contains("keep build tree"), "{out}");
    assert_eq!(user.build_trees(), trees);
    owned_recipe(&w, "true");
    let out = user.ok(&w, &["gc"]);
    assert!(out.contains("remove build tree"), "{out}");
    assert_eq!(user.build_trees(), Vec::<PathBuf>::new());

    // The same tree made by a build that succeeds is removed at once; chown is recorded.
    user.ok(&w, &["build", "owned"]);
    assert_eq!(user.build_trees(), Vec::<PathBuf>::new());
    let files = user.ok(&w, &["files", "owned"]);
    assert!(
        line(&files, "usr/share/owned/f").starts_with("- 0644  1000:1000  "),
        "{files}"
    );

    // A changed recipe rebuilds; gc drops the old artifacts; everything is still current.
    let path = w.book().join("libgreet.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replace("install = \"install\"", "install = \"install V=1\""),
    )
    .unwrap();
    let out = user.ok(&w, &["build", "hello"]);
    assert!(out.contains("built 2, cached 0"), "{out}");
    let out = user.ok(&w, &["gc"]);
    assert!(out.contains("removed 2 artifact(s)"), "{out}");
    let out = user.ok(&w, &["build", "hello", "owned"]);
    assert!(out.contains("nothing to do"), "{out}");
    assert_eq!(user.build_trees(), Vec::<PathBuf>::new());
    assert_no_files_of(Path::new(&user.home), user.uid, user.gid);
}

/// Everything in `dir` belongs to the user or to its subordinate ids.
fn assert_no_files_of(dir: &Path, uid: u32, gid: u32) {
    let sub = SUB..SUB + 65536;
    for e in walk(dir) {
        let m = std::fs::symlink_metadata(&e).unwrap();
        assert!(
            (m.uid() == uid || sub.contains(&m.uid())) && (m.gid() == gid || sub.contains(&m.gid())),
            "{} is owned by {}:{}",
            e.display(),
            m.uid(),
            m.gid()
        );
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    if std::fs::symlink_metadata(dir).unwrap().is_dir() {
        for e in std::fs::read_dir(dir).unwrap() {
            out.extend(walk(&e.unwrap().path()));
        }
    }
    out
}

/// A recipe installing fake files with its install step (`install`, then `extra`).
fn fake_recipe(w: &World, name: &str, run: &[&str], install: &str, files: &str) {
    let tb = tarball(&format!("{name}-1.0"), &[("x", "x\n", 0o644)]);
    let sha = w.add_tarball(&format!("{name}-1.0.tar.gz"), &tb);
    let run: Vec<String> = run.iter().map(|d| format!("\"{d}\"")).collect();
    w.write_recipe(
        name,
        &format!(
            "[package]\nname = \"{name}\"\nversion = \"1.0\"\nlicense = \"MIT\"\n\n\
             [[source]]\nfile = \"{name}-1.0.tar.gz\"\nsha256 = \"{sha}\"\n\n\
             [depends]\nrun = [{}]\n\n[build.steps]\ninstall = '''\ncd \"$DESTDIR\"\n{install}\n'''\n{files}",
            run.join(", ")
        ),
    );
}

const TINY: &str = r#"
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

#[test]
fn an_ordinary_user_assembles_images_with_the_owners_its_builds_set() {
    let w = World::new();
    fake_recipe(
        &w,
        "base",
        &[],
        "mkdir -p usr/bin etc\nprintf '#!fake shell\\n' > usr/bin/sh\nchmod 0755 usr/bin/sh\n\
         echo 'root:x:0:0::/root:/bin/sh' > etc/passwd\nln -s usr/bin bin",
        "",
    );
    fake_recipe(
        &w,
        "tools",
        &["base"],
        "mkdir -p usr/sbin usr/bin var/lib/tools\necho xl > usr/sbin/xl\nchown 0:5 usr/sbin/xl\nchmod 0750 usr/sbin/xl\n\
         echo su > usr/bin/su\nchmod 4755 usr/bin/su\necho state > var/lib/tools/state\n\
         chown -R 1000:1000 var/lib/tools\n\
         mkdir -p var/lib/closed\necho secret > var/lib/closed/s\nchown -R 1000:1000 var/lib/closed\n\
         chmod 0600 var/lib/closed/s\nchmod 0700 var/lib/closed",
        "\n[[file]]\npath = \"usr/bin/su\"\nmode = \"4755\"\n",
    );
    fake_recipe(
        &w,
        "xen",
        &[],
        "mkdir boot\necho 'fake xen' > boot/xen\necho gz > boot/xen.gz",
        "",
    );
    fake_recipe(
        &w,
        "linux",
        &[],
        "mkdir boot\necho 'fake kernel' > boot/vmlinuz-1.0\necho x > boot/config-1.0",
        "",
    );
    std::fs::create_dir_all(w.book().join("profiles")).unwrap();
    std::fs::write(w.book().join("profiles/tiny.toml"), TINY).unwrap();
    let user = User::new(&w);

    let out = user.ok(&w, &["build", "--profile", "tiny"]);
    assert!(out.contains("built 4, cached 0, failed 0"), "{out}");
    let out = user.ok(&w, &["image", "tiny"]);
    assert!(out.contains("images of `tiny`"), "{out}");
    let images = user.home.join(".local/share/xlfs/images/tiny");

    // Owners and modes as the builds set them (chown, chmod, [[file]]), in both dom0 images.
    let want = [
        ("usr/bin/su", 0o4755, 0, 0),
        ("usr/sbin/xl", 0o750, 0, 5),
        ("var/lib/tools", 0o755, 1000, 1000),
        ("var/lib/tools/state", 0o644, 1000, 1000),
        ("usr/bin/sh", 0o755, 0, 0),
        // Closed to everyone but sub-uid 1000 outside: packed inside the build's namespace.
        ("var/lib/closed", 0o700, 1000, 1000),
        ("var/lib/closed/s", 0o600, 1000, 1000),
    ];
    let cpio = xlfs_image::read_cpio(&images.join("dom0.cpio.gz")).unwrap();
    for (path, mode, uid, gid) in want {
        let e = cpio
            .iter()
            .find(|e| e.path == path)
            .unwrap_or_else(|| panic!("{path} not in the initramfs"));
        assert_eq!(
            (e.mode & 0o7777, e.uid, e.gid),
            (mode, uid, gid),
            "initramfs {path}"
        );
    }
    let secret = cpio.iter().find(|e| e.path == "var/lib/closed/s").unwrap();
    assert_eq!(secret.data, b"secret\n");
    let ext4 = xlfs_image::read_ext4(&images.join("dom0.ext4")).unwrap();
    for (path, mode, uid, gid) in want {
        let e = ext4
            .iter()
            .find(|e| e.path == path)
            .unwrap_or_else(|| panic!("{path} not in the ext4 image"));
        assert_eq!((e.mode & 0o7777, e.uid, e.gid), (mode, uid, gid), "ext4 {path}");
    }
    assert_eq!(user.build_trees(), Vec::<PathBuf>::new());
    assert_no_files_of(&user.home, user.uid, user.gid);
}
