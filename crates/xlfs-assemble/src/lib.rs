//! Assembling a profile's system from the store: the dom0 root filesystem (as an initramfs and as
//! an ext4 image), each guest's disk, its xl.cfg, the Xen binary and the dom0 kernel.
//!
//! Everything is written to a fresh `.tmp-*` directory next to `OUT` (one per run) and swapped
//! with `OUT` at the end, so a failure never leaves a set of images that looks complete.

pub mod budget;
pub mod closure;
pub mod debug;
pub mod exclude;
pub mod sysv;

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use xlfs_book::profile::Profile;
use xlfs_book::Book;
use xlfs_image::{Ext4Options, RootFs};
use xlfs_store::{ArtifactStore, LocalStore, Manifest};

/// The file name of dom0's disk of guest images.
pub const GUEST_IMAGES_FILE: &str = "guest-images.ext4";

/// What `assemble` produced.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Images {
    pub dir: PathBuf,
    pub profile: String,
    /// The uncompressed multiboot Xen binary (QEMU `-kernel`).
    pub xen: PathBuf,
    pub xen_version: String,
    /// The dom0 kernel.
    pub kernel: PathBuf,
    pub kernel_version: String,
    pub initramfs: PathBuf,
    pub host_ext4: PathBuf,
    pub guests: Vec<GuestImages>,
    /// The disk dom0 gets under QEMU: an ext4 holding each file-backed guest's disk as
    /// `NAME.img`, mounted at `/var/lib/xen/images` (none without such guests).
    #[serde(default)]
    pub guest_images: Option<PathBuf>,
    /// File name → size in bytes and sha256.
    pub files: BTreeMap<String, (u64, String)>,
    /// The audit of dom0's root file system (see `xlfs_image::audit`): unresolved interpreters
    /// and libraries, build-machine paths, setuid files, Python, X11, compilers, size.
    #[serde(default)]
    pub dom0_audit: Option<xlfs_image::audit::Audit>,
    /// A SysV host (`init = "sysv"`): its GPT disk, raw and qcow2 (dom0 runs from it; `initramfs`
    /// and `host_ext4` are then empty).
    #[serde(default)]
    pub disk: Option<PathBuf>,
    #[serde(default)]
    pub disk_qcow2: Option<PathBuf>,
    /// The boot check's disk (`host-check.qcow2`): `disk` with the check credentials, a qcow2
    /// whose backing file is `disk`; what `xlfs boot PROFILE --check` boots.
    #[serde(default)]
    pub check_disk: Option<PathBuf>,
    /// The debug information split off the root file system (`debug.tar.zst`).
    #[serde(default)]
    pub debug: Option<PathBuf>,
    #[serde(default)]
    pub debug_split: Option<debug::DebugSplit>,
    /// The packages of dom0's root file system and why each is there (SysV hosts).
    #[serde(default)]
    pub packages: BTreeMap<String, String>,
    /// The GUID of the root partition (`root=PARTUUID=`).
    #[serde(default)]
    pub root_partuuid: Option<String>,
}

/// What no file of an image may hold: the sandbox's fixed build paths.
pub const BUILD_PATHS: [&str; 3] = ["/build/src/", "/sysroot/", "/destdir/"];

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GuestImages {
    pub name: String,
    pub disk: PathBuf,
    pub xl_cfg: PathBuf,
    /// With `lvm = "VG"`: the script that writes `disk` to the logical volume on the host.
    #[serde(default)]
    pub lvm_script: Option<PathBuf>,
    /// The packages of its root filesystem: the template's (or guest's) and their runtime
    /// closure, in install order.
    #[serde(default)]
    pub packages: Vec<String>,
    /// The audit of its root filesystem, as dom0's (libraries resolve inside, no build paths,
    /// compilers, Python, setuid files, size).
    #[serde(default)]
    pub audit: Option<xlfs_image::audit::Audit>,
}

impl Images {
    pub fn load(dir: &Path) -> Result<Images> {
        let path = dir.join("images.json");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("no images in {} (run `xlfs image PROFILE`)", dir.display()))?;
        let mut images: Images =
            serde_json::from_str(&text).with_context(|| format!("cannot read {}", path.display()))?;
        // Every image lives in the directory itself: read them where the directory is now (it
        // may have been moved or copied since it was written).
        let here = |p: &mut PathBuf| {
            if let Some(name) = p.file_name() {
                *p = dir.join(name);
            }
        };
        images.dir = dir.to_path_buf();
        for p in [
            &mut images.xen,
            &mut images.kernel,
            &mut images.initramfs,
            &mut images.host_ext4,
        ] {
            here(p);
        }
        for p in [
            &mut images.disk,
            &mut images.disk_qcow2,
            &mut images.check_disk,
            &mut images.debug,
        ]
        .into_iter()
        .flatten()
        {
            here(p);
        }
        for g in &mut images.guests {
            here(&mut g.disk);
            here(&mut g.xl_cfg);
            if let Some(p) = &mut g.lvm_script {
                here(p);
            }
        }
        if let Some(p) = &mut images.guest_images {
            here(p);
        }
        Ok(images)
    }
}

/// Paths left out of the images: what only matters for building (headers, static libraries,
/// pkg-config files, libtool archives) and documentation.
pub fn is_dev_file(path: &str) -> bool {
    const DIRS: [&str; 9] = [
        "usr/include",
        "usr/share/man",
        "usr/share/info",
        "usr/share/doc",
        "usr/share/locale",
        "usr/share/i18n",
        "usr/lib/pkgconfig",
        "usr/share/pkgconfig",
        "usr/lib/gconv",
    ];
    DIRS.iter()
        .any(|d| path == *d || path.starts_with(&format!("{d}/")))
        || path.ends_with(".a")
        || path.ends_with(".la")
        || path.ends_with(".o")
}

/// Where each package's artifact is, from the plan.
pub struct Artifacts<'a> {
    pub book: &'a Book,
    pub keys: BTreeMap<String, String>,
    pub store: &'a LocalStore,
}

impl Artifacts<'_> {
    fn key(&self, name: &str) -> Result<&str> {
        self.keys
            .get(name)
            .map(|s| s.as_str())
            .ok_or_else(|| anyhow!("package `{name}` is not in the plan"))
    }
    fn manifest(&self, name: &str) -> Result<Manifest> {
        let key = self.key(name)?;
        if !self.store.contains(key)? {
            bail!(
                "package `{name}` is not built (key {}); run `xlfs build`",
                &key[..12]
            );
        }
        Ok(self.store.manifest(key)?)
    }
    fn tree(&self, name: &str) -> Result<PathBuf> {
        Ok(self.store.tree(self.key(name)?)?)
    }

    /// A root filesystem made of `packages` and their runtime closure, without development files.
    /// BusyBox's applet links give way to another package's own program of the same path
    /// (Apache's `httpd`, BIND's `nslookup`, Postfix's `sendmail`): see [`yield_applets`].
    fn rootfs(&self, packages: &[String]) -> Result<RootFs> {
        let mut fs = RootFs::new();
        let mut manifests = Vec::new();
        for name in self.closure(packages) {
            let mut m = self.manifest(&name)?;
            m.entries.retain(|e| !is_dev_file(&e.path));
            manifests.push((name, m));
        }
        yield_applets(&mut manifests);
        drop_empty_dirs_over_links(&mut manifests);
        for (name, m) in &manifests {
            fs.add_artifact(name, &self.tree(name)?, m)
                .with_context(|| format!("adding package `{name}`"))?;
        }
        Ok(fs)
    }

    /// `packages` and their runtime closure, by name.
    fn closure(&self, packages: &[String]) -> Vec<String> {
        xlfs_plan::runtime_closure(self.book, packages)
            .into_iter()
            .collect()
    }

    /// The one file under `boot/` of a package whose name starts with `prefix`.
    fn boot_file(&self, package: &str, prefix: &str) -> Result<(PathBuf, String)> {
        let m = self.manifest(package)?;
        let found: Vec<&str> = m
            .entries
            .iter()
            .map(|e| e.path.as_str())
            .filter(|p| {
                p.strip_prefix("boot/")
                    .is_some_and(|f| f.starts_with(prefix) && !f.ends_with(".gz") && !f.contains(".config"))
            })
            .collect();
        match found.as_slice() {
            [one] => Ok((
                self.tree(package)?.join(one),
                one.trim_start_matches("boot/").to_string(),
            )),
            [] => bail!("package `{package}` installs no boot/{prefix}* file"),
            many => bail!("package `{package}` installs several boot/{prefix}* files: {many:?}"),
        }
    }
}

/// Whether an entry is a BusyBox applet link (a symbolic link to the `busybox` binary).
fn is_applet_link(e: &xlfs_store::Entry) -> bool {
    e.kind == xlfs_store::Kind::Symlink
        && e.target
            .as_deref()
            .is_some_and(|t| t.rsplit('/').next() == Some("busybox"))
}

/// Drop every BusyBox applet link whose path another package of the same root filesystem
/// installs as something else: the real program wins, as on a distribution where BusyBox only
/// fills the gaps. Any other path two packages install stays a conflict.
pub fn yield_applets(manifests: &mut [(String, Manifest)]) {
    let real: std::collections::BTreeSet<String> = manifests
        .iter()
        .flat_map(|(_, m)| m.entries.iter())
        .filter(|e| !is_applet_link(e) && e.kind != xlfs_store::Kind::Dir)
        .map(|e| e.path.clone())
        .collect();
    for (_, m) in manifests.iter_mut() {
        m.entries
            .retain(|e| !(is_applet_link(e) && real.contains(&e.path)));
    }
}

/// Drop a package's directories that hold nothing but directories where another package of the
/// same root filesystem has a symbolic link (`var/run` -> `/run` of the base system, under which
/// Apache and PHP create empty run directories at install time): the link stays, as dpkg keeps
/// a directory symlink of the system. A directory with files under it stays a conflict.
pub fn drop_empty_dirs_over_links(manifests: &mut [(String, Manifest)]) {
    let links: Vec<(usize, String)> = manifests
        .iter()
        .enumerate()
        .flat_map(|(i, (_, m))| {
            m.entries
                .iter()
                .filter(|e| e.kind == xlfs_store::Kind::Symlink)
                .map(move |e| (i, e.path.clone()))
        })
        .collect();
    for (i, (_, m)) in manifests.iter_mut().enumerate() {
        for (owner, link) in &links {
            if *owner == i {
                continue;
            }
            let under = format!("{link}/");
            let is_dir_here = m
                .entries
                .iter()
                .any(|e| e.path == *link && e.kind == xlfs_store::Kind::Dir);
            let only_dirs_below = m
                .entries
                .iter()
                .filter(|e| e.path.starts_with(&under))
                .all(|e| e.kind == xlfs_store::Kind::Dir);
            if is_dir_here && only_dirs_below {
                m.entries
                    .retain(|e| e.path != *link && !e.path.starts_with(&under));
            }
        }
    }
}

fn add_generated(fs: &mut RootFs, files: &[xlfs_system::GenFile]) -> Result<()> {
    for f in files {
        fs.add_file(&f.path, f.content.clone().into_bytes(), f.mode, f.uid, f.gid)?;
    }
    Ok(())
}

/// The bytes of a regular file of `fs`, if there is one at `path`.
fn file_bytes(fs: &RootFs, path: &str) -> Result<Option<Vec<u8>>> {
    match fs.get(path).map(|n| &n.kind) {
        Some(xlfs_image::NodeKind::File { source }) => Ok(Some(match source {
            xlfs_image::FileSource::Bytes(b) => b.clone(),
            xlfs_image::FileSource::Path(p) => {
                std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?
            }
        })),
        _ => Ok(None),
    }
}

/// Append the template's users and groups to the guest's account files.
fn add_accounts(fs: &mut RootFs, template: &xlfs_book::guest::GuestTemplate) -> Result<()> {
    let a = xlfs_system::accounts(template);
    for (path, extra, mode) in [
        ("etc/passwd", &a.passwd, 0o644),
        ("etc/group", &a.group, 0o644),
        ("etc/shadow", &a.shadow, 0o600),
    ] {
        if extra.is_empty() {
            continue;
        }
        let mut text = String::from_utf8(file_bytes(fs, path)?.unwrap_or_default())
            .with_context(|| format!("/{path} is not text"))?;
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        for line in extra.lines() {
            let name = line.split(':').next().unwrap_or("");
            if text.lines().any(|l| l.split(':').next() == Some(name)) {
                bail!(
                    "/{path} of the base system already has `{name}` (template `{}`)",
                    template.name
                );
            }
        }
        text.push_str(extra);
        fs.add_file(path, text.into_bytes(), mode, 0, 0)?;
    }
    Ok(())
}

/// Files of an overlay directory, owned by root, added over the root filesystem.
fn add_overlay(fs: &mut RootFs, dir: &Path) -> Result<()> {
    if !dir.is_dir() {
        bail!("overlay directory {} does not exist", dir.display());
    }
    for e in walkdir::WalkDir::new(dir).sort_by_file_name().min_depth(1) {
        let e = e?;
        let rel = e.path().strip_prefix(dir)?.to_string_lossy().to_string();
        let meta = e.path().symlink_metadata()?;
        let mode = meta.permissions().mode() & 0o7777;
        if meta.file_type().is_symlink() {
            fs.add_symlink(&rel, &std::fs::read_link(e.path())?.to_string_lossy())?;
        } else if meta.is_dir() {
            fs.add_dir(&rel, mode, 0, 0)?;
        } else {
            fs.add_file(&rel, std::fs::read(e.path())?, mode, 0, 0)?;
        }
    }
    Ok(())
}

/// The guests' disks and xl.cfg files, written to `tmp`.
pub(crate) struct Guests {
    /// Each guest's kernel file name (`vmlinuz-VERSION`), in the profile's order.
    pub guest_kernels: Vec<String>,
    pub guests: Vec<GuestImages>,
    /// Where each guest kernel is in the store, and its file name.
    pub kernel_files: Vec<(PathBuf, String)>,
    /// The file-backed guest disks, as `NAME.img`.
    pub images_fs: RootFs,
    pub images_mib: u64,
}

/// Each guest's root file system (`guest-NAME.ext4`), xl.cfg and LVM script, in `tmp`.
pub(crate) fn build_guests(
    a: &Artifacts,
    profile: &Profile,
    tmp: &Path,
    out: &Path,
    epoch: u64,
) -> Result<Guests> {
    let book = a.book;
    let mut guest_kernels = Vec::new();
    let mut guests = Vec::new();
    let mut kernel_files = Vec::new();
    let mut images_fs = RootFs::new();
    let mut images_mib = 0u64;
    for (i, g) in profile.guests.iter().enumerate() {
        let (src, file) = a.boot_file(&g.kernel, "vmlinuz")?;
        guest_kernels.push(file.clone());
        kernel_files.push((src, file));
        let mut fs = a.rootfs(&g.packages)?;
        let generated = xlfs_system::guest_files(profile, g)
            .map_err(|d| anyhow!("{}", xlfs_book::BookErrors(d)))
            .with_context(|| format!("rendering the files of guest `{}`", g.name))?;
        add_generated(&mut fs, &generated)?;
        let template = profile.template_of(g);
        if let Some(t) = template {
            add_accounts(&mut fs, t)?;
        }
        if let Some(o) = &g.overlay {
            add_overlay(&mut fs, &book.root.join(profile.dir()).join(o))?;
        }
        add_console_nodes(&mut fs)?;
        let audit = xlfs_image::audit::audit(&fs, &["/build/src/", "/sysroot/", "/destdir/"]);
        // Secrets are made on the guest's first boot: none may come from a package or overlay.
        for secret in template.map(|t| t.secret_paths()).unwrap_or_default() {
            if fs.get(&secret).is_some() {
                bail!(
                    "guest `{}`: /{secret} is a secret made on first boot, but the image has one (from {}); remove it there",
                    g.name,
                    fs.owner(&secret).unwrap_or("an overlay")
                );
            }
        }
        let disk = tmp.join(format!("guest-{}.ext4", g.name));
        xlfs_image::write_ext4(
            &fs,
            &disk,
            &Ext4Options {
                size_mib: g.disk_mib as u64,
                label: g.name.clone(),
                uuid: xlfs_image::derive_uuid(&format!("guest {} {}", profile.name, g.name)),
                hash_seed: xlfs_image::derive_uuid(&format!("guest-hash {} {}", profile.name, g.name)),
                mtime: epoch,
            },
        )
        .with_context(|| format!("writing the disk of guest `{}`", g.name))?;
        let cfg = tmp.join(format!("{}.cfg", g.name));
        std::fs::write(&cfg, xlfs_system::xl_cfg(profile, g, &guest_kernels[i]))?;
        let mut lvm_script = None;
        if let Some(script) = xlfs_system::lvm_script(g) {
            let p = tmp.join(&script.path);
            std::fs::write(&p, &script.content)?;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(script.mode))?;
            lvm_script = Some(out.join(&script.path));
        } else {
            images_fs.add_file_from(&xlfs_system::guest_image_name(g), &disk, 0o600, 0, 0)?;
            images_mib += g.disk_mib as u64;
        }
        guests.push(GuestImages {
            name: g.name.clone(),
            disk: out.join(format!("guest-{}.ext4", g.name)),
            xl_cfg: out.join(format!("{}.cfg", g.name)),
            lvm_script,
            packages: a.closure(&g.packages),
            audit: Some(audit),
        });
    }
    Ok(Guests {
        guest_kernels,
        guests,
        kernel_files,
        images_fs,
        images_mib,
    })
}

fn add_console_nodes(fs: &mut RootFs) -> Result<()> {
    fs.add_dir("dev", 0o755, 0, 0)?;
    fs.add_device("dev/console", 'c', 5, 1, 0o600)?;
    fs.add_device("dev/null", 'c', 1, 3, 0o666)?;
    Ok(())
}

/// Assemble `profile` into `out`. Everything is written to a fresh directory of this run's own
/// next to `out` (so concurrent runs never share one), which then replaces `out` in one step
/// (`renameat2(RENAME_EXCHANGE)`, then the old images are deleted): `out` is always either the
/// old or the new complete set.
pub fn assemble(a: &Artifacts, profile: &Profile, out: &Path, epoch: u64) -> Result<Images> {
    assemble_with(a, profile, out, epoch, Disk::None)
}

/// The unpacked GRUB artifacts a disk is made with.
#[derive(Clone, Copy, Debug)]
pub struct GrubTrees<'a> {
    /// The `grub` package (BIOS): always.
    pub bios: &'a Path,
    /// The `grub-efi` package (UEFI), with `host.uefi = true`: the disk gets an EFI system
    /// partition.
    pub efi: Option<&'a Path>,
}

/// What a profile's GRUB disk is made with (`host.disk-image`).
pub enum Disk<'a> {
    /// No disk.
    None,
    /// A SysV host's disk ([`sysv::assemble_sysv`]).
    Sysv(&'a sysv::SysvInputs<'a>),
    /// A BusyBox profile's disk ([`busybox_disk`]).
    Grub(GrubTrees<'a>),
}

/// [`assemble`], for any profile: a SysV host (`init = "sysv"`) needs [`Disk::Sysv`]; a BusyBox
/// profile with `disk-image = true` gets its disk with [`Disk::Grub`].
pub fn assemble_with(a: &Artifacts, profile: &Profile, out: &Path, epoch: u64, disk: Disk) -> Result<Images> {
    let parent = out.parent().context("the images directory has no parent")?;
    std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    let stem = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let guard = xlfs_util::TempDirGuard::new_in(parent, &stem)
        .with_context(|| format!("cannot create a directory in {}", parent.display()))?;
    let tmp = guard.path().to_path_buf();
    let book = a.book;
    if profile.host.init == xlfs_book::profile::Init::Sysv {
        let Disk::Sysv(inputs) = disk else {
            bail!("a SysV host's disk needs the grub artifact (xlfs_assemble::Disk::Sysv)");
        };
        let images = sysv::assemble_sysv(a, profile, inputs, &tmp, out, epoch)?;
        return finish(images, &tmp, out, guard);
    }

    // Xen and the dom0 kernel.
    let (xen_src, _) = a.boot_file(&profile.host.xen, "xen")?;
    let xen = tmp.join("xen");
    std::fs::copy(&xen_src, &xen).with_context(|| format!("copying {}", xen_src.display()))?;
    let (kernel_src, kernel_file) = a.boot_file(&profile.host.kernel, "vmlinuz")?;
    let kernel = tmp.join("vmlinuz");
    std::fs::copy(&kernel_src, &kernel)?;

    // Guest disks and the guest kernels dom0 needs.
    let Guests {
        guest_kernels,
        guests,
        kernel_files,
        images_fs,
        images_mib,
    } = build_guests(a, profile, &tmp, out, epoch)?;
    // dom0's disk of file-backed guest disks (under QEMU; a real host keeps them on its root).
    let guest_images = if !images_fs.is_empty() {
        let path = tmp.join(GUEST_IMAGES_FILE);
        xlfs_image::write_ext4(
            &images_fs,
            &path,
            &Ext4Options {
                // The images, plus room for the filesystem's own metadata.
                size_mib: images_mib + images_mib / 16 + 16,
                label: "xlfs-images".into(),
                uuid: xlfs_image::derive_uuid(&format!("guest-images {}", profile.name)),
                hash_seed: xlfs_image::derive_uuid(&format!("guest-images-hash {}", profile.name)),
                mtime: epoch,
            },
        )
        .context("writing the disk of guest images")?;
        Some(out.join(GUEST_IMAGES_FILE))
    } else {
        None
    };

    // dom0.
    let mut fs = a.rootfs(&profile.host.packages)?;
    add_generated(&mut fs, &xlfs_system::host_files(profile, &guest_kernels))?;
    for (src, file) in &kernel_files {
        fs.add_file(
            &xlfs_system::guest_kernel_path(file),
            std::fs::read(src)?,
            0o644,
            0,
            0,
        )?;
    }
    if let Some(o) = &profile.host.overlay {
        add_overlay(&mut fs, &book.root.join(profile.dir()).join(o))?;
    }
    add_console_nodes(&mut fs)?;
    if fs.get("init").is_none() {
        fs.add_symlink("init", "usr/sbin/init")?;
    }
    // What no file of an image may hold: the sandbox's fixed build paths.
    let dom0_audit = xlfs_image::audit::audit(&fs, &BUILD_PATHS);
    let initramfs = tmp.join("dom0.cpio.gz");
    xlfs_image::write_cpio(&fs, &initramfs, epoch, true).context("writing the dom0 initramfs")?;
    let host_ext4 = tmp.join("dom0.ext4");
    xlfs_image::write_ext4(
        &fs,
        &host_ext4,
        &Ext4Options {
            size_mib: 0,
            label: profile.host.hostname.clone(),
            uuid: xlfs_image::derive_uuid(&format!("host {}", profile.name)),
            hash_seed: xlfs_image::derive_uuid(&format!("host-hash {}", profile.name)),
            mtime: epoch,
        },
    )
    .context("writing the dom0 ext4 image")?;
    let (mut disk_raw, mut disk_qcow2) = (None, None);
    if let (Disk::Grub(grub), true) = (&disk, profile.host.disk_image) {
        busybox_disk(profile, &tmp, *grub, epoch)?;
        disk_raw = Some(out.join(sysv::DISK_RAW));
        disk_qcow2 = Some(out.join(sysv::DISK_QCOW2));
    }

    let mut files = BTreeMap::new();
    for e in std::fs::read_dir(&tmp)? {
        let e = e?;
        let (sha, size) = xlfs_util::sha256_file(&e.path())
            .with_context(|| format!("cannot read {}", e.path().display()))?;
        files.insert(e.file_name().to_string_lossy().to_string(), (size, sha));
    }
    let version = |pkg: &str| book.get(pkg).map(|r| r.version.clone()).unwrap_or_default();
    let images = Images {
        dir: out.to_path_buf(),
        profile: profile.name.clone(),
        xen: out.join("xen"),
        xen_version: version(&profile.host.xen),
        kernel: out.join("vmlinuz"),
        kernel_version: kernel_file.trim_start_matches("vmlinuz-").to_string(),
        initramfs: out.join("dom0.cpio.gz"),
        host_ext4: out.join("dom0.ext4"),
        guests,
        guest_images,
        files,
        dom0_audit: Some(dom0_audit),
        disk: disk_raw,
        disk_qcow2,
        check_disk: None,
        debug: None,
        debug_split: None,
        packages: BTreeMap::new(),
        root_partuuid: None,
    };
    finish(images, &tmp, out, guard)
}

/// `host-disk.img` and `host-disk.qcow2` in the images directory `dir`: a GPT disk whose ext4
/// partition 2 holds `/boot` (Xen, the dom0 kernel and initramfs, GRUB's modules, grub.cfg and
/// grubenv), GRUB installed for BIOS by xlfs itself, and for UEFI too when `grub.efi` is given.
/// dom0 runs from its initramfs, as when QEMU loads the files directly.
pub fn busybox_disk(
    profile: &Profile,
    dir: &Path,
    grub: GrubTrees,
    epoch: u64,
) -> Result<xlfs_image::DiskLayout> {
    use xlfs_image::RootFs;
    let mut fs = RootFs::new();
    fs.add_file_from("boot/xen", &dir.join("xen"), 0o644, 0, 0)?;
    fs.add_file_from("boot/vmlinuz", &dir.join("vmlinuz"), 0o644, 0, 0)?;
    fs.add_file_from("boot/initramfs.cpio.gz", &dir.join("dom0.cpio.gz"), 0o644, 0, 0)?;
    let files = xlfs_system::grub::BootFiles {
        xen: "/boot/xen".into(),
        kernel: "/boot/vmlinuz".into(),
        initrd: Some("/boot/initramfs.cpio.gz".into()),
        root: None,
    };
    let cfg = xlfs_system::grub::grub_cfg(profile, &files);
    fs.add_file("boot/grub/grub.cfg", cfg.into_bytes(), 0o644, 0, 0)?;
    let env = xlfs_system::grub::grubenv(&[("saved_entry", "xen")]);
    fs.add_file("boot/grub/grubenv", env, 0o644, 0, 0)?;
    let opts = xlfs_image::Ext4Options {
        label: "xlfs-boot".into(),
        uuid: xlfs_image::derive_uuid(&format!("{} disk uuid", profile.name)),
        hash_seed: xlfs_image::derive_uuid(&format!("{} disk hash_seed", profile.name)),
        mtime: epoch,
        ..Default::default()
    };
    let raw = dir.join(sysv::DISK_RAW);
    let qcow2 = dir.join(sysv::DISK_QCOW2);
    let seed = format!("xlfs {} host disk", profile.name);
    xlfs_image::write_grub_disk(fs, grub.bios, grub.efi, &opts, &seed, &raw, Some(&qcow2))
        .with_context(|| format!("cannot write the disk image {}", raw.display()))
}

/// Write images.json and move the finished directory `tmp` to `out`.
fn finish(images: Images, tmp: &Path, out: &Path, guard: xlfs_util::TempDirGuard) -> Result<Images> {
    std::fs::write(tmp.join("images.json"), serde_json::to_string_pretty(&images)?)?;
    std::fs::set_permissions(tmp, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("cannot set the mode of {}", tmp.display()))?;
    xlfs_util::replace_dir(tmp, out)
        .with_context(|| format!("cannot move the images to {}", out.display()))?;
    drop(guard);
    Ok(images)
}

#[cfg(test)]
mod tests {
    use super::*;
    use xlfs_store::{Entry, Kind};

    fn entry(path: &str, kind: Kind, target: Option<&str>) -> Entry {
        serde_json::from_value(serde_json::json!({
            "path": path, "kind": kind, "mode": 0o755, "uid": 0, "gid": 0, "size": 0,
            "target": target,
        }))
        .unwrap()
    }

    /// BusyBox's `httpd` and `nslookup` links give way to Apache's and BIND's programs; its other
    /// applets stay, and a real conflict between two real files is left for the root filesystem
    /// to report.
    #[test]
    fn busybox_applets_yield_to_real_programs() {
        let busybox = Manifest {
            entries: vec![
                entry("usr/bin/busybox", Kind::File, None),
                entry("usr/bin/nslookup", Kind::Symlink, Some("busybox")),
                entry("usr/bin/sh", Kind::Symlink, Some("busybox")),
                entry("usr/sbin/httpd", Kind::Symlink, Some("../bin/busybox")),
            ],
        };
        let httpd = Manifest {
            entries: vec![
                entry("usr/sbin", Kind::Dir, None),
                entry("usr/sbin/httpd", Kind::File, None),
            ],
        };
        let bind = Manifest {
            entries: vec![entry("usr/bin/nslookup", Kind::File, None)],
        };
        let mut all = vec![
            ("bind".to_string(), bind),
            ("busybox".to_string(), busybox),
            ("httpd".to_string(), httpd),
        ];
        yield_applets(&mut all);
        let paths: Vec<&str> = all[1].1.entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["usr/bin/busybox", "usr/bin/sh"]);
        assert_eq!(all[0].1.entries.len(), 1);
        assert_eq!(all[2].1.entries.len(), 2);
    }

    /// Apache's empty `var/run/apache2` goes; a directory with a file under the link stays (and
    /// the root filesystem reports the conflict).
    #[test]
    fn empty_directories_give_way_to_the_base_systems_links() {
        let filesystem = Manifest {
            entries: vec![
                entry("run", Kind::Dir, None),
                entry("var", Kind::Dir, None),
                entry("var/run", Kind::Symlink, Some("../run")),
            ],
        };
        let httpd = Manifest {
            entries: vec![
                entry("var", Kind::Dir, None),
                entry("var/log", Kind::Dir, None),
                entry("var/run", Kind::Dir, None),
                entry("var/run/apache2", Kind::Dir, None),
            ],
        };
        let other = Manifest {
            entries: vec![
                entry("var/run", Kind::Dir, None),
                entry("var/run/other.pid", Kind::File, None),
            ],
        };
        let mut all = vec![
            ("filesystem".to_string(), filesystem),
            ("httpd".to_string(), httpd),
            ("other".to_string(), other),
        ];
        drop_empty_dirs_over_links(&mut all);
        let paths: Vec<&str> = all[1].1.entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["var", "var/log"]);
        assert_eq!(all[0].1.entries.len(), 3);
        assert_eq!(all[2].1.entries.len(), 2);
    }
}
