//! What to run: a QEMU x86-64 machine and its command line.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::BootError;

/// The environment variable that overrides the QEMU binary ([`default_qemu`]).
pub const QEMU_ENV: &str = "XLFS_QEMU";

/// The QEMU binary to use: `$XLFS_QEMU` if set, else `qemu-system-x86_64`
/// (looked up in `PATH`).
pub fn default_qemu() -> PathBuf {
    match std::env::var_os(QEMU_ENV) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from("qemu-system-x86_64"),
    }
}

/// Resolves a QEMU binary: a path with a `/` must exist, a bare name is looked
/// up in `PATH`. Errors with [`BootError::QemuNotFound`] (which says how to
/// install QEMU).
pub fn find_qemu(qemu: &Path) -> Result<PathBuf, BootError> {
    let not_found = || BootError::QemuNotFound {
        qemu: qemu.to_path_buf(),
    };
    if qemu.as_os_str().is_empty() {
        return Err(not_found());
    }
    if qemu.components().count() > 1 || qemu.is_absolute() {
        return if qemu.is_file() {
            Ok(qemu.to_path_buf())
        } else {
            Err(not_found())
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(qemu))
        .find(|p| is_executable(p))
        .ok_or_else(not_found)
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// The accelerator a machine runs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    /// Hardware virtualization through `/dev/kvm`.
    Kvm,
    /// QEMU's software emulator.
    Tcg,
}

impl Accel {
    /// `"kvm"` or `"tcg"`, as QEMU's `-accel` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }

    /// The CPU model to use with this accelerator: `host` under KVM,
    /// `qemu64` under TCG (not `max`: its SMAP breaks a Xen PV dom0).
    pub fn default_cpu(self) -> &'static str {
        match self {
            Accel::Kvm => "host",
            Accel::Tcg => "qemu64",
        }
    }
}

impl fmt::Display for Accel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the user asked for; [`crate::choose_accel`] turns it into an [`Accel`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccelPref {
    /// KVM if a probe guest really runs under it, else TCG.
    #[default]
    Auto,
    /// KVM, but still only if the probe passes (else TCG, with a reason).
    Kvm,
    /// TCG, without probing.
    Tcg,
}

impl fmt::Display for AccelPref {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AccelPref::Auto => "auto",
            AccelPref::Kvm => "kvm",
            AccelPref::Tcg => "tcg",
        })
    }
}

impl FromStr for AccelPref {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(AccelPref::Auto),
            "kvm" => Ok(AccelPref::Kvm),
            "tcg" => Ok(AccelPref::Tcg),
            _ => Err(format!("unknown accelerator {s:?} (want auto, kvm or tcg)")),
        }
    }
}

/// A disk attached to the machine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drive {
    /// The image file.
    pub path: PathBuf,
    /// QEMU's image format, normally `"raw"`.
    pub format: String,
    /// `"ide"` or `"virtio"` (QEMU's `if=`).
    pub interface: String,
    /// Attach read-only.
    pub readonly: bool,
}

impl Drive {
    /// A writable raw image on `interface` (`"ide"` or `"virtio"`).
    pub fn raw(path: impl Into<PathBuf>, interface: &str) -> Drive {
        Drive {
            path: path.into(),
            format: "raw".into(),
            interface: interface.into(),
            readonly: false,
        }
    }

    /// The `-drive` option value.
    pub fn arg(&self) -> String {
        let mut s = format!(
            "file={},format={},if={}",
            escape_commas(&self.path.to_string_lossy()),
            self.format,
            self.interface
        );
        if self.readonly {
            s.push_str(",readonly=on");
        }
        s
    }
}

/// A QEMU x86-64 machine: the accelerator, its size, what it boots.
///
/// With a `kernel`, QEMU loads it directly; for Xen that is the uncompressed
/// 32-bit multiboot ELF (`xen`), `append` holds Xen's command line and
/// `initrd` the multiboot modules (dom0 kernel with its command line, then
/// the initramfs). With an empty `kernel`, the machine boots from its drives
/// (add `-boot c` to `extra` to be explicit).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Machine {
    /// The QEMU binary (`qemu-system-x86_64`, looked up in `PATH`).
    pub qemu: PathBuf,
    /// The accelerator.
    pub accel: Accel,
    /// Guest memory in MiB.
    pub memory_mib: u32,
    /// Number of virtual CPUs.
    pub smp: u32,
    /// `-cpu` model (see [`Accel::default_cpu`]).
    pub cpu: String,
    /// `-machine` type, e.g. `"pc"`.
    pub machine: String,
    /// The kernel QEMU loads (`-kernel`); empty: boot from the drives.
    pub kernel: PathBuf,
    /// The kernel's command line (`-append`).
    pub append: String,
    /// Multiboot modules, each with its command line (`-initrd`).
    pub initrd: Vec<(PathBuf, String)>,
    /// Disks.
    pub drives: Vec<Drive>,
    /// A user-mode network card (`-nic user,model=e1000`); `false`: `-nic none`.
    pub net: bool,
    /// Further arguments, passed last, as they are.
    pub extra: Vec<String>,
}

impl Machine {
    /// A machine with the defaults: `pc`, the accelerator's default CPU,
    /// 1 GiB, 1 CPU, no kernel, no drives, no network, QEMU from
    /// [`default_qemu`].
    pub fn new(accel: Accel) -> Machine {
        Machine {
            qemu: default_qemu(),
            accel,
            memory_mib: 1024,
            smp: 1,
            cpu: accel.default_cpu().into(),
            machine: "pc".into(),
            kernel: PathBuf::new(),
            append: String::new(),
            initrd: Vec::new(),
            drives: Vec::new(),
            net: false,
            extra: Vec::new(),
        }
    }

    /// The `-initrd` value: each module as `path args`, commas escaped as
    /// `,,`, joined with `,` (QEMU's multiboot loader splits on single commas).
    pub fn initrd_arg(&self) -> String {
        self.initrd
            .iter()
            .map(|(path, args)| {
                let mut m = path.to_string_lossy().into_owned();
                if !args.is_empty() {
                    m.push(' ');
                    m.push_str(args);
                }
                escape_commas(&m)
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    /// QEMU's arguments (without the program name), with the serial console
    /// on stdio.
    pub fn args(&self) -> Vec<String> {
        self.args_with_serial("stdio")
    }

    /// QEMU's arguments with `-serial <serial>` (`"stdio"` for a piped
    /// console, `"mon:stdio"` for an interactive one).
    pub fn args_with_serial(&self, serial: &str) -> Vec<String> {
        let mut a: Vec<String> = Vec::new();
        let mut push = |xs: &[&str]| a.extend(xs.iter().map(|s| s.to_string()));
        push(&["-machine", &self.machine]);
        push(&["-accel", self.accel.as_str()]);
        push(&["-cpu", &self.cpu]);
        push(&["-m", &self.memory_mib.to_string()]);
        push(&["-smp", &self.smp.to_string()]);
        push(&["-nodefaults", "-nographic", "-display", "none"]);
        push(&["-serial", serial]);
        push(&["-no-reboot"]);
        if !self.kernel.as_os_str().is_empty() {
            push(&["-kernel", &self.kernel.to_string_lossy()]);
            if !self.append.is_empty() {
                push(&["-append", &self.append]);
            }
            if !self.initrd.is_empty() {
                push(&["-initrd", &self.initrd_arg()]);
            }
        }
        for d in &self.drives {
            push(&["-drive", &d.arg()]);
        }
        if self.net {
            push(&["-nic", "user,model=e1000"]);
        } else {
            push(&["-nic", "none"]);
        }
        a.extend(self.extra.iter().cloned());
        a
    }

    /// The whole command line, shell-quoted, for logs and "run it yourself"
    /// hints.
    pub fn command_line(&self) -> String {
        std::iter::once(self.qemu.to_string_lossy().into_owned())
            .chain(self.args())
            .map(|s| shell_quote(&s))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Checks what QEMU would only report late or confusingly: the kernel,
    /// modules and drives exist, and module paths hold no space (QEMU's
    /// multiboot loader ends the file name at the first space).
    pub fn validate(&self) -> Result<(), BootError> {
        let missing = |what: &str, p: &Path| {
            BootError::InvalidMachine(format!("{what} {} does not exist", p.display()))
        };
        let has_kernel = !self.kernel.as_os_str().is_empty();
        if has_kernel && !self.kernel.is_file() {
            return Err(missing("kernel", &self.kernel));
        }
        if !has_kernel && !self.initrd.is_empty() {
            return Err(BootError::InvalidMachine(
                "multiboot modules (initrd) given without a kernel".into(),
            ));
        }
        for (p, _) in &self.initrd {
            if !p.is_file() {
                return Err(missing("module", p));
            }
            if p.to_string_lossy().contains(char::is_whitespace) {
                return Err(BootError::InvalidMachine(format!(
                    "module path {:?} contains whitespace, which QEMU's multiboot loader cannot handle",
                    p.display()
                )));
            }
        }
        for d in &self.drives {
            if !d.path.exists() {
                return Err(missing("drive image", &d.path));
            }
        }
        if self.memory_mib == 0 || self.smp == 0 {
            return Err(BootError::InvalidMachine(
                "memory_mib and smp must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// Escapes `,` as `,,` for a QEMU option value.
pub fn escape_commas(s: &str) -> String {
    s.replace(',', ",,")
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xen_machine() -> Machine {
        let mut m = Machine::new(Accel::Tcg);
        m.qemu = "/usr/bin/qemu-system-x86_64".into();
        m.kernel = "/b/xen".into();
        m.append = "console=com1 com1=115200,8n1 dom0_mem=512M,max:512M".into();
        m.initrd = vec![
            (
                "/b/bzImage".into(),
                "console=hvc0 earlyprintk=xen,keep root=/dev/ram0".into(),
            ),
            ("/b/initramfs.cpio.gz".into(), String::new()),
        ];
        m
    }

    #[test]
    fn args_escape_commas_in_module_command_lines() {
        let a = xen_machine().args();
        let i = a.iter().position(|x| x == "-initrd").unwrap();
        assert_eq!(
            a[i + 1],
            "/b/bzImage console=hvc0 earlyprintk=xen,,keep root=/dev/ram0,/b/initramfs.cpio.gz"
        );
        // -append is a plain string: its commas stay as they are.
        let j = a.iter().position(|x| x == "-append").unwrap();
        assert_eq!(a[j + 1], "console=com1 com1=115200,8n1 dom0_mem=512M,max:512M");
        let k = a.iter().position(|x| x == "-kernel").unwrap();
        assert_eq!(a[k + 1], "/b/xen");
    }

    #[test]
    fn args_have_the_fixed_options() {
        let a = xen_machine().args();
        let s = a.join(" ");
        for want in [
            "-machine pc",
            "-accel tcg",
            "-cpu qemu64",
            "-m 1024",
            "-smp 1",
            "-nodefaults",
            "-nographic",
            "-display none",
            "-serial stdio",
            "-no-reboot",
            "-nic none",
        ] {
            assert!(s.contains(want), "{want:?} missing from {s}");
        }
        let i = xen_machine().args_with_serial("mon:stdio");
        assert!(i.join(" ").contains("-serial mon:stdio"));
    }

    #[test]
    fn drives_net_and_extra() {
        let mut m = Machine::new(Accel::Kvm);
        assert_eq!(m.cpu, "host");
        m.drives.push(Drive::raw("/img/a,b.img", "ide"));
        m.drives.push(Drive {
            readonly: true,
            ..Drive::raw("/img/root.img", "virtio")
        });
        m.net = true;
        m.extra = vec!["-boot".into(), "c".into()];
        let a = m.args();
        let s = a.join(" ");
        assert!(s.contains("-accel kvm -cpu host"));
        assert!(s.contains("-drive file=/img/a,,b.img,format=raw,if=ide"));
        assert!(s.contains("-drive file=/img/root.img,format=raw,if=virtio,readonly=on"));
        assert!(s.contains("-nic user,model=e1000"));
        assert!(!s.contains("-kernel"));
        assert_eq!(&a[a.len() - 2..], ["-boot", "c"]);
    }

    #[test]
    fn command_line_quotes() {
        let s = xen_machine().command_line();
        assert!(s.starts_with("/usr/bin/qemu-system-x86_64 -machine pc"));
        assert!(s.contains("-append 'console=com1 com1=115200,8n1 dom0_mem=512M,max:512M'"));
    }

    #[test]
    fn validate_catches_missing_files_and_spaces() {
        let m = xen_machine();
        assert!(matches!(m.validate(), Err(BootError::InvalidMachine(e)) if e.contains("/b/xen")));
        let dir = tempfile::tempdir().unwrap();
        let k = dir.path().join("xen");
        let sp = dir.path().join("bz Image");
        std::fs::write(&k, b"x").unwrap();
        std::fs::write(&sp, b"x").unwrap();
        let mut m = Machine::new(Accel::Tcg);
        m.kernel = k;
        m.validate().unwrap();
        m.initrd.push((sp, "console=hvc0".into()));
        let e = m.validate().unwrap_err().to_string();
        assert!(e.contains("whitespace"), "{e}");
    }

    #[test]
    fn accel_pref_parses_and_serializes() {
        assert_eq!("KVM".parse::<AccelPref>().unwrap(), AccelPref::Kvm);
        assert_eq!("auto".parse::<AccelPref>().unwrap(), AccelPref::Auto);
        assert!("xen".parse::<AccelPref>().is_err());
        assert_eq!(Accel::Tcg.to_string(), "tcg");
    }

    #[test]
    fn find_qemu_reports_how_to_install() {
        let e = find_qemu(Path::new("/nonexistent/qemu-system-x86_64")).unwrap_err();
        assert!(e.to_string().contains("apt-get install"), "{e}");
        let e = find_qemu(Path::new("no-such-qemu-binary-xlfs")).unwrap_err();
        assert!(matches!(e, BootError::QemuNotFound { .. }));
        assert!(find_qemu(Path::new("sh")).is_ok());
    }
}
