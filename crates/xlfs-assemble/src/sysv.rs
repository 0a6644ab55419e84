//! A SysV host (`init = "sysv"`): dom0 runs from an ext4 root on its own GPT disk, booted by
//! GRUB -> Xen (multiboot2) -> Linux -> SysV init. The root file system is the runtime closure
//! of the profile's packages computed from the manifests ([`crate::closure`]), without the
//! excluded classes ([`crate::exclude`]), with its debug information split off
//! ([`crate::debug`]), the generated configuration ([`xlfs_system::sysv`]), the guests' disks in
//! `/var/lib/xen/images`, and `/boot` (Xen, the kernel, GRUB). The audit is fatal under
//! `[host.budget]` ([`crate::budget`]). Written as `host-disk.img` (raw) and `host-disk.qcow2`,
//! without loop devices or root. That disk holds only the profile's credentials (`[host]
//! ssh-keys`, `root-password`); the boot check's key and console password go into
//! `host-check.qcow2` alone, a copy-on-write variant of `host-disk.img` that only
//! `xlfs boot PROFILE --check` boots.

use crate::closure::{closure, ElfExtra, PackageInfo, Selection};
use crate::{add_generated, build_guests, file_bytes, Artifacts, Guests, Images};
use anyhow::{anyhow, bail, Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use xlfs_book::profile::{Keep, Profile};
use xlfs_image::{Ext4Options, RootFs};
use xlfs_store::{ArtifactStore, Kind, Manifest};

/// The file names of a SysV host's images.
pub const DISK_RAW: &str = "host-disk.img";
pub const DISK_QCOW2: &str = "host-disk.qcow2";
pub const DEBUG_TARBALL: &str = "debug.tar.zst";
/// The boot check's disk: `host-disk.img` plus the check credentials (its backing file, so the
/// two stay in one directory).
pub const CHECK_DISK: &str = "host-check.qcow2";

/// Credentials for `xlfs boot --check` (`[boot] check-credentials`): written into the check
/// disk ([`CHECK_DISK`]) only, never into the deliverable disk.
#[derive(Debug, Clone)]
pub struct CheckCredentials {
    /// One `authorized_keys` line.
    pub public_key: String,
    /// A crypt(3) hash of the console password (`$6$...`).
    pub password_hash: String,
}

/// What a SysV host's assembly needs besides the artifacts.
pub struct SysvInputs<'a> {
    /// The unpacked GRUB artifacts (`grub`, and `grub-efi` with `host.uefi`).
    pub grub: crate::GrubTrees<'a>,
    /// The toolchain root's binutils for the debug split (`None`: debug information stays).
    pub binutils: Option<crate::debug::Binutils>,
    pub credentials: Option<CheckCredentials>,
}

/// The seed of the disk's GUIDs.
pub fn disk_seed(profile: &Profile) -> String {
    format!("xlfs {} host disk", profile.name)
}

/// The root partition's GUID (partition 2 of the disk).
pub fn root_partuuid(profile: &Profile) -> String {
    xlfs_image::partition_guid(&disk_seed(profile), xlfs_image::ROOT_PARTITION)
}

/// The manifest entries of a selection: every entry for a whole package (minus the excluded
/// classes), or the selected files with their parent directories.
pub fn select_entries(m: &Manifest, sel: &Selection, keep: &[Keep]) -> Manifest {
    let mut entries = Vec::new();
    match sel {
        Selection::All => {
            for e in &m.entries {
                if e.kind == Kind::Dir || !crate::exclude::excluded(&e.path, keep) {
                    entries.push(e.clone());
                }
            }
            // Hard links whose first name is left out would dangle: keep both or none.
            let kept: std::collections::BTreeSet<String> = entries.iter().map(|e| e.path.clone()).collect();
            entries
                .retain(|e| e.kind != Kind::Hardlink || e.target.as_ref().is_some_and(|t| kept.contains(t)));
        }
        Selection::Files(files) => {
            for e in &m.entries {
                let parent_of_one = e.kind == Kind::Dir
                    && files
                        .iter()
                        .any(|f| f.starts_with(&e.path) && f.as_bytes().get(e.path.len()) == Some(&b'/'));
                if parent_of_one || files.contains(&e.path) {
                    entries.push(e.clone());
                }
            }
        }
    }
    Manifest { entries }
}

impl Artifacts<'_> {
    /// The closure of `roots` over every package of the plan.
    fn host_closure(
        &self,
        roots: &[String],
        keep: &[Keep],
    ) -> Result<(crate::closure::Closure, BTreeMap<String, Manifest>)> {
        let mut manifests = BTreeMap::new();
        for name in self.keys.keys() {
            let key = &self.keys[name];
            if self.store.contains(key)? {
                manifests.insert(name.clone(), self.store.manifest(key)?);
            }
        }
        let infos: BTreeMap<String, PackageInfo> = manifests
            .iter()
            .filter_map(|(n, m)| {
                let r = self.book.get(n)?;
                Some((
                    n.clone(),
                    PackageInfo {
                        run_deps: r.run_deps.clone(),
                        build_root: xlfs_plan::build_root(self.book, r).into_iter().collect(),
                        twin_of: r.twin_of.clone(),
                        manifest: m,
                    },
                ))
            })
            .collect();
        let trees: BTreeMap<String, PathBuf> = infos
            .keys()
            .filter_map(|n| Some((n.clone(), self.tree(n).ok()?)))
            .collect();
        let elf = |pkg: &str, path: &str| -> Option<ElfExtra> {
            let bytes = std::fs::read(trees.get(pkg)?.join(path)).ok()?;
            let info = xlfs_store::inspect_elf(&bytes)?;
            Some(ElfExtra {
                interp: info.interp,
                rpaths: info.rpaths,
            })
        };
        let c = closure(&infos, roots, &|p| crate::exclude::excluded(p, keep), &elf);
        Ok((c, manifests))
    }
}

/// Assemble a SysV host into `tmp` (the images directory being made; `out` is where it will
/// be): the guests, the root file system, the audit, the disk.
pub fn assemble_sysv(
    a: &Artifacts,
    profile: &Profile,
    inputs: &SysvInputs,
    tmp: &Path,
    out: &Path,
    epoch: u64,
) -> Result<Images> {
    let h = &profile.host;
    let keep = &h.keep;
    let Guests {
        guest_kernels,
        guests,
        kernel_files,
        images_fs: _,
        images_mib: _,
    } = build_guests(a, profile, tmp, out, epoch)?;

    // The root file system: the closure of the packages and the kernel (its modules).
    let mut roots = h.packages.clone();
    roots.push(h.kernel.clone());
    let (c, manifests) = a.host_closure(&roots, keep)?;
    if !c.unresolved.is_empty() {
        bail!(
            "the runtime closure of profile `{}` is incomplete:\n  {}",
            profile.name,
            c.unresolved.join("\n  ")
        );
    }
    let mut fs = RootFs::new();
    for (name, sel) in &c.packages {
        let mut m = select_entries(&manifests[name], sel, keep);
        if name == &h.kernel {
            // The kernel's image goes to /boot below; its System.map and config stay out.
            m.entries.retain(|e| !e.path.starts_with("boot/"));
        }
        fs.add_artifact(name, &a.tree(name)?, &m)
            .with_context(|| format!("adding package `{name}` ({})", c.why[name]))?;
    }
    // /boot: Xen and the kernel.
    let (xen_src, _) = a.boot_file(&h.xen, "xen")?;
    let (kernel_src, kernel_file) = a.boot_file(&h.kernel, "vmlinuz")?;
    fs.add_file_from("boot/xen", &xen_src, 0o644, 0, 0)?;
    fs.add_file_from(&format!("boot/{kernel_file}"), &kernel_src, 0o644, 0, 0)?;
    std::fs::copy(&xen_src, tmp.join("xen"))?;
    std::fs::copy(&kernel_src, tmp.join("vmlinuz"))?;

    // Configuration.
    let partuuid = root_partuuid(profile);
    add_generated(
        &mut fs,
        &xlfs_system::sysv::host_files(
            profile,
            &guest_kernels,
            &partuuid,
            xlfs_system::grub::DEFAULT_WATCHDOG_S,
        ),
    )?;
    for (path, target) in xlfs_system::sysv::links() {
        fs.add_symlink(path, target)?;
    }
    if let Some(tz) = &h.machine.timezone {
        let zone = format!("usr/share/zoneinfo/{tz}");
        if xlfs_image::audit::resolve(&fs, &zone).is_none() {
            bail!(
                "{}: host.timezone: no zone `{tz}` in the image (/{zone}); fix: name a zone of tzdata, e.g. \"UTC\", and keep `tzdata` in host.packages",
                profile.path.display()
            );
        }
        fs.add_symlink("etc/localtime", &format!("/{zone}"))?;
    }
    set_chrony_conf(&mut fs, &h.machine.ntp)?;
    set_root_password(&mut fs, profile)?;
    if fs.get("root/.ssh/authorized_keys").is_some() {
        fs.add_dir("root", 0o700, 0, 0)?;
        fs.add_dir("root/.ssh", 0o700, 0, 0)?;
    }
    for (src, file) in &kernel_files {
        fs.add_file_from(&xlfs_system::guest_kernel_path(file), src, 0o644, 0, 0)?;
    }
    // A real host keeps its guests' disks on its root.
    for g in profile.guests.iter().filter(|g| g.lvm.is_none()) {
        fs.add_file_from(
            &format!(
                "{}/{}",
                xlfs_system::GUEST_IMAGES_DIR,
                xlfs_system::guest_image_name(g)
            ),
            &tmp.join(format!("guest-{}.ext4", g.name)),
            0o600,
            0,
            0,
        )?;
    }
    if let Some(o) = &h.overlay {
        crate::add_overlay(&mut fs, &a.book.root.join(profile.dir()).join(o))?;
    }
    fs.add_dir("dev", 0o755, 0, 0)?;
    fs.add_device("dev/console", 'c', 5, 1, 0o600)?;
    fs.add_device("dev/null", 'c', 1, 3, 0o666)?;
    // The mount points of fstab's file systems on / (LFS §7.3 makes them on the partition, not
    // a package): proc and sys are in none.
    fs.add_dir("proc", 0o555, 0, 0)?;
    fs.add_dir("sys", 0o555, 0, 0)?;
    fs.add_dir("run", 0o755, 0, 0)?;

    // Debug information out.
    let debug_split = match (&inputs.binutils, keep.contains(&Keep::Debug)) {
        (Some(bin), false) => {
            let work = tmp.join(".debug-work");
            std::fs::create_dir_all(&work)?;
            let r = crate::debug::split(&mut fs, bin, &work, &tmp.join(DEBUG_TARBALL), epoch)
                .context("splitting the debug information off")?;
            std::fs::remove_dir_all(&work)?;
            Some(r)
        }
        _ => None,
    };

    // The audit: of dom0's root file system, without the guests' disks (they are data).
    let mut audited = fs.clone();
    for g in &profile.guests {
        audited.remove(&format!(
            "{}/{}",
            xlfs_system::GUEST_IMAGES_DIR,
            xlfs_system::guest_image_name(g)
        ));
    }
    for (_, file) in &kernel_files {
        audited.remove(&xlfs_system::guest_kernel_path(file));
    }
    audited.remove("boot/xen");
    audited.remove(&format!("boot/{kernel_file}"));
    let audit = xlfs_image::audit::audit(&audited, &crate::BUILD_PATHS);
    if let Some(b) = &h.budget {
        let v = crate::budget::violations(&audit, b, keep, &audited);
        if !v.is_empty() {
            bail!(
                "dom0's root file system of profile `{}` breaks [host.budget] ({}):\n  {}",
                profile.name,
                audit.summary(),
                v.join("\n  ")
            );
        }
    }

    // GRUB and the disk.
    let files = xlfs_system::grub::BootFiles {
        xen: "/boot/xen".into(),
        kernel: format!("/boot/{kernel_file}"),
        initrd: None,
        root: Some(format!("PARTUUID={}", partuuid.to_lowercase())),
    };
    fs.add_file(
        "boot/grub/grub.cfg",
        xlfs_system::grub::grub_cfg(profile, &files).into_bytes(),
        0o644,
        0,
        0,
    )?;
    fs.add_file(
        "boot/grub/grubenv",
        xlfs_system::grub::grubenv(&[("saved_entry", "xen")]),
        0o644,
        0,
        0,
    )?;
    let data_mib =
        audit.bytes.div_ceil(1 << 20) + profile.guests.iter().map(|g| g.disk_mib as u64).sum::<u64>();
    let opts = Ext4Options {
        // The files, the file system's own room, and 512 MiB to live in (logs, keys, images).
        size_mib: data_mib + data_mib * 3 / 10 + 512,
        label: h.hostname.clone(),
        uuid: xlfs_image::derive_uuid(&format!("{} root uuid", profile.name)),
        hash_seed: xlfs_image::derive_uuid(&format!("{} root hash_seed", profile.name)),
        mtime: epoch,
    };
    let check_edits = inputs
        .credentials
        .as_ref()
        .map(|c| check_edits(&fs, c))
        .transpose()?;
    let raw = tmp.join(DISK_RAW);
    let qcow2 = tmp.join(DISK_QCOW2);
    let layout = xlfs_image::write_grub_disk(
        fs,
        inputs.grub.bios,
        inputs.grub.efi,
        &opts,
        &disk_seed(profile),
        &raw,
        Some(&qcow2),
    )
    .with_context(|| format!("cannot write the disk image {}", raw.display()))?;
    debug_assert_eq!(
        layout.partitions.get(1).map(|p| p.guid.as_str()),
        Some(partuuid.as_str())
    );
    let check_disk = match &check_edits {
        Some(edits) => {
            let path = tmp.join(CHECK_DISK);
            xlfs_image::write_disk_variant(&raw, &layout, xlfs_image::ROOT_PARTITION, edits, epoch, &path)
                .with_context(|| format!("cannot write the boot check's disk {}", path.display()))?;
            Some(out.join(CHECK_DISK))
        }
        None => None,
    };

    let version = |pkg: &str| a.book.get(pkg).map(|r| r.version.clone()).unwrap_or_default();
    let mut files = BTreeMap::new();
    for e in std::fs::read_dir(tmp)? {
        let e = e?;
        let (sha, size) = xlfs_util::sha256_file(&e.path())
            .with_context(|| format!("cannot read {}", e.path().display()))?;
        files.insert(e.file_name().to_string_lossy().to_string(), (size, sha));
    }
    Ok(Images {
        dir: out.to_path_buf(),
        profile: profile.name.clone(),
        xen: out.join("xen"),
        xen_version: version(&h.xen),
        kernel: out.join("vmlinuz"),
        kernel_version: kernel_file.trim_start_matches("vmlinuz-").to_string(),
        initramfs: PathBuf::new(),
        host_ext4: PathBuf::new(),
        guests,
        guest_images: None,
        files,
        dom0_audit: Some(audit),
        disk: Some(out.join(DISK_RAW)),
        disk_qcow2: Some(out.join(DISK_QCOW2)),
        check_disk,
        debug: debug_split
            .as_ref()
            .filter(|d| !d.files.is_empty())
            .map(|_| out.join(DEBUG_TARBALL)),
        debug_split,
        packages: c.packages.keys().map(|n| (n.clone(), c.why[n].clone())).collect(),
        root_partuuid: Some(partuuid),
    })
}

/// `/etc/chrony.conf`, when the image has one: the machine configuration's NTP servers in place
/// of its `pool`/`server` lines, and a client only whatever the package wrote: `port 0` (no
/// NTP server socket) and `cmdport 0` (chronyc over the Unix socket, no UDP port 323), so that
/// only sshd listens.
fn set_chrony_conf(fs: &mut RootFs, ntp: &[String]) -> Result<()> {
    let path = "etc/chrony.conf";
    let Some(bytes) = file_bytes(fs, path)? else {
        return Ok(());
    };
    let text = String::from_utf8(bytes).map_err(|_| anyhow!("/{path} is not text"))?;
    let (mode, uid, gid) = fs
        .get(path)
        .map(|n| (n.mode, n.uid, n.gid))
        .unwrap_or((0o644, 0, 0));
    let servers: String = ntp.iter().map(|s| format!("server {s} iburst\n")).collect();
    let mut out = String::new();
    let mut placed = ntp.is_empty();
    for line in text.lines() {
        let directive = line.split_whitespace().next().unwrap_or("");
        if matches!(directive, "port" | "cmdport") {
            continue;
        }
        if !ntp.is_empty() && matches!(directive, "pool" | "server") {
            if !placed {
                out.push_str(&servers);
                placed = true;
            }
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    if !placed {
        out.push_str(&servers);
    }
    out.push_str(
        "# xlfs: a client only (no NTP server port, chronyc over the Unix socket only).\nport 0\ncmdport 0\n",
    );
    fs.add_file(path, out.into_bytes(), mode, uid, gid)?;
    Ok(())
}

/// `/etc/shadow` with root's line replaced by `line`.
fn with_root_line(fs: &RootFs, line: &str) -> Result<Vec<u8>> {
    let text = String::from_utf8(file_bytes(fs, "etc/shadow")?.unwrap_or_default())
        .map_err(|_| anyhow!("/etc/shadow is not text"))?;
    let mut out = format!("{line}\n");
    for l in text.lines().filter(|l| !l.starts_with("root:")) {
        out.push_str(l);
        out.push('\n');
    }
    Ok(out.into_bytes())
}

/// root's line of `/etc/shadow`: the machine configuration's `root-password`, else as the
/// packages left it.
fn set_root_password(fs: &mut RootFs, profile: &Profile) -> Result<()> {
    let Some(line) = xlfs_system::machine::shadow_root_line(profile) else {
        return Ok(());
    };
    let shadow = with_root_line(fs, &line)?;
    fs.add_file("etc/shadow", shadow, 0o600, 0, 0)?;
    Ok(())
}

/// What the check disk changes in the root file system `fs`: root's password (the console
/// password's hash) in `/etc/shadow`, and the check key after the profile's keys in root's
/// `authorized_keys`.
pub fn check_edits(fs: &RootFs, c: &CheckCredentials) -> Result<RootFs> {
    let mut edits = RootFs::new();
    let shadow = with_root_line(fs, &format!("root:{}:19723:0:99999:7:::", c.password_hash))?;
    let (mode, uid, gid) = fs
        .get("etc/shadow")
        .map(|n| (n.mode, n.uid, n.gid))
        .unwrap_or((0o600, 0, 0));
    edits.add_dir("etc", 0o755, 0, 0)?;
    edits.add_file("etc/shadow", shadow, mode, uid, gid)?;
    let mut keys = String::from_utf8(file_bytes(fs, "root/.ssh/authorized_keys")?.unwrap_or_default())
        .map_err(|_| anyhow!("/root/.ssh/authorized_keys is not text"))?;
    if !keys.is_empty() && !keys.ends_with('\n') {
        keys.push('\n');
    }
    keys.push_str(&format!("{}\n", c.public_key.trim()));
    edits.add_dir("root", 0o700, 0, 0)?;
    edits.add_dir("root/.ssh", 0o700, 0, 0)?;
    edits.add_file("root/.ssh/authorized_keys", keys.into_bytes(), 0o600, 0, 0)?;
    Ok(edits)
}
