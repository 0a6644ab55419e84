//! `xlfs image`, `xlfs boot` and `xlfs up`: from built artifacts to images, and from images to a
//! booted, checked system.

use crate::app::App;
use anyhow::{bail, Context, Result};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use xlfs_assemble::{Artifacts, Images};
use xlfs_book::guest::CheckOn;
use xlfs_book::profile::{AccelChoice, Profile};
use xlfs_boot::{Accel, AccelPref, Check, Console, Drive, Machine};

pub fn images_dir(app: &App, profile: &str) -> PathBuf {
    app.home.root.join("images").join(profile)
}

pub fn load_profile(app: &App, name: &str) -> Result<(xlfs_book::Book, Profile)> {
    app.profile(name)
}

/// The store lock, shared with other `image` and `boot` runs; `gc` and `verify` wait for it.
fn store_lock_shared(app: &App, what: &str) -> Result<xlfs_build::lock::HomeLock> {
    app.prepare_home()?;
    let path = app.home.store_lock();
    Ok(xlfs_build::lock::lock_shared(&path, what, true, &|holder| {
        eprintln!("waiting for the store lock {} (held by {holder})", path.display())
    })?)
}

/// Assemble the images of a profile (everything must be built).
pub fn image(app: &App, name: &str) -> Result<Images> {
    let _store_lock = store_lock_shared(app, "image")?;
    let (book, profile) = load_profile(app, name)?;
    let (db, store) = (app.db()?, app.store()?);
    let march = profile.host.machine.march.as_deref();
    let plan = app.plan_tuned(&book, &profile.targets(), true, march, &db, &store)?;
    let missing: Vec<&str> = plan.to_build().map(|s| s.name.as_str()).collect();
    if !missing.is_empty() {
        bail!(
            "profile `{name}` needs packages that are not built: {}; run `xlfs build --profile {name}`",
            missing.join(", ")
        );
    }
    // Never a corrupt artifact in an image: each one used is re-hashed first.
    let t = Instant::now();
    if let Err(e) = xlfs_build::verify::require_sound(&store, &db, plan.steps.iter().map(|s| s.key.as_str()))
    {
        bail!("{e}; run `xlfs build --profile {name}` to make them again");
    }
    if !app.global.quiet {
        eprintln!(
            "verified the {} artifacts used in {:.2}s",
            plan.steps.len(),
            t.elapsed().as_secs_f64()
        );
    }
    let keys = plan
        .steps
        .iter()
        .map(|s| (s.name.clone(), s.key.clone()))
        .collect();
    let artifacts = Artifacts {
        book: &book,
        keys,
        store: &store,
    };
    let out = images_dir(app, name);
    std::fs::create_dir_all(out.parent().expect("images dir has a parent"))?;
    // A disk-image profile's GRUB disk: a SysV host runs from it, a BusyBox one carries it.
    let tree = |wanted: bool, package: &str| -> Result<Option<PathBuf>> {
        if !wanted {
            return Ok(None);
        }
        let step = plan
            .get(package)
            .with_context(|| format!("the plan of profile `{name}` has no {package}"))?;
        let tree = store
            .tree(&step.key)
            .with_context(|| format!("cannot unpack the {package} artifact {}", step.key))?;
        Ok(Some(tree))
    };
    let grub_bios = tree(profile.host.disk_image, xlfs_book::profile::GRUB_PACKAGE)?;
    let grub_efi = tree(profile.host.uefi, xlfs_book::profile::GRUB_EFI_PACKAGE)?;
    let grub = grub_bios.as_deref().map(|bios| xlfs_assemble::GrubTrees {
        bios,
        efi: grub_efi.as_deref(),
    });
    let sysv = match grub {
        Some(grub) if profile.host.init == xlfs_book::profile::Init::Sysv => {
            let inputs = crate::host::sysv_inputs(app, &book, &profile, grub)?;
            if inputs.credentials.is_some() {
                println!(
                    "  {} (for `xlfs boot {name} --check` only) holds this home's boot-check key and console password ({}); {} holds only the profile's",
                    xlfs_assemble::sysv::CHECK_DISK,
                    crate::host::credentials_dir(app).display(),
                    xlfs_assemble::sysv::DISK_RAW,
                );
            }
            Some(inputs)
        }
        _ => None,
    };
    let disk = match (&sysv, grub) {
        (Some(inputs), _) => xlfs_assemble::Disk::Sysv(inputs),
        (None, Some(grub)) => xlfs_assemble::Disk::Grub(grub),
        (None, None) => xlfs_assemble::Disk::None,
    };
    xlfs_assemble::assemble_with(&artifacts, &profile, &out, book.config.source_date_epoch, disk)
}

pub fn print_images(images: &Images) {
    println!("images of `{}` in {}", images.profile, images.dir.display());
    for (file, (size, sha)) in &images.files {
        println!(
            "  {file:<24} {:>10}  sha256 {}",
            xlfs_build::run::human_bytes(*size),
            &sha[..16]
        );
    }
    if let Some(d) = &images.debug_split {
        println!(
            "debug information of {} files split off ({}) into {}",
            d.files.len(),
            xlfs_build::run::human_bytes(d.saved),
            images
                .debug
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "nothing".into())
        );
    }
    if !images.packages.is_empty() {
        println!("dom0's root file system: {} packages", images.packages.len());
    }
    if let Some(a) = &images.dom0_audit {
        println!("dom0 audit: {}", a.summary());
        for p in a.unresolved.iter().chain(&a.build_paths).take(20) {
            println!("  {p}");
        }
    }
    for g in &images.guests {
        if let Some(a) = &g.audit {
            println!(
                "guest `{}`: {} packages; audit: {}",
                g.name,
                g.packages.len(),
                a.summary()
            );
            for p in a.unresolved.iter().chain(&a.build_paths).take(20) {
                println!("  {p}");
            }
        }
    }
}

/// One guest of a profile's images, for `xlfs report`: its disk, what is in it, and what it
/// listened on at its last `boot --check`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct GuestReport {
    pub profile: String,
    pub guest: String,
    /// The size of its disk image file.
    pub image_bytes: u64,
    /// The bytes of its files (the audit's count).
    pub files_bytes: Option<u64>,
    pub packages: Vec<String>,
    /// `ss -ltnu` (or `netstat -ltnu`) inside the guest at its last check; none before one.
    pub sockets: Option<String>,
}

/// The images of every profile in this home, for `xlfs report` (read once, for the guests'
/// and dom0's parts).
pub fn home_images(app: &App) -> Result<Vec<Images>> {
    images_in(&app.home.root.join("images"))
}

/// The images of every profile under `root` (one directory each, with its `images.json`), in
/// the order of their names.
fn images_in(root: &std::path::Path) -> Result<Vec<Images>> {
    let Ok(dirs) = std::fs::read_dir(root) else {
        return Ok(Vec::new());
    };
    let mut dirs: Vec<PathBuf> = dirs
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("images.json").is_file())
        .collect();
    dirs.sort();
    dirs.iter().map(|d| Images::load(d)).collect()
}

/// Every guest of `all` (the images of every profile).
pub fn guest_reports(all: &[Images]) -> Vec<GuestReport> {
    let mut out = Vec::new();
    for images in all {
        for g in &images.guests {
            out.push(GuestReport {
                profile: images.profile.clone(),
                guest: g.name.clone(),
                image_bytes: std::fs::metadata(&g.disk).map(|m| m.len()).unwrap_or(0),
                files_bytes: g.audit.as_ref().map(|a| a.bytes),
                packages: g.packages.clone(),
                sockets: std::fs::read_to_string(sockets_file(images, &g.name)).ok(),
            });
        }
    }
    out
}

/// dom0 of a profile's images (a host with an audited root file system), for `xlfs report`:
/// the audit's figures against the budget, and what listened at its last `boot --check`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Dom0Report {
    pub profile: String,
    /// The bytes of dom0's root file system (the audit's count).
    pub files_bytes: u64,
    pub elf_files: usize,
    pub setuid: Vec<String>,
    pub packages: usize,
    /// The raw disk image's size, for a host booting from its own disk.
    pub disk_bytes: Option<u64>,
    /// `ss -Hltun` in dom0 at its last check; none before one.
    pub sockets: Option<String>,
}

/// Where `boot PROFILE --check` keeps dom0's listening sockets (a guest's are `NAME.sockets`).
pub fn dom0_sockets_file(images: &Images) -> PathBuf {
    images.dir.join("dom0-sockets.txt")
}

/// dom0 of every profile's images in `all` that has an audit.
pub fn dom0_reports(all: &[Images]) -> Vec<Dom0Report> {
    let mut out = Vec::new();
    for images in all {
        let Some(a) = &images.dom0_audit else { continue };
        out.push(Dom0Report {
            profile: images.profile.clone(),
            files_bytes: a.bytes,
            elf_files: a.elf_files,
            setuid: a.setuid.clone(),
            packages: images.packages.len(),
            disk_bytes: images
                .disk
                .as_ref()
                .and_then(|d| std::fs::metadata(d).ok())
                .map(|m| m.len()),
            sockets: std::fs::read_to_string(dom0_sockets_file(images)).ok(),
        });
    }
    out
}

/// The dom0 part of `xlfs report`, as text.
pub fn dom0_report_table(dom0s: &[Dom0Report]) -> String {
    let mut s = String::new();
    for d in dom0s {
        s.push_str(&format!(
            "\ndom0 ({}): root file system {} in {} packages, {} ELF files{}\nsetuid/setgid: {} ({})\n",
            d.profile,
            xlfs_build::run::human_bytes(d.files_bytes),
            d.packages,
            d.elf_files,
            d.disk_bytes
                .map(|b| format!("; disk image {}", xlfs_build::run::human_bytes(b)))
                .unwrap_or_default(),
            d.setuid.len(),
            d.setuid.join(" ")
        ));
        match &d.sockets {
            Some(text) => {
                s.push_str("listening sockets at its last check:\n");
                for l in text.lines().filter(|l| !l.trim().is_empty()) {
                    s.push_str(&format!("  {l}\n"));
                }
            }
            None => s.push_str(&format!(
                "listening sockets: not listed yet (`xlfs boot {} --check` lists them)\n",
                d.profile
            )),
        }
    }
    s
}

/// The guests' part of `xlfs report`, as text.
pub fn guest_report_table(guests: &[GuestReport]) -> String {
    let mut s = String::new();
    if guests.is_empty() {
        return s;
    }
    s.push_str("\nguest (profile)                image      files   packages\n");
    for g in guests {
        s.push_str(&format!(
            "{:<30} {:>9} {:>10} {:>10}\n",
            format!("{} ({})", g.guest, g.profile),
            xlfs_build::run::human_bytes(g.image_bytes),
            g.files_bytes
                .map(xlfs_build::run::human_bytes)
                .unwrap_or_else(|| "-".into()),
            g.packages.len()
        ));
    }
    for g in guests {
        s.push_str(&format!(
            "\nguest `{}` ({}): packages {}\n",
            g.guest,
            g.profile,
            g.packages.join(" ")
        ));
        match &g.sockets {
            Some(text) => {
                s.push_str("listening sockets at its last check:\n");
                for l in text.lines() {
                    s.push_str(&format!("  {l}\n"));
                }
            }
            None => s.push_str(&format!(
                "listening sockets: not listed (`xlfs boot {} --check` lists those of a guest made \
                 from a template)\n",
                g.profile
            )),
        }
    }
    s
}

/// A port of the build machine forwarded by QEMU's user-mode network to a guest's TCP port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    pub guest: String,
    pub host_port: u16,
    pub address: std::net::Ipv4Addr,
    pub port: u16,
}

/// Forwards for the checks of `guests` (those with a template and checks that name a port), on
/// free ports of 127.0.0.1.
pub fn forwards(profile: &Profile, guests: &[&xlfs_book::profile::Guest]) -> Result<Vec<Forward>> {
    let mut out = Vec::new();
    for g in guests {
        let (Some(t), Some(n)) = (profile.template_of(g), &g.network) else {
            continue;
        };
        let mut ports: Vec<u16> = t
            .checks
            .iter()
            .filter(|c| c.on == CheckOn::Build)
            .filter_map(|c| c.port)
            .collect();
        ports.sort();
        ports.dedup();
        for port in ports {
            let l = std::net::TcpListener::bind("127.0.0.1:0").context("cannot find a free local port")?;
            out.push(Forward {
                guest: g.name.clone(),
                host_port: l.local_addr()?.port(),
                address: n.address.addr,
                port,
            });
        }
    }
    Ok(out)
}

/// QEMU's user-mode network on the host's bridge: its network is the bridge's, its own
/// addresses the highest free ones (so no guest's address is taken), and each forward a
/// `hostfwd`. dom0 puts the card on the bridge (`xlfs.uplink=eth0`).
pub(crate) fn uplink_args(profile: &Profile, fwd: &[Forward]) -> Vec<String> {
    let Some(b) = &profile.host.bridge else {
        return Vec::new();
    };
    let m = u32::from(b.address.netmask());
    let net = u32::from(b.address.addr) & m;
    let taken: Vec<std::net::Ipv4Addr> = std::iter::once(b.address.addr)
        .chain(
            profile
                .guests
                .iter()
                .filter_map(|g| g.network.as_ref().map(|n| n.address.addr)),
        )
        .collect();
    let mut free = (1..(!m))
        .rev()
        .map(|i| std::net::Ipv4Addr::from(net | i))
        .filter(|a| !taken.contains(a));
    let mut next = || free.next().unwrap_or(b.address.addr);
    let (host, dns, dhcp) = (next(), next(), next());
    let mut netdev = format!(
        "user,id=uplink,net={}/{},host={host},dns={dns},dhcpstart={dhcp}",
        std::net::Ipv4Addr::from(net),
        b.address.prefix
    );
    for f in fwd {
        netdev.push_str(&format!(
            ",hostfwd=tcp:127.0.0.1:{}-{}:{}",
            f.host_port, f.address, f.port
        ));
    }
    vec![
        "-netdev".into(),
        netdev,
        "-device".into(),
        "virtio-net-pci,netdev=uplink".into(),
    ]
}

fn machine(profile: &Profile, images: &Images, accel: Accel) -> Machine {
    machine_with(profile, images, accel, &[])
}

fn machine_with(profile: &Profile, images: &Images, accel: Accel, fwd: &[Forward]) -> Machine {
    let mut linux_cmdline = profile.host.linux_cmdline.clone();
    // The guests' disks reach dom0 as one disk of image files, whatever their number.
    if images.guest_images.is_some() {
        linux_cmdline.push_str(&format!(" {}=/dev/sda", xlfs_system::IMAGES_ARG));
    }
    let extra = if fwd.is_empty() {
        Vec::new()
    } else {
        uplink_args(profile, fwd)
    };
    if !extra.is_empty() {
        linux_cmdline.push_str(&format!(" {}=eth0", xlfs_system::UPLINK_ARG));
    }
    Machine {
        memory_mib: profile.boot.memory_mib,
        smp: profile.boot.cpus,
        cpu: "qemu64".into(),
        kernel: images.xen.clone(),
        append: profile.host.xen_command_line(),
        initrd: vec![
            (images.kernel.clone(), linux_cmdline.trim().to_string()),
            (images.initramfs.clone(), String::new()),
        ],
        drives: images.guest_images.iter().map(|p| Drive::raw(p, "ide")).collect(),
        extra,
        ..Machine::new(accel)
    }
}

fn accel(profile: &Profile, forced: Option<&str>) -> (Accel, String) {
    let pref = match forced.unwrap_or(match profile.boot.accel {
        AccelChoice::Auto => "auto",
        AccelChoice::Kvm => "kvm",
        AccelChoice::Tcg => "tcg",
    }) {
        "kvm" => AccelPref::Kvm,
        "tcg" => AccelPref::Tcg,
        _ => AccelPref::Auto,
    };
    xlfs_boot::choose_accel(pref, Duration::from_secs(5))
}

/// The scripted checks of a profile's boot, in order.
pub fn checks(images: &Images) -> Vec<Check> {
    let c = |name: &str, send: Option<String>, expect: &str, t: u64| Check {
        name: name.into(),
        send,
        expect: expect.into(),
        timeout_s: t,
    };
    let xen_major = images.xen_version.split('+').next().unwrap_or("").to_string();
    vec![
        c(
            "the Xen banner and version appear",
            None,
            &format!("Xen version {xen_major}"),
            120,
        ),
        c(
            "the dom0 kernel comes up",
            None,
            &format!("Linux version {}", images.kernel_version),
            180,
        ),
        c("init starts xenstored", None, "xlfs: starting xenstored", 180),
        c("init starts xenconsoled", None, "xlfs: starting xenconsoled", 60),
        c("dom0 is ready", None, "xlfs: dom0 ready", 120),
    ]
}

/// A console command that must succeed and print `expect`.
fn must(
    con: &mut Console,
    what: &str,
    cmd: &str,
    expect: &str,
    t: u64,
    log: &mut Vec<(String, Duration)>,
) -> Result<String> {
    let (rc, out) = con
        .run(cmd, Duration::from_secs(t))
        .with_context(|| format!("check failed: {what}"))?;
    if rc != 0 || !out.contains(expect) {
        bail!(
            "check failed: {what}\n  command: {cmd}\n  expected exit 0 and `{expect}`, got exit {rc}:\n{}",
            out.lines()
                .map(|l| format!("  | {l}"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    println!("  ok  {what} ({:.1}s)", con.elapsed().as_secs_f64());
    log.push((what.to_string(), con.elapsed()));
    Ok(out)
}

pub struct BootReport {
    pub accel: Accel,
    pub accel_reason: String,
    pub marks: Vec<(String, Duration)>,
    pub log: PathBuf,
}

/// Run a guest's template checks from the build machine, through the forwarded ports; `saved`:
/// the outputs the guest's own checks kept (`{{ saved.NAME }}`).
fn template_checks(
    con: &Console,
    profile: &Profile,
    g: &xlfs_book::profile::Guest,
    fwd: &[Forward],
    saved: &std::collections::BTreeMap<String, String>,
    marks: &mut Vec<(String, Duration)>,
) -> Result<()> {
    let Some(t) = profile.template_of(g) else {
        return Ok(());
    };
    let address = |port: u16| {
        fwd.iter()
            .find(|f| f.guest == g.name && f.port == port)
            .map(|f| format!("127.0.0.1:{}", f.host_port))
            .unwrap_or_else(|| {
                format!(
                    "{}:{port}",
                    g.network
                        .as_ref()
                        .map(|n| n.address.addr.to_string())
                        .unwrap_or_default()
                )
            })
    };
    let mut ctx = g.context(profile);
    if let Some(o) = ctx.as_object_mut() {
        o.insert("saved".into(), serde_json::to_value(saved)?);
    }
    let checks = t
        .render_checks_on(&ctx, &address, CheckOn::Build)
        .map_err(|d| anyhow::anyhow!("{}", xlfs_book::BookErrors(d)))?;
    for c in checks {
        let check = Check {
            name: c.name.clone(),
            send: Some(c.run.clone()),
            expect: c.expect.clone(),
            timeout_s: c.timeout_s,
        };
        let (r, out) = xlfs_boot::run_on_build_machine(&check);
        if !r.ok {
            bail!(
                "check failed: guest `{}`: {}\n  {}\n  the client (on the build machine):\n{}\n  the console (guest and dom0), last lines:\n{}",
                g.name,
                c.name,
                r.error.unwrap_or_default(),
                indent(&out),
                indent(&con.tail(40))
            );
        }
        println!(
            "  ok  guest `{}`: {} ({:.1}s)",
            g.name,
            c.name,
            con.elapsed().as_secs_f64()
        );
        marks.push((format!("guest {}: {}", g.name, c.name), con.elapsed()));
    }
    Ok(())
}

/// The command that lists a guest's listening sockets: `ss -ltnu` where the guest has iproute2,
/// else BusyBox's `netstat -ltnu` (the same sockets; its header says which answered). Short: a
/// long line typed into a guest's console under a loaded TCG loses characters.
pub const SOCKETS_COMMAND: &str = "ss -ltnu 2>/dev/null || netstat -ltnu";

/// The file of a profile's images where `boot --check` keeps a guest's listening sockets.
pub fn sockets_file(images: &Images, guest: &str) -> PathBuf {
    images.dir.join(format!("{guest}.sockets"))
}

/// On the guest's console (as root): the template's checks that run on the guest, then its
/// listening sockets, kept next to the images for `xlfs report`. Returns the outputs the checks
/// save for the build machine's checks.
fn guest_side_checks(
    con: &mut Console,
    profile: &Profile,
    images: &Images,
    g: &xlfs_book::profile::Guest,
    marks: &mut Vec<(String, Duration)>,
) -> Result<std::collections::BTreeMap<String, String>> {
    let mut saved = std::collections::BTreeMap::new();
    let Some(t) = profile.template_of(g) else {
        return Ok(saved);
    };
    let checks = t
        .render_checks_on(&g.context(profile), &|p| format!("127.0.0.1:{p}"), CheckOn::Guest)
        .map_err(|d| anyhow::anyhow!("{}", xlfs_book::BookErrors(d)))?;
    for c in checks {
        let what = format!("guest `{}` (on the guest): {}", g.name, c.name);
        let (rc, out) = con
            .run(&c.run, Duration::from_secs(c.timeout_s))
            .with_context(|| format!("check failed: {what}"))?;
        if rc != 0 || !out.contains(&c.expect) {
            bail!(
                "check failed: {what}\n  command (on the guest): {}\n  expected exit 0 and `{}`, got exit {rc}:\n{}\n  the console, last lines:\n{}",
                c.run,
                c.expect,
                indent(&out),
                indent(&con.tail(40))
            );
        }
        println!("  ok  {what} ({:.1}s)", con.elapsed().as_secs_f64());
        marks.push((what, con.elapsed()));
        if let Some(name) = &c.save {
            saved.insert(name.clone(), out.trim().to_string());
        }
    }
    let (_, sockets) = con
        .run(SOCKETS_COMMAND, Duration::from_secs(60))
        .with_context(|| format!("listing the listening sockets of guest `{}`", g.name))?;
    let file = sockets_file(images, &g.name);
    std::fs::write(&file, format!("{}\n", sockets.trim_end()))
        .with_context(|| format!("cannot write {}", file.display()))?;
    println!("  guest `{}` listens on:\n{}", g.name, indent(&sockets));
    Ok(saved)
}

/// Console lines quoted in an error, each behind `  | `.
pub(crate) fn indent(s: &str) -> String {
    s.lines()
        .map(|l| format!("  | {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Boot the profile and run its checks.
pub fn boot_check(app: &App, name: &str, forced: Option<&str>) -> Result<BootReport> {
    boot_check_guests(app, name, forced, None)
}

/// Boot the profile and run its checks, for every guest or only `only`.
pub fn boot_check_guests(
    app: &App,
    name: &str,
    forced: Option<&str>,
    only: Option<&str>,
) -> Result<BootReport> {
    let _store_lock = store_lock_shared(app, "boot")?;
    let (_book, profile) = load_profile(app, name)?;
    let images = Images::load(&images_dir(app, name))?;
    if images.disk.is_some() && profile.host.init == xlfs_book::profile::Init::Sysv {
        if only.is_some() {
            bail!("`xlfs guest check` boots initramfs hosts; for `{name}` run `xlfs boot {name} --check`");
        }
        let (accel, reason) = accel(&profile, forced);
        return crate::host::boot_check(app, &profile, &images, accel, &reason);
    }
    for g in &profile.guests {
        if !images.guests.iter().any(|i| i.name == g.name) {
            bail!(
                "the images of `{name}` have no guest `{}`; run `xlfs image {name}`",
                g.name
            );
        }
    }
    let guests: Vec<&xlfs_book::profile::Guest> = profile
        .guests
        .iter()
        .filter(|g| only.is_none_or(|o| o == g.name))
        .collect();
    if let Some(o) = only {
        if guests.is_empty() {
            bail!("profile `{name}` has no guest `{o}`");
        }
    }
    let fwd = forwards(&profile, &guests)?;
    let (accel, reason) = accel(&profile, forced);
    println!("booting `{name}` under QEMU with {accel:?}: {reason}");
    let mut marks = Vec::new();
    if only.is_none() {
        disk_boot_check(app, &profile, &images, accel, &mut marks)?;
    }
    let m = machine_with(&profile, &images, accel, &fwd);
    let log = app.home.root.join("logs").join(format!("boot-{name}.log"));
    let mut con = Console::spawn(&m, &log)?;
    let deadline = Instant::now() + Duration::from_secs(profile.boot.timeout_s);
    boot_checks(&mut con, &checks(&images), &mut marks)?;
    con.sendline("")?;
    must(
        &mut con,
        "xenstored and xenconsoled are running",
        "pidof xenstored && pidof xenconsoled",
        "",
        30,
        &mut marks,
    )?;
    must(
        &mut con,
        "`xl info` works",
        "xl info",
        "xen_version",
        60,
        &mut marks,
    )?;
    must(
        &mut con,
        "`xl list` shows Domain-0",
        "xl list",
        "Domain-0",
        60,
        &mut marks,
    )?;
    must(
        &mut con,
        "dom0 has four times a guest's scheduler weight",
        "xl sched-credit2 -d Domain-0 2>/dev/null || xl sched-credit -d Domain-0",
        " 1024",
        60,
        &mut marks,
    )?;
    let mut saved_by_guest = std::collections::BTreeMap::new();
    for &g in &guests {
        let cfg = format!("/etc/xen/{}.cfg", g.name);
        let created = Instant::now();
        con.sendline(&format!("xl create -c {cfg}"))?;
        let marker = format!(
            "XLFS-GUEST-UP hostname={} kernel={}",
            g.hostname, images.kernel_version
        );
        // A template guest's first boot and services (a database cluster made under TCG) may
        // take longer than a plain guest's boot: it may use what is left of the boot's budget.
        let up_within = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_secs(240));
        // `xl create` failing (a hotplug script's timeout, no memory) ends the wait at once.
        let (which, _) = con
            .expect_any(&[marker.as_str(), "libxl: error"], up_within)
            .with_context(|| {
                format!(
                    "check failed: guest `{}` starts and prints its hostname and kernel",
                    g.name
                )
            })?;
        if which == 1 {
            std::thread::sleep(Duration::from_secs(2));
            bail!(
                "check failed: `xl create` of guest `{}` failed; the console, last lines:\n{}",
                g.name,
                indent(&con.tail(30))
            );
        }
        println!(
            "  ok  guest `{}` is up, its services ready, {:.1}s after xl create: {marker} ({:.1}s)",
            g.name,
            created.elapsed().as_secs_f64(),
            con.elapsed().as_secs_f64()
        );
        marks.push((format!("guest {} up", g.name), con.elapsed()));
        con.sendline("")?;
        must(
            &mut con,
            "the guest sees its disk xvda",
            "cat /proc/partitions",
            "xvda",
            30,
            &mut marks,
        )?;
        if let (Some(n), Some(b)) = (&g.network, &profile.host.bridge) {
            must(
                &mut con,
                "the guest has its network interface",
                "ip addr show eth0",
                &n.address.addr.to_string(),
                30,
                &mut marks,
            )?;
            must(
                &mut con,
                "the guest pings dom0 over the bridge",
                &format!("ping -c 3 -W 5 {}", b.address.addr),
                " 0% packet loss",
                60,
                &mut marks,
            )?;
        }
        let saved = guest_side_checks(&mut con, &profile, &images, g, &mut marks)?;
        // Leave the guest console (Ctrl-], alone in its read: xenconsole only sees it then)
        // and make sure dom0's shell answers again.
        leave_guest_console(&mut con, &profile.host.hostname)?;
        must(
            &mut con,
            "back on dom0's console",
            "hostname",
            &profile.host.hostname,
            30,
            &mut marks,
        )?;
        if let Some(n) = &g.network {
            must(
                &mut con,
                "dom0 pings the guest over the bridge",
                &format!("ping -c 3 -W 5 {}", n.address.addr),
                " 0% packet loss",
                60,
                &mut marks,
            )?;
        }
        template_checks(&con, &profile, g, &fwd, &saved, &mut marks)?;
        saved_by_guest.insert(g.name.clone(), saved);
        must(
            &mut con,
            "`xl shutdown` stops the guest",
            &format!("xl shutdown -w {}", g.name),
            "",
            120,
            &mut marks,
        )?;
        guest_gone(&mut con, &g.name)?;
    }
    if guests.len() > 1 {
        all_at_once(
            &mut con,
            &profile,
            &guests,
            &fwd,
            &saved_by_guest,
            deadline,
            &mut marks,
        )?;
    }
    power_off(&mut con, power_off_budget(deadline), &mut marks)?;
    Ok(BootReport {
        accel,
        accel_reason: reason,
        marks,
        log,
    })
}

/// Run the console checks in order, printing each; the first failure ends the boot check.
fn boot_checks(con: &mut Console, checks: &[Check], marks: &mut Vec<(String, Duration)>) -> Result<()> {
    for r in xlfs_boot::run_checks(con, checks) {
        if let Some(e) = r.error {
            bail!("check failed: {}\n{e}", r.name);
        }
        println!("  ok  {} ({:.1}s)", r.name, r.at.as_secs_f64());
        marks.push((r.name, r.at));
    }
    Ok(())
}

/// The time a BusyBox dom0 gets to power off: what is left of the boot's budget, at least 60 s
/// and at most 120 s.
fn power_off_budget(deadline: Instant) -> Duration {
    deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_secs(60))
        .min(Duration::from_secs(120))
}

/// `poweroff` on dom0's console, then the machine must stop within `within`. dom0's power-off
/// goes through ACPI S5 and QEMU exits; where the machine has no ACPI power-off, Xen halts it
/// once dom0 has shut down, which is as clean, and QEMU is stopped here.
pub(crate) fn power_off(
    con: &mut Console,
    within: Duration,
    marks: &mut Vec<(String, Duration)>,
) -> Result<()> {
    con.sendline("poweroff")?;
    let halted = con.expect_any(
        &[
            "Hardware Dom0 shutdown",
            "Hardware Dom0 halted",
            "reboot: Power down",
        ],
        within,
    );
    if let Err(e) = halted {
        if con.exit_status().is_none() {
            bail!(
                "check failed: dom0 powers off cleanly: {e}\n  the console, last lines:\n{}",
                indent(&con.tail(40))
            );
        }
    }
    if con.wait_exit(Duration::from_secs(20)).is_err() {
        println!("  (QEMU did not exit by itself after Xen halted the machine; stopped it)");
    }
    println!("  ok  dom0 powered off ({:.1}s)", con.elapsed().as_secs_f64());
    marks.push(("powered off".into(), con.elapsed()));
    Ok(())
}

/// A BusyBox profile with a disk image: boot the disk itself, as a machine would, through
/// GRUB's default entry (Xen by multiboot2 with the dom0 kernel and initramfs from the disk's
/// `/boot`), until dom0 answers `xl info`; then power off. With `uefi = true`, twice: from
/// SeaBIOS, then from OVMF (UEFI), where Xen must say that it took its memory map from EFI.
/// The guests are checked after that, on the direct boot (their disks are a second drive that
/// the disk's grub.cfg does not name).
fn disk_boot_check(
    app: &App,
    profile: &Profile,
    images: &Images,
    accel: Accel,
    marks: &mut Vec<(String, Duration)>,
) -> Result<()> {
    use crate::host::Firmware;
    let Some(disk) = &images.disk_qcow2 else {
        return Ok(());
    };
    let mut firmwares = vec![Firmware::Bios];
    if profile.host.uefi {
        firmwares.push(Firmware::Uefi);
    }
    let checks = checks(images);
    for firmware in firmwares {
        let (label, memmap) = match firmware {
            Firmware::Bios => ("BIOS", "(XEN) Xen-e820 RAM map:"),
            Firmware::Uefi => ("UEFI", "(XEN) EFI RAM map:"),
        };
        println!(
            "booting `{}`'s disk {} through GRUB ({label})",
            profile.name,
            disk.display()
        );
        let m = crate::host::disk_machine(profile, disk, accel, firmware, Vec::new())?;
        let log = app.home.root.join("logs").join(format!(
            "boot-{}-disk-{}.log",
            profile.name,
            label.to_lowercase()
        ));
        let mut con = Console::spawn(&m, &log)?;
        let deadline = Instant::now() + Duration::from_secs(profile.boot.timeout_s);
        // GRUB's menu; Xen's banner; Xen saying GRUB loaded it, and whose memory map it has;
        // then dom0 as in every boot.
        let mut disk_marks = Vec::new();
        crate::host::wait(
            &mut con,
            &format!("the disk boots GRUB's menu ({label})"),
            "GNU GRUB  version",
            // OVMF under TCG takes a while before it loads BOOTX64.EFI.
            240,
            &mut disk_marks,
        )?;
        boot_checks(&mut con, &checks[..1], &mut disk_marks)?;
        crate::host::wait(
            &mut con,
            "GRUB loaded Xen (multiboot2)",
            "(XEN) Bootloader: GRUB",
            120,
            &mut disk_marks,
        )?;
        crate::host::wait(
            &mut con,
            &format!("Xen has the memory map of the {label} firmware"),
            memmap,
            60,
            &mut disk_marks,
        )?;
        boot_checks(&mut con, &checks[1..], &mut disk_marks)?;
        con.sendline("")?;
        must(
            &mut con,
            "`xl info` works on the Xen GRUB booted",
            "xl info",
            "xen_version",
            60,
            &mut disk_marks,
        )?;
        power_off(&mut con, power_off_budget(deadline), &mut disk_marks)?;
        let tag = label.to_lowercase();
        marks.extend(
            disk_marks
                .into_iter()
                .map(|(n, t)| (format!("disk ({tag}): {n}"), t)),
        );
    }
    Ok(())
}

/// After each guest's own checks, every guest at once: all started with `xl create`, all
/// listed by `xl list`, each answering dom0's ping on the bridge and passing its template's
/// checks from the build machine while the others run; then `xl shutdown -a -w` stops them all.
fn all_at_once(
    con: &mut Console,
    profile: &Profile,
    guests: &[&xlfs_book::profile::Guest],
    fwd: &[Forward],
    saved: &std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>>,
    deadline: Instant,
    marks: &mut Vec<(String, Duration)>,
) -> Result<()> {
    let n = guests.len();
    let started = Instant::now();
    for g in guests {
        must(
            con,
            &format!("`xl create` starts guest `{}` beside the others", g.name),
            &format!("xl create /etc/xen/{}.cfg", g.name),
            "",
            180,
            marks,
        )?;
    }
    let (_, list) = con.run("xl list", Duration::from_secs(60))?;
    let missing: Vec<&str> = guests
        .iter()
        .map(|g| g.name.as_str())
        .filter(|name| !list.lines().any(|l| l.split_whitespace().next() == Some(*name)))
        .collect();
    if !missing.is_empty() {
        bail!(
            "check failed: all {n} guests at once: `xl list` lacks {}:\n{}",
            missing.join(", "),
            indent(&list)
        );
    }
    println!(
        "  ok  `xl list` shows all {n} guests ({:.1}s)",
        con.elapsed().as_secs_f64()
    );
    // Under TCG, ten kernels boot on two emulated CPUs: each may take the rest of the budget.
    let up_by = deadline.max(Instant::now() + Duration::from_secs(300));
    for g in guests {
        let Some(net) = &g.network else { continue };
        let cmd = format!("ping -c 1 -W 2 {}", net.address.addr);
        loop {
            let (rc, out) = con.run(&cmd, Duration::from_secs(30))?;
            if rc == 0 && out.contains(" 0% packet loss") {
                break;
            }
            if Instant::now() > up_by {
                bail!(
                    "check failed: all {n} guests at once: guest `{}` ({}) does not answer dom0's ping:\n{}",
                    g.name,
                    net.address.addr,
                    indent(&con.tail(30))
                );
            }
            std::thread::sleep(Duration::from_secs(3));
        }
        println!(
            "  ok  guest `{}` answers on the bridge with {n} guests running ({:.1}s)",
            g.name,
            con.elapsed().as_secs_f64()
        );
    }
    for g in guests {
        // The services come up after the network: the template's checks wait for their ports.
        let none = std::collections::BTreeMap::new();
        template_checks(con, profile, g, fwd, saved.get(&g.name).unwrap_or(&none), marks)?;
    }
    marks.push((format!("all {n} guests up"), con.elapsed()));
    println!(
        "  ok  all {n} guests run at once, {:.1}s after the first `xl create` ({:.1}s)",
        started.elapsed().as_secs_f64(),
        con.elapsed().as_secs_f64()
    );
    must(
        con,
        &format!("`xl shutdown -a -w` stops all {n} guests"),
        "xl shutdown -a -w",
        "",
        300,
        marks,
    )?;
    let gone_by = Instant::now() + Duration::from_secs(120);
    loop {
        let (_, list) = con.run("xl list", Duration::from_secs(30))?;
        if list.lines().filter(|l| !l.trim().is_empty()).count() <= 2 {
            break;
        }
        if Instant::now() > gone_by {
            bail!(
                "check failed: guests still listed two minutes after `xl shutdown -a -w`:\n{}",
                indent(&list)
            );
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    println!(
        "  ok  all {n} guests are gone ({:.1}s)",
        con.elapsed().as_secs_f64()
    );
    Ok(())
}

/// After `xl shutdown -w`, xl's domain watcher destroys the guest (on_poweroff = "destroy"):
/// wait until `xl list` no longer has it, so that nothing after this (a power-off and its
/// xendomains) meets a half-destroyed domain.
pub(crate) fn guest_gone(con: &mut Console, name: &str) -> Result<()> {
    let gone_by = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, list) = con.run("xl list", Duration::from_secs(30))?;
        if !list.lines().any(|l| l.split_whitespace().next() == Some(name)) {
            break;
        }
        if Instant::now() > gone_by {
            bail!("check failed: guest `{name}` still listed a minute after xl shutdown:\n{list}");
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    println!(
        "  ok  guest `{name}` is gone ({:.1}s)",
        con.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Detach from a guest console with xenconsole's escape character, Ctrl-].
pub(crate) fn leave_guest_console(con: &mut Console, host: &str) -> Result<()> {
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(500));
        con.send("\x1d")?;
        std::thread::sleep(Duration::from_millis(1000));
        con.sendline("")?;
        if let Ok((0, out)) = con.run("hostname", Duration::from_secs(20)) {
            if out.lines().any(|l| l.trim() == host) {
                return Ok(());
            }
        }
    }
    bail!("check failed: cannot leave the guest console with Ctrl-] (dom0 `{host}` does not answer)")
}

/// Boot interactively: the serial console on this terminal.
pub fn boot_interactive(app: &App, name: &str, forced: Option<&str>) -> Result<i32> {
    let _store_lock = store_lock_shared(app, "boot")?;
    let (_book, profile) = load_profile(app, name)?;
    let images = Images::load(&images_dir(app, name))?;
    let (accel, reason) = accel(&profile, forced);
    eprintln!("booting `{name}` under QEMU with {accel:?}: {reason}; quit with Ctrl-A X");
    let m = if profile.host.init == xlfs_book::profile::Init::Sysv {
        crate::host::machine(&profile, &images, accel, crate::host::Firmware::Bios, &[], false)?
    } else {
        machine(&profile, &images, accel)
    };
    let status = xlfs_boot::interactive(&m)?;
    Ok(status.code().unwrap_or(1))
}

/// `xlfs up`: the main job. Check the host (installing what is missing), fetch, build, assemble
/// and boot-check a profile, then summarise.
pub fn up(app: &App, name: &str, jobs: Option<usize>) -> Result<i32> {
    let mut phases: Vec<(&str, Duration)> = Vec::new();
    let t = Instant::now();
    println!("==> doctor");
    if !crate::doctor::doctor(true, &app.home.root, true)? {
        bail!("this machine is not ready (see above)");
    }
    phases.push(("doctor", t.elapsed()));

    let (book, profile) = load_profile(app, name)?;
    let targets = profile.targets();
    let t = Instant::now();
    println!("==> fetch");
    crate::commands::fetch(app, &targets, true, 4)?;
    phases.push(("fetch", t.elapsed()));

    let t = Instant::now();
    println!("==> build");
    let code = crate::commands::build(
        app,
        crate::args::BuildArgs {
            targets: Vec::new(),
            // The profile, not just its targets: its host tuning goes into the keys.
            profile: Some(name.to_string()),
            jobs,
            keep_going: false,
            // The profile's `[profile] tests` still run.
            check: None,
            no_wait: false,
            no_runtime: false,
            push: false,
            cc: Default::default(),
        },
    )?;
    if code != 0 {
        return Ok(code);
    }
    phases.push(("build", t.elapsed()));

    let t = Instant::now();
    println!("==> images");
    let images = image(app, name)?;
    print_images(&images);
    phases.push(("images", t.elapsed()));

    let t = Instant::now();
    println!("==> boot --check");
    let report = boot_check(app, name, None)?;
    phases.push(("boot", t.elapsed()));

    println!("\n==> summary of `{name}`");
    let db = app.db()?;
    let closure = xlfs_plan::runtime_closure(&book, &targets);
    let records: Vec<_> = db
        .all_latest()?
        .into_iter()
        .filter(|r| closure.contains(&r.name))
        .collect();
    print!(
        "{}",
        xlfs_build::report::report(&records, book.config.sbu_reference.as_deref(), &|n: &str| {
            xlfs_build::report::chapter_of(&book, n)
        })
        .table()
    );
    print_images(&images);
    println!(
        "boot ({:?}, {}), console log {}:",
        report.accel,
        report.accel_reason,
        report.log.display()
    );
    for (what, at) in &report.marks {
        println!("  {:>7.1}s  {what}", at.as_secs_f64());
    }
    println!("phases:");
    for (p, d) in &phases {
        println!("  {p:<8} {:>8.1}s", d.as_secs_f64());
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `boot` runs the QEMU that `XLFS_QEMU` names, like every other QEMU use.
    #[test]
    fn boot_honours_xlfs_qemu() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../book/profiles/quick.toml");
        let text = std::fs::read_to_string(&root).unwrap();
        let (profile, diags) = xlfs_book::profile::parse_profile(&root, "quick", &text);
        assert!(diags.is_empty(), "{diags:?}");
        let profile = profile.unwrap();
        let images: Images = serde_json::from_value(serde_json::json!({
            "dir": "/i", "profile": "quick", "xen": "/i/xen", "xen_version": "4.17",
            "kernel": "/i/vmlinuz", "kernel_version": "6.12", "initramfs": "/i/dom0.cpio.gz",
            "host_ext4": "/i/dom0.ext4", "guests": [], "files": {}
        }))
        .unwrap();
        std::env::set_var(xlfs_boot::QEMU_ENV, "/opt/qemu/bin/qemu-system-x86_64");
        let m = machine(&profile, &images, Accel::Tcg);
        assert_eq!(m.qemu, PathBuf::from("/opt/qemu/bin/qemu-system-x86_64"));
        std::env::remove_var(xlfs_boot::QEMU_ENV);
        let m = machine(&profile, &images, Accel::Tcg);
        assert_eq!(m.qemu, PathBuf::from("qemu-system-x86_64"));
    }

    /// `xlfs report`'s dom0: the audit's size, ELF and setuid figures, its packages, its disk and
    /// the sockets its last check recorded; a profile without an audit (a guest-only image) has none.
    #[test]
    fn report_lists_dom0_with_its_audit_and_sockets() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("host");
        std::fs::create_dir_all(&dir).unwrap();
        let images = serde_json::json!({
            "dir": dir, "profile": "host", "xen": "xen", "xen_version": "4.17",
            "kernel": "vmlinuz", "kernel_version": "6.12", "initramfs": "", "host_ext4": "",
            "files": {}, "guests": [], "disk": dir.join("host-disk.img"),
            "packages": { "glibc": "listed", "openssh": "listed", "sudo": "listed" },
            "dom0_audit": { "unresolved": [], "build_paths": [], "python": [], "x11": [],
                "setuid": ["usr/bin/passwd", "usr/bin/su", "usr/bin/sudo"], "compilers": [],
                "bytes": 109515253, "elf_files": 719 }
        });
        std::fs::write(dir.join("images.json"), images.to_string()).unwrap();
        std::fs::write(dir.join("host-disk.img"), vec![0u8; 8192]).unwrap();
        let other = root.path().join("web");
        std::fs::create_dir_all(&other).unwrap();
        let guest_only = serde_json::json!({
            "dir": other, "profile": "web", "xen": "xen", "xen_version": "4.17",
            "kernel": "vmlinuz", "kernel_version": "6.12", "initramfs": "dom0.cpio.gz",
            "host_ext4": "dom0.ext4", "files": {}, "guests": []
        });
        std::fs::write(other.join("images.json"), guest_only.to_string()).unwrap();
        let before = dom0_report_table(&dom0_reports(&images_in(root.path()).unwrap()));
        assert!(
            before.contains("listening sockets: not listed yet (`xlfs boot host --check` lists them)"),
            "{before}"
        );
        std::fs::write(
            dir.join("dom0-sockets.txt"),
            "tcp LISTEN 0 0 0.0.0.0:22 0.0.0.0:*\ntcp LISTEN 0 0 *:22 *:*\n",
        )
        .unwrap();
        let dom0s = dom0_reports(&images_in(root.path()).unwrap());
        assert_eq!(dom0s.len(), 1, "the guest-only profile has no dom0 audit");
        let text = dom0_report_table(&dom0s);
        assert!(
            text.contains(
                "dom0 (host): root file system 104.4 MiB in 3 packages, 719 ELF files; disk image 8.0 KiB\n\
                 setuid/setgid: 3 (usr/bin/passwd usr/bin/su usr/bin/sudo)\n\
                 listening sockets at its last check:\n  tcp LISTEN 0 0 0.0.0.0:22 0.0.0.0:*\n"
            ),
            "{text}"
        );
    }

    /// `xlfs report`'s guests: image size, packages and the sockets the last check recorded.
    #[test]
    fn report_lists_each_guest_with_its_sockets() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("dns");
        std::fs::create_dir_all(&dir).unwrap();
        let images = serde_json::json!({
            "dir": dir, "profile": "dns", "xen": "xen", "xen_version": "4.17",
            "kernel": "vmlinuz", "kernel_version": "6.12", "initramfs": "dom0.cpio.gz",
            "host_ext4": "dom0.ext4", "files": {},
            "guests": [
                { "name": "ns1", "disk": "guest-ns1.ext4", "xl_cfg": "ns1.cfg",
                  "packages": ["bind", "busybox", "filesystem", "glibc-quick"],
                  "audit": { "unresolved": [], "build_paths": [], "setuid": [], "python": [], "x11": [],
                             "compilers": [], "bytes": 31457280, "elf_files": 40 } },
                { "name": "ns2", "disk": "guest-ns2.ext4", "xl_cfg": "ns2.cfg" }
            ]
        });
        std::fs::write(dir.join("images.json"), images.to_string()).unwrap();
        std::fs::write(dir.join("guest-ns1.ext4"), vec![0u8; 4096]).unwrap();
        std::fs::write(
            dir.join("ns1.sockets"),
            "Netid State  Local Address:Port\nudp   UNCONN 10.0.0.53:53\ntcp   LISTEN 127.0.0.1:953\n",
        )
        .unwrap();
        let guests = guest_reports(&images_in(root.path()).unwrap());
        assert_eq!(guests.len(), 2);
        assert_eq!(
            (guests[0].image_bytes, guests[0].files_bytes),
            (4096, Some(31457280))
        );
        let text = guest_report_table(&guests);
        assert!(text.contains("ns1 (dns)"), "{text}");
        assert!(text.contains("30.0 MiB"), "{text}");
        assert!(
            text.contains("packages bind busybox filesystem glibc-quick"),
            "{text}"
        );
        assert!(text.contains("  tcp   LISTEN 127.0.0.1:953\n"), "{text}");
        assert!(
            text.contains(
                "guest `ns2` (dns): packages \nlistening sockets: not listed (`xlfs boot dns --check` \
                 lists those of a guest made from a template)"
            ),
            "{text}"
        );
        let json = serde_json::to_value(&guests).unwrap();
        assert_eq!(json[0]["sockets"].as_str().unwrap().lines().count(), 3);
    }
}
