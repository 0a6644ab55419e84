//! Profiles: what a system is. `book/profiles/NAME.toml` describes the Xen host (its packages,
//! the Xen and Linux command lines, hostname, bridge) and its guests (kernel, root filesystem,
//! memory, vcpus, network), plus how to boot it for checks.
//!
//! ```toml
//! [profile]
//! summary = "Xen + dom0 + one PV guest, BusyBox userland"
//! [host]
//! hostname = "xlfs-host"
//! xen = "xen"
//! kernel = "linux"
//! packages = ["busybox", "xen-tools"]
//! xen-cmdline = "console=com1 com1=115200,8n1 dom0_mem=512M,max:512M"
//! linux-cmdline = "console=hvc0 earlyprintk=xen"
//! bridge = { name = "xenbr0", address = "10.0.0.1/24" }
//! [[guest]]
//! name = "demo"
//! kernel = "linux"
//! packages = ["busybox"]
//! memory = 128
//! network = { bridge = "xenbr0", address = "10.0.0.2/24", mac = "00:16:3e:00:00:02" }
//! ```

use crate::diag::{suggest, BookErrors, Diagnostic, Sink};
use crate::guest::{GuestTemplate, SettingValue};
pub use crate::machine::{IfAddress, Interface, Machine, RootPassword, Secret, Serial};
use crate::reader::{At, Reader};
use crate::Book;
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Cidr {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl Cidr {
    pub fn parse(s: &str) -> Option<Cidr> {
        let (a, p) = s.split_once('/')?;
        let addr: Ipv4Addr = a.parse().ok()?;
        let prefix: u8 = p.parse().ok()?;
        (1..=30).contains(&prefix).then_some(Cidr { addr, prefix })
    }
    pub fn netmask(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::MAX << (32 - self.prefix))
    }
    pub fn same_network(&self, other: &Cidr) -> bool {
        let m = u32::from(self.netmask());
        self.prefix == other.prefix && (u32::from(self.addr) & m) == (u32::from(other.addr) & m)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Bridge {
    pub name: String,
    pub address: Cidr,
}

/// The package whose artifact installs GRUB on a host's disk image (`host.disk-image`).
pub const GRUB_PACKAGE: &str = "grub";
/// The package whose artifact makes the disk boot under UEFI too (`host.uefi`).
pub const GRUB_EFI_PACKAGE: &str = "grub-efi";

#[derive(Debug, Clone, Serialize)]
pub struct Host {
    pub hostname: String,
    pub xen: String,
    pub kernel: String,
    pub packages: Vec<String>,
    pub xen_cmdline: String,
    pub linux_cmdline: String,
    pub bridge: Option<Bridge>,
    /// Directory of files copied over the root filesystem, relative to the profile file.
    pub overlay: Option<String>,
    /// The machine configuration (network, time, secrets, console, dom0 size).
    pub machine: Machine,
    /// `disk-image = true`: `xlfs image` also writes a GPT disk with GRUB (raw and qcow2);
    /// the book's `grub` package is then built too.
    pub disk_image: bool,
    /// `uefi = true`: the disk also has an EFI system partition with GRUB for UEFI (the book's
    /// `grub-efi`), so UEFI machines boot it as BIOS ones do; needs `disk-image = true`.
    pub uefi: bool,
    /// How dom0 runs: from a BusyBox initramfs (`init = "busybox"`, the quick profile), or
    /// from its disk with SysV init and the LFS boot scripts (`init = "sysv"`).
    pub init: Init,
    /// What the image keeps that a host image leaves out by default (`keep = [...]`).
    pub keep: Vec<Keep>,
    /// `[host.budget]`: the image's limits. With a budget the audit is fatal.
    pub budget: Option<Budget>,
}

/// How dom0 runs.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Init {
    /// BusyBox init from an initramfs, configured by a generated `rcS`.
    #[default]
    Busybox,
    /// SysV init on an ext4 root on the disk: the LFS boot scripts, `/etc/inittab` with a serial
    /// getty, `xencommons` and `xendomains`; needs `disk-image = true`.
    Sysv,
}

/// A class of files left out of a host image unless the profile keeps it.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum Keep {
    /// C headers, pkg-config and CMake files, aclocal macros.
    Headers,
    /// Static libraries, libtool archives, object files.
    Static,
    /// Manual pages, info, documentation, locales' message catalogues.
    Docs,
    /// Compilers, assemblers, linkers and build tools (gcc's programs, binutils, make...).
    Compilers,
    /// Debug information stays in the files (else it goes to `debug.tar.zst` next to the image).
    Debug,
}

impl Keep {
    pub const ALL: [(&'static str, Keep); 5] = [
        ("headers", Keep::Headers),
        ("static", Keep::Static),
        ("docs", Keep::Docs),
        ("compilers", Keep::Compilers),
        ("debug", Keep::Debug),
    ];
}

/// `[host.budget]`: what dom0's root file system may hold. Every interpreter and needed
/// library must resolve and no file may hold a build-machine path, whatever the numbers.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Budget {
    /// `root-size`: MiB of regular files.
    pub root_size_mib: u64,
    /// `setuid`: files with the setuid or setgid bit.
    pub setuid: usize,
    /// `python = true` allows Python.
    pub python: bool,
    /// `x11 = true` allows X11 client libraries.
    pub x11: bool,
    /// `compilers = true` allows compilers (also allowed by `keep = ["compilers"]`).
    pub compilers: bool,
}

impl Default for Budget {
    /// The issue's budget of a headless Xen host.
    fn default() -> Budget {
        Budget {
            root_size_mib: 150,
            setuid: 3,
            python: false,
            x11: false,
            compilers: false,
        }
    }
}

impl Host {
    /// Xen's command line: `xen-cmdline` plus what the machine configuration generates
    /// (serial console, `dom0_mem=`, `dom0_max_vcpus=`).
    pub fn xen_command_line(&self) -> String {
        let mut words: Vec<String> = self.xen_cmdline.split_whitespace().map(str::to_string).collect();
        words.extend(self.machine.xen_options());
        words.join(" ")
    }
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum GuestType {
    Pv,
    Pvh,
}

#[derive(Debug, Clone, Serialize)]
pub struct GuestNet {
    pub bridge: String,
    pub address: Cidr,
    /// Given, or derived from the guest's name ([`derive_mac`]).
    pub mac: String,
    pub gateway: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
}

/// A stable MAC address for a guest: Xen's OUI 00:16:3e, then the first bytes of
/// sha256("xlfs-guest-mac NAME") (the fourth byte below 0x80, as Xen's own range).
pub fn derive_mac(name: &str) -> String {
    let h = crate::sha256_hex(format!("xlfs-guest-mac {name}").as_bytes());
    let b = |i: usize| u8::from_str_radix(&h[2 * i..2 * i + 2], 16).unwrap_or(0);
    format!("00:16:3e:{:02x}:{:02x}:{:02x}", b(0) & 0x7f, b(1), b(2))
}

#[derive(Debug, Clone, Serialize)]
pub struct Guest {
    pub name: String,
    pub hostname: String,
    pub kind: GuestType,
    pub kernel: String,
    pub packages: Vec<String>,
    pub memory_mib: u32,
    pub vcpus: u32,
    pub disk_mib: u32,
    pub cmdline: String,
    pub network: Option<GuestNet>,
    pub overlay: Option<String>,
    pub autostart: bool,
    /// The guest template (`book/guests/NAME.toml`), if any; its packages are in `packages`
    /// once the profile is loaded.
    pub template: Option<String>,
    /// The template's settings: given ones, then defaults (after [`Profile::load`]).
    pub settings: BTreeMap<String, SettingValue>,
    /// Public keys for root's `authorized_keys`.
    pub ssh_keys: Vec<String>,
    /// Write the disk to a logical volume of this volume group on the host (`/dev/VG/NAME`)
    /// instead of a file in `/var/lib/xen/images`.
    pub lvm: Option<String>,
    /// Where each setting was written (line, column), for errors.
    #[serde(skip)]
    pub settings_at: BTreeMap<String, (usize, usize)>,
    /// Line of the guest's table.
    #[serde(skip)]
    pub line: usize,
}

impl Guest {
    /// The rendering context of the guest's template: `settings`, `guest`, `host`.
    pub fn context(&self, profile: &Profile) -> serde_json::Value {
        let net = self.network.as_ref();
        serde_json::json!({
            "settings": self.settings,
            "guest": {
                "name": self.name,
                "hostname": self.hostname,
                "address": net.map(|n| n.address.addr.to_string()),
                "prefix": net.map(|n| n.address.prefix),
                "netmask": net.map(|n| n.address.netmask().to_string()),
                "gateway": net.and_then(|n| n.gateway).map(|g| g.to_string()),
                "dns": net.map(|n| n.dns.iter().map(|d| d.to_string()).collect::<Vec<_>>()).unwrap_or_default(),
                "mac": net.map(|n| n.mac.clone()),
                "memory": self.memory_mib,
                "vcpus": self.vcpus,
            },
            "host": {
                "hostname": profile.host.hostname,
                "address": profile.host.bridge.as_ref().map(|b| b.address.addr.to_string()),
            },
        })
    }
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AccelChoice {
    Auto,
    Kvm,
    Tcg,
}

#[derive(Debug, Clone, Serialize)]
pub struct BootSettings {
    /// RAM of the QEMU machine, MiB.
    pub memory_mib: u32,
    pub cpus: u32,
    pub accel: AccelChoice,
    /// Overall budget for `boot --check`, seconds.
    pub timeout_s: u64,
    /// `check-credentials = true`: `xlfs image` also writes the boot check's disk
    /// (`host-check.qcow2`, a copy-on-write variant of the deliverable disk) with this home's
    /// boot-check key (`HOME/keys/boot-check/`, made once) in root's `authorized_keys` and its
    /// console password in `/etc/shadow`, so that `xlfs boot --check` can log in on the console
    /// and over SSH. The deliverable disk never holds them.
    pub check_credentials: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Profile {
    pub name: String,
    pub summary: String,
    /// `[profile] tests`: packages whose test suites run whenever they build for this profile
    /// (`xlfs build --profile`, `xlfs up`), judged by their recipes' `[build.tests]`.
    pub tests: Vec<AtLine>,
    #[serde(skip)]
    pub path: PathBuf,
    pub host: Host,
    pub guests: Vec<Guest>,
    pub boot: BootSettings,
    /// The guest templates the guests use (after [`Profile::load`]).
    #[serde(skip)]
    pub templates: BTreeMap<String, GuestTemplate>,
}

/// A value with the line and column it was read from (serialised as the value alone).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct AtLine {
    pub value: String,
    #[serde(skip)]
    pub line: usize,
    #[serde(skip)]
    pub col: usize,
}

impl Profile {
    /// The names in `[profile] tests`.
    pub fn test_names(&self) -> impl Iterator<Item = &str> {
        self.tests.iter().map(|t| t.value.as_str())
    }

    /// Every package the profile needs built (hosts, kernels, guests).
    pub fn targets(&self) -> Vec<String> {
        let mut t = vec![self.host.xen.clone(), self.host.kernel.clone()];
        t.extend(self.host.packages.iter().cloned());
        if self.host.disk_image {
            t.push(GRUB_PACKAGE.into());
        }
        if self.host.uefi {
            t.push(GRUB_EFI_PACKAGE.into());
        }
        for g in &self.guests {
            t.push(g.kernel.clone());
            t.extend(g.packages.iter().cloned());
        }
        t.sort();
        t.dedup();
        t
    }

    /// The directory that holds the profile file (overlays are relative to it).
    pub fn dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new(""))
    }

    /// Load `book/profiles/NAME.toml` and check it against the book.
    pub fn load(book: &Book, name: &str) -> Result<Profile, BookErrors> {
        let rel = PathBuf::from("profiles").join(format!("{name}.toml"));
        let full = book.root.join(&rel);
        let text = std::fs::read_to_string(&full).map_err(|e| {
            let known = list_profiles(&book.root);
            let help = suggest(name, known.iter().map(|s| s.as_str()))
                .map(|s| format!("did you mean `{s}`?"))
                .unwrap_or_else(|| format!("profiles in this book: {}", known.join(", ")));
            BookErrors(vec![Diagnostic {
                file: full.clone(),
                line: 0,
                col: 0,
                field: String::new(),
                message: format!("no profile `{name}`: {e}"),
                help: Some(help),
            }])
        })?;
        let (mut p, mut diags) = parse_profile(&full, name, &text);
        if let Some(p) = &mut p {
            diags.extend(p.resolve_templates(book));
            diags.extend(p.check(book));
        }
        match p {
            Some(p) if diags.is_empty() => Ok(p),
            _ => Err(BookErrors(diags)),
        }
    }

    /// Apply the guests' templates: their packages and kernel, their settings (checked, with
    /// defaults), and a rendering of every file for each guest.
    pub fn resolve_templates(&mut self, book: &Book) -> Vec<Diagnostic> {
        let mut d = Vec::new();
        let path = self.path.clone();
        for g in &mut self.guests {
            let Some(tname) = g.template.clone() else { continue };
            let Some(t) = book.guests.get(&tname) else {
                let known: Vec<&str> = book.guests.keys().map(|s| s.as_str()).collect();
                d.push(Diagnostic {
                    file: path.clone(),
                    line: g.line,
                    col: 0,
                    field: format!("guest.{}.template", g.name),
                    message: format!("no guest template `{tname}` in the book"),
                    help: Some(match suggest(&tname, known.iter().copied()) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None => format!("templates in book/guests/: {}", known.join(", ")),
                    }),
                });
                continue;
            };
            let mut packages = t.packages.clone();
            packages.extend(g.packages.iter().cloned());
            packages.dedup();
            g.packages = packages;
            if g.kernel.is_empty() {
                g.kernel = t.kernel.clone();
            }
            match t.resolve_settings(&g.settings) {
                Ok(s) => g.settings = s,
                Err(errs) => {
                    for (key, message, help) in errs {
                        let (line, col) = g.settings_at.get(&key).copied().unwrap_or((g.line, 0));
                        d.push(Diagnostic {
                            file: path.clone(),
                            line,
                            col,
                            field: format!("guest.{}.settings.{key}", g.name),
                            message,
                            help: Some(help),
                        });
                    }
                    continue;
                }
            }
            self.templates.insert(tname, t.clone());
        }
        // Render each template guest's files now, so that a bad value shows at load time.
        for g in &self.guests {
            let Some(t) = g.template.as_ref().and_then(|t| self.templates.get(t)) else {
                continue;
            };
            if let Err(errs) = t.render(&g.context(self)) {
                for mut e in errs {
                    e.message = format!("rendering for guest `{}`: {}", g.name, e.message);
                    d.push(e);
                }
            }
        }
        d
    }

    /// The template of a guest, if it has one (after [`Profile::load`]).
    pub fn template_of(&self, guest: &Guest) -> Option<&GuestTemplate> {
        self.templates.get(guest.template.as_deref()?)
    }

    /// Cross-checks against the book: every package exists.
    pub fn check(&self, book: &Book) -> Vec<Diagnostic> {
        let mut d = Vec::new();
        let mut need = |field: &str, pkg: &str| {
            if !book.recipes.contains_key(pkg) {
                d.push(Diagnostic {
                    file: self.path.clone(),
                    line: 0,
                    col: 0,
                    field: field.to_string(),
                    message: format!("unknown package `{pkg}`"),
                    help: suggest(pkg, book.recipes.keys().map(|s| s.as_str()))
                        .map(|s| format!("did you mean `{s}`?")),
                });
            }
        };
        need("host.xen", &self.host.xen);
        need("host.kernel", &self.host.kernel);
        if self.host.disk_image {
            need("host.disk-image", GRUB_PACKAGE);
        }
        if self.host.uefi {
            need("host.uefi", GRUB_EFI_PACKAGE);
        }
        for p in &self.host.packages {
            need("host.packages", p);
        }
        for (i, g) in self.guests.iter().enumerate() {
            need(&format!("guest[{i}].kernel"), &g.kernel);
            for p in &g.packages {
                need(&format!("guest[{i}].packages"), p);
            }
        }
        for t in &self.tests {
            let (message, help) = match book.recipes.get(&t.value) {
                None => (
                    format!("unknown package `{}`", t.value),
                    suggest(&t.value, book.recipes.keys().map(|s| s.as_str()))
                        .map(|s| format!("did you mean `{s}`?")),
                ),
                Some(r) if !r.has_suite() => (
                    format!(
                        "`{}` has no check step and no [build.tests] parts ({} runs no test suite)",
                        t.value,
                        r.path.display()
                    ),
                    Some(format!("remove `{}` from profile.tests", t.value)),
                ),
                Some(_) => continue,
            };
            d.push(Diagnostic {
                file: self.path.clone(),
                line: t.line,
                col: t.col,
                field: "profile.tests".into(),
                message,
                help,
            });
        }
        d
    }
}

/// Names of the profiles in a book.
pub fn list_profiles(book_root: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(book_root.join("profiles"))
        .map(|d| {
            d.flatten()
                .filter_map(|e| {
                    let p = e.path();
                    (p.extension()? == "toml")
                        .then(|| p.file_stem().unwrap_or_default().to_string_lossy().to_string())
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

pub(crate) fn valid_hostname(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

fn valid_mac(m: &str) -> bool {
    let parts: Vec<&str> = m.split(':').collect();
    parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && u8::from_str_radix(p, 16).is_ok())
        && u8::from_str_radix(parts[0], 16).is_ok_and(|b| b & 1 == 0)
}

fn hostname(sink: &mut Sink, r: &mut Reader, default: &str) -> String {
    match r.string(sink, "hostname") {
        Some(h) if valid_hostname(&h.value) => h.value,
        Some(h) => {
            sink.error(
                h.span,
                r.field("hostname"),
                format!("`{}` is not a valid hostname", h.value),
                Some("use letters, digits and '-', e.g. \"xlfs-host\"".into()),
            );
            default.to_string()
        }
        None => default.to_string(),
    }
}

fn number(sink: &mut Sink, r: &mut Reader, key: &str, default: u32, min: u32, max: u32, unit: &str) -> u32 {
    match r.integer(sink, key) {
        Some(At { value, span }) => {
            if value < min as i64 || value > max as i64 {
                sink.error(
                    span,
                    r.field(key),
                    format!("{value} is out of range"),
                    Some(format!("use a value between {min} and {max}{unit}")),
                );
                default
            } else {
                value as u32
            }
        }
        None => default,
    }
}

fn cidr(sink: &mut Sink, r: &mut Reader, key: &str) -> Option<Cidr> {
    let s = r.required_string(sink, key, "\"10.0.0.1/24\"")?;
    match Cidr::parse(&s.value) {
        Some(c) => Some(c),
        None => {
            sink.error(
                s.span,
                r.field(key),
                format!("`{}` is not an IPv4 address with a prefix length", s.value),
                Some("write it as ADDRESS/PREFIX, e.g. \"10.0.0.1/24\"".into()),
            );
            None
        }
    }
}

fn packages(sink: &mut Sink, r: &mut Reader) -> Vec<String> {
    r.string_list(sink, "packages")
        .unwrap_or_default()
        .into_iter()
        .map(|a| a.value)
        .collect()
}

/// Parse a profile file (no cross-checks against the book).
pub fn parse_profile(path: &Path, name: &str, text: &str) -> (Option<Profile>, Vec<Diagnostic>) {
    let mut sink = Sink::new(path, text);
    let Some(doc) = crate::reader::parse_document(&mut sink, text) else {
        return (None, sink.diags);
    };
    let mut top = Reader::new(doc.as_table(), Some(0..0), "");
    let mut summary = String::new();
    let mut tests = Vec::new();
    if let Some(mut p) = top.table(&mut sink, "profile") {
        summary = p
            .string(&mut sink, "summary")
            .map(|s| s.value)
            .unwrap_or_default();
        for t in p.string_list(&mut sink, "tests").unwrap_or_default() {
            let (line, col) = t.span.map(|s| sink.line_col(s.start)).unwrap_or((0, 0));
            tests.push(AtLine {
                value: t.value,
                line,
                col,
            });
        }
        p.finish(&mut sink, &["summary", "tests"]);
    }

    let mut host = Host {
        hostname: "xlfs".into(),
        xen: String::new(),
        kernel: String::new(),
        packages: Vec::new(),
        xen_cmdline: String::new(),
        linux_cmdline: String::new(),
        bridge: None,
        overlay: None,
        machine: Machine::default(),
        disk_image: false,
        uefi: false,
        init: Init::Busybox,
        keep: Vec::new(),
        budget: None,
    };
    match top.table(&mut sink, "host") {
        Some(mut h) => {
            host.hostname = hostname(&mut sink, &mut h, "xlfs");
            host.xen = h
                .required_string(&mut sink, "xen", "\"xen\"")
                .map(|s| s.value)
                .unwrap_or_default();
            host.kernel = h
                .required_string(&mut sink, "kernel", "\"linux\"")
                .map(|s| s.value)
                .unwrap_or_default();
            host.packages = packages(&mut sink, &mut h);
            // With host.serial, Xen's console comes from there and xen-cmdline may be left out.
            let xen_cmdline = if h.has("serial") {
                h.string(&mut sink, "xen-cmdline")
            } else {
                h.required_string(
                    &mut sink,
                    "xen-cmdline",
                    "\"console=com1 com1=115200,8n1 dom0_mem=512M\"",
                )
            };
            host.linux_cmdline = h
                .string(&mut sink, "linux-cmdline")
                .map(|s| s.value)
                .unwrap_or_default();
            host.overlay = overlay(&mut sink, &mut h);
            host.disk_image = h.boolean(&mut sink, "disk-image").unwrap_or(false);
            if let Some(u) = h.boolean_at(&mut sink, "uefi") {
                host.uefi = u.value;
                if u.value && !host.disk_image {
                    sink.error(
                        u.span,
                        h.field("uefi"),
                        "UEFI boots a disk, but the profile writes none",
                        Some("add `disk-image = true` to [host], or remove `uefi`".into()),
                    );
                }
            }
            if let Some(i) = h.string(&mut sink, "init") {
                match i.value.as_str() {
                    "busybox" => host.init = Init::Busybox,
                    "sysv" => host.init = Init::Sysv,
                    other => sink.error(
                        i.span.clone(),
                        h.field("init"),
                        format!("unknown init `{other}`"),
                        Some(
                            "use \"sysv\" (root on the disk, LFS boot scripts) or \"busybox\" (initramfs)"
                                .into(),
                        ),
                    ),
                }
                if host.init == Init::Sysv && !host.disk_image {
                    sink.error(
                        i.span,
                        h.field("init"),
                        "a SysV host runs from its disk, but the profile writes none",
                        Some("add `disk-image = true` to [host]".into()),
                    );
                }
            }
            for k in h.string_list(&mut sink, "keep").unwrap_or_default() {
                match Keep::ALL.iter().find(|(n, _)| *n == k.value) {
                    Some((_, c)) => host.keep.push(*c),
                    None => sink.error(
                        k.span,
                        h.field("keep"),
                        format!("unknown class of files `{}`", k.value),
                        Some(format!(
                            "use some of: {}",
                            Keep::ALL.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
                        )),
                    ),
                }
            }
            host.keep.sort();
            host.keep.dedup();
            if let Some(mut b) = h.table(&mut sink, "budget") {
                let d = Budget::default();
                host.budget = Some(Budget {
                    root_size_mib: number(
                        &mut sink,
                        &mut b,
                        "root-size",
                        d.root_size_mib as u32,
                        8,
                        1 << 20,
                        " MiB",
                    ) as u64,
                    setuid: number(&mut sink, &mut b, "setuid", d.setuid as u32, 0, 10000, "") as usize,
                    python: b.boolean(&mut sink, "python").unwrap_or(false),
                    x11: b.boolean(&mut sink, "x11").unwrap_or(false),
                    compilers: b.boolean(&mut sink, "compilers").unwrap_or(false),
                });
                b.finish(&mut sink, &["root-size", "setuid", "python", "x11", "compilers"]);
            }
            if let Some(mut b) = h.table(&mut sink, "bridge") {
                let name = b.required_string(&mut sink, "name", "\"xenbr0\"");
                let address = cidr(&mut sink, &mut b, "address");
                b.finish(&mut sink, &["name", "address"]);
                if let (Some(n), Some(a)) = (name, address) {
                    host.bridge = Some(Bridge {
                        name: n.value,
                        address: a,
                    });
                }
            }
            host.machine = crate::machine::read(&mut sink, &mut h, host.bridge.as_ref());
            if let Some(x) = &xen_cmdline {
                crate::machine::check_xen_cmdline(&mut sink, &host.machine, x);
            }
            host.xen_cmdline = xen_cmdline.map(|s| s.value).unwrap_or_default();
            if !host.xen_command_line().contains("console=") && (h.has("serial") || h.has("xen-cmdline")) {
                sink.error(
                    h.span(),
                    "host.xen-cmdline",
                    "Xen has no console= setting, so its messages would go nowhere",
                    Some("add console=com1 com1=115200,8n1 for a serial console".into()),
                );
            }
            let mut known = vec![
                "hostname",
                "xen",
                "kernel",
                "packages",
                "xen-cmdline",
                "linux-cmdline",
                "bridge",
                "overlay",
                "disk-image",
                "init",
                "keep",
                "budget",
            ];
            known.extend(crate::machine::KEYS);
            h.finish(&mut sink, &known);
        }
        None => {
            if !top.has("host") {
                sink.error(
                    Some(0..0),
                    "host",
                    "missing [host] table",
                    Some("describe the Xen host in [host]".into()),
                );
            }
        }
    }

    let mut guests: Vec<Guest> = Vec::new();
    for mut g in top.tables(&mut sink, "guest") {
        let gname = g.required_string(&mut sink, "name", "\"demo\"");
        let gname = match gname {
            Some(n) if crate::is_valid_name(&n.value) => n.value,
            Some(n) => {
                sink.error(
                    n.span,
                    g.field("name"),
                    format!("`{}` is not a valid guest name", n.value),
                    Some("use lowercase letters, digits and '-'".into()),
                );
                continue;
            }
            None => continue,
        };
        if guests.iter().any(|o| o.name == gname) {
            sink.error(
                g.span(),
                g.field("name"),
                format!("two guests are named `{gname}`"),
                None,
            );
        }
        let (line, _) = g.span().map(|s| sink.line_col(s.start)).unwrap_or((0, 0));
        let template = g.string(&mut sink, "template");
        if let Some(t) = &template {
            if !crate::is_valid_name(&t.value) {
                sink.error(
                    t.span.clone(),
                    g.field("template"),
                    format!("`{}` is not a valid template name", t.value),
                    Some("name a file of book/guests/ without `.toml`".into()),
                );
            }
        }
        let kind = match g.string(&mut sink, "type") {
            None => GuestType::Pvh,
            Some(t) => {
                match t.value.as_str() {
                    "pv" => GuestType::Pv,
                    "pvh" => GuestType::Pvh,
                    other => {
                        sink.error(
                        t.span,
                        g.field("type"),
                        format!("unknown guest type `{other}`"),
                        Some("use \"pv\" or \"pvh\" (HVM needs a device model, which xlfs hosts do not ship)".into()),
                    );
                        GuestType::Pv
                    }
                }
            }
        };
        let hostname = hostname(&mut sink, &mut g, &gname);
        let kernel = if template.is_some() {
            g.string(&mut sink, "kernel").map(|s| s.value).unwrap_or_default()
        } else {
            g.required_string(&mut sink, "kernel", "\"linux\"")
                .map(|s| s.value)
                .unwrap_or_default()
        };
        let packages = packages(&mut sink, &mut g);
        let mut settings_at = BTreeMap::new();
        let mut settings = BTreeMap::new();
        if let Some(mut st) = g.table(&mut sink, "settings") {
            if template.is_none() {
                sink.error(
                    st.span(),
                    g.field("settings"),
                    "settings without a template",
                    Some("add `template = \"NAME\"` (a file of book/guests/)".into()),
                );
            }
            for (k, v) in crate::guest::read_settings(&mut sink, &mut st) {
                settings_at.insert(k.clone(), (v.line, v.col));
                settings.insert(k, v.value);
            }
        }
        let ssh_keys: Vec<String> = g
            .string_list(&mut sink, "ssh-keys")
            .unwrap_or_default()
            .into_iter()
            .filter_map(|k| {
                let ok = k.value.split_whitespace().count() >= 2
                    && k.value.starts_with(|c: char| c.is_ascii_alphabetic())
                    && !k.value.contains('\n');
                if !ok {
                    sink.error(
                        k.span.clone(),
                        g.field("ssh-keys"),
                        "not an OpenSSH public key line",
                        Some("give the one line of a .pub file: \"ssh-ed25519 AAAA… comment\"".into()),
                    );
                }
                if k.value.contains("PRIVATE KEY") {
                    sink.error(
                        k.span,
                        g.field("ssh-keys"),
                        "this is a private key",
                        Some("give the public key (the .pub file)".into()),
                    );
                    return None;
                }
                ok.then_some(k.value)
            })
            .collect();
        let lvm = g.string(&mut sink, "lvm").and_then(|v| {
            let ok = !v.value.is_empty()
                && v.value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+_.-".contains(c))
                && !v.value.starts_with('-');
            if !ok {
                sink.error(
                    v.span,
                    g.field("lvm"),
                    format!("`{}` is not a volume group name", v.value),
                    Some("name the host's LVM volume group, e.g. \"vg0\"".into()),
                );
            }
            ok.then_some(v.value)
        });
        let memory_mib = number(&mut sink, &mut g, "memory", 128, 32, 65536, " MiB");
        let vcpus = number(&mut sink, &mut g, "vcpus", 1, 1, 64, "");
        let disk_mib = number(&mut sink, &mut g, "disk-size", 64, 8, 1 << 20, " MiB");
        let cmdline = g
            .string(&mut sink, "cmdline")
            .map(|s| s.value)
            .unwrap_or_default();
        let overlay = overlay(&mut sink, &mut g);
        let autostart = g.boolean(&mut sink, "autostart").unwrap_or(false);
        let mut network = None;
        if let Some(mut n) = g.table(&mut sink, "network") {
            let bridge = n.required_string(&mut sink, "bridge", "\"xenbr0\"");
            let address = cidr(&mut sink, &mut n, "address");
            let mac = n.string(&mut sink, "mac");
            let gateway = n
                .string(&mut sink, "gateway")
                .and_then(|v| match v.value.parse::<Ipv4Addr>() {
                    Ok(a) => Some(a),
                    Err(_) => {
                        sink.error(
                            v.span,
                            n.field("gateway"),
                            format!("`{}` is not an IPv4 address", v.value),
                            Some("e.g. \"10.0.0.1\"".into()),
                        );
                        None
                    }
                });
            let dns: Vec<Ipv4Addr> = n
                .string_list(&mut sink, "dns")
                .unwrap_or_default()
                .into_iter()
                .filter_map(|v| match v.value.parse::<Ipv4Addr>() {
                    Ok(a) => Some(a),
                    Err(_) => {
                        sink.error(
                            v.span,
                            n.field("dns"),
                            format!("`{}` is not an IPv4 address", v.value),
                            Some("e.g. [\"10.0.0.1\"]".into()),
                        );
                        None
                    }
                })
                .collect();
            if let Some(m) = &mac {
                if !valid_mac(&m.value) {
                    sink.error(
                        m.span.clone(),
                        n.field("mac"),
                        format!("`{}` is not a unicast MAC address", m.value),
                        Some("use six hex pairs in Xen's range, e.g. \"00:16:3e:00:00:02\"".into()),
                    );
                }
            }
            if let Some(b) = &bridge {
                match &host.bridge {
                    Some(hb) if hb.name == b.value => {
                        if let Some(a) = &address {
                            if !hb.address.same_network(a) {
                                sink.error(
                                    n.span(),
                                    n.field("address"),
                                    format!("{a} is not in the bridge's network {}", hb.address),
                                    None,
                                );
                            } else if hb.address.addr == a.addr {
                                sink.error(
                                    n.span(),
                                    n.field("address"),
                                    format!("{a} is the host's own address"),
                                    None,
                                );
                            }
                        }
                    }
                    Some(hb) => sink.error(
                        b.span.clone(),
                        n.field("bridge"),
                        format!("no bridge `{}` on the host", b.value),
                        Some(format!("the host's bridge is `{}`", hb.name)),
                    ),
                    None => sink.error(
                        b.span.clone(),
                        n.field("bridge"),
                        format!("the host has no bridge for `{}`", b.value),
                        Some("add host.bridge = { name = \"xenbr0\", address = \"10.0.0.1/24\" }".into()),
                    ),
                }
            }
            n.finish(&mut sink, &["bridge", "address", "mac", "gateway", "dns"]);
            if let (Some(b), Some(a)) = (bridge, address) {
                network = Some(GuestNet {
                    bridge: b.value,
                    address: a,
                    mac: mac
                        .map(|m| m.value.to_lowercase())
                        .unwrap_or_else(|| derive_mac(&gname)),
                    gateway,
                    dns,
                });
            }
        }
        let (gspan, netfield) = (g.span(), g.field("network"));
        g.finish(
            &mut sink,
            &[
                "name",
                "type",
                "hostname",
                "kernel",
                "packages",
                "memory",
                "vcpus",
                "disk-size",
                "cmdline",
                "network",
                "overlay",
                "autostart",
                "template",
                "settings",
                "ssh-keys",
                "lvm",
            ],
        );
        if let Some(n) = &network {
            if let Some(o) = guests.iter().find(|o| {
                o.network
                    .as_ref()
                    .is_some_and(|m| m.mac == n.mac || m.address.addr == n.address.addr)
            }) {
                sink.error(gspan, netfield, format!("guest `{gname}` has the MAC or address of guest `{}`", o.name), Some("give each guest its own address (and MAC, or leave `mac` out to derive it from the name)".into()));
            }
        }
        guests.push(Guest {
            name: gname,
            hostname,
            kind,
            kernel,
            packages,
            memory_mib,
            vcpus,
            disk_mib,
            cmdline,
            network,
            overlay,
            autostart,
            template: template.map(|t| t.value),
            settings,
            ssh_keys,
            lvm,
            settings_at,
            line,
        });
    }

    let mut boot = BootSettings {
        memory_mib: 2048,
        cpus: 2,
        accel: AccelChoice::Auto,
        timeout_s: 600,
        check_credentials: false,
    };
    if let Some(mut b) = top.table(&mut sink, "boot") {
        boot.memory_mib = number(&mut sink, &mut b, "memory", 2048, 256, 1 << 20, " MiB");
        boot.cpus = number(&mut sink, &mut b, "cpus", 2, 1, 64, "");
        boot.timeout_s = number(&mut sink, &mut b, "timeout", 600, 10, 86400, " seconds") as u64;
        boot.check_credentials = b.boolean(&mut sink, "check-credentials").unwrap_or(false);
        if let Some(a) = b.string(&mut sink, "accel") {
            boot.accel = match a.value.as_str() {
                "auto" => AccelChoice::Auto,
                "kvm" => AccelChoice::Kvm,
                "tcg" => AccelChoice::Tcg,
                other => {
                    sink.error(
                        a.span,
                        "boot.accel",
                        format!("unknown accelerator `{other}`"),
                        Some("use \"auto\" (KVM when it really works, else TCG), \"kvm\" or \"tcg\"".into()),
                    );
                    AccelChoice::Auto
                }
            };
        }
        b.finish(
            &mut sink,
            &["memory", "cpus", "accel", "timeout", "check-credentials"],
        );
    }
    let guest_mem: u32 = guests.iter().map(|g| g.memory_mib).sum();
    if guest_mem + 256 > boot.memory_mib {
        sink.error(
            Some(0..0),
            "boot.memory",
            format!(
                "the machine has {} MiB but the guests alone need {guest_mem} MiB (plus dom0)",
                boot.memory_mib
            ),
            Some("raise boot.memory or lower the guests' memory".into()),
        );
    }
    top.finish(&mut sink, &["profile", "host", "guest", "boot"]);
    let p = Profile {
        name: name.to_string(),
        summary,
        tests,
        path: path.to_path_buf(),
        host,
        guests,
        boot,
        templates: BTreeMap::new(),
    };
    let ok = sink.diags.is_empty();
    (ok.then_some(p), sink.diags)
}

/// `overlay`: a directory relative to the profile's own directory that stays inside it.
fn overlay(sink: &mut Sink, r: &mut Reader) -> Option<String> {
    let o = r.string(sink, "overlay")?;
    crate::recipe::check_relative(
        sink,
        r.field("overlay"),
        &o,
        "the profile's directory",
        "name a directory next to the profile (or below its directory), e.g. \"overlays/host\", without `/` at the start, `..` or `.`",
    )
    .then_some(())?;
    // The profile's directory on disk, when it is read from one.
    let dir = sink.file.parent().filter(|d| d.is_dir())?;
    if let Some(real) = crate::recipe::escapes_through_link(dir, &o.value) {
        sink.error(
            o.span,
            r.field("overlay"),
            format!(
                "`{}` leads through a symbolic link to {}, outside the profile's directory",
                o.value,
                real.display()
            ),
            Some("copy the files into the book instead of linking to them".into()),
        );
        return None;
    }
    Some(o.value)
}
