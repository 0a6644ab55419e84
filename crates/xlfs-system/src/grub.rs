//! GRUB's configuration for a host's disk image, and the boot watchdog around it. Pure.
//!
//! Three entries: `xen` (the default: Xen by `multiboot2`, the dom0 kernel and initrd as
//! `module2`s), `linux` (plain Linux on the same root, the fallback when Xen does not load) and
//! `xen-debug` (all of Xen's and Linux's messages, synchronous console). The serial console is
//! on in GRUB, Xen and Linux together with the 80x25 text console.
//!
//! **Boot watchdog** (the seed's 180-second rollback). `/boot/grub/grubenv` holds
//! `saved_entry`, the entry known to boot, and may hold `next_entry`, an entry to try once
//! (a new hypervisor or kernel). GRUB boots `next_entry` once, erasing it from grubenv before
//! it boots, and tells the system with `xlfs.trial=1` on the kernel command line. The
//! system's early boot then runs [`WATCHDOG_SCRIPT`] (`xlfs-boot-watchdog`): on a trial boot it
//! reboots the machine unless `xlfs-boot-ok` has run within the set time. `xlfs-boot-ok`, the
//! last step of reaching multi-user, records the booted entry (`xlfs.entry=` on the command
//! line) as `saved_entry`. A trial that hangs, panics or is rebooted by the watchdog therefore
//! comes back on the previous `saved_entry`; GRUB's `fallback` covers an entry that fails to
//! load at all.

use xlfs_book::profile::{Profile, Serial};

/// Where the host's boot files are, as GRUB sees them on the root partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootFiles {
    /// The hypervisor, e.g. `/boot/xen.gz`.
    pub xen: String,
    /// The dom0 (and plain) Linux kernel, e.g. `/boot/vmlinuz`.
    pub kernel: String,
    pub initrd: Option<String>,
    /// Linux's `root=`, e.g. `PARTUUID=…` of the root partition, mounted read-only for the boot
    /// scripts to check; `None` when the system runs from its initramfs.
    pub root: Option<String>,
}

/// Seconds a trial boot has to reach multi-user when the profile does not say.
pub const DEFAULT_WATCHDOG_S: u32 = 180;

/// The serial console of the profile's host (com1 at 115200 when it does not set one).
fn serial(profile: &Profile) -> Serial {
    profile.host.machine.serial.clone().unwrap_or_default()
}

fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_string).collect()
}

/// GRUB quoting: one word in single quotes.
fn q(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The start of grub.cfg that picks the entry: `next_entry` once (erased from grubenv before
/// it boots, `xlfs_trial=1`), else `saved_entry`, else `xen`; `fallback` is the known-good
/// entry, then plain Linux.
pub const WATCHDOG_PRELUDE: &str = r#"
# Boot watchdog: next_entry is tried once; saved_entry is the entry known to boot.
set default=xen
set xlfs_trial=0
if [ -s $prefix/grubenv ]; then
  load_env
fi
if [ -n "${next_entry}" ]; then
  set default="${next_entry}"
  set next_entry=
  save_env next_entry
  set xlfs_trial=1
elif [ -n "${saved_entry}" ]; then
  set default="${saved_entry}"
fi
export xlfs_trial
if [ -n "${saved_entry}" ]; then
  set fallback="${saved_entry} linux"
else
  set fallback=linux
fi
"#;

/// `/boot/grub/grub.cfg`.
pub fn grub_cfg(profile: &Profile, files: &BootFiles) -> String {
    let s = serial(profile);
    let mut xen = words(&profile.host.xen_command_line());
    if !xen.iter().any(|w| w.starts_with("console=")) {
        xen.push(format!("console={},vga", s.xen()));
        xen.push(format!("{}={},8n1", s.xen(), s.speed));
    }
    if !xen.iter().any(|w| w.starts_with("vga=")) {
        xen.push("vga=text-80x25".into());
    }
    let mut dom0 = words(&profile.host.linux_cmdline);
    dom0.retain(|w| !w.starts_with("console=") && !w.starts_with("root="));
    // Read-only, as LFS boots: the boot scripts check it (checkfs: e2fsck refuses a file system
    // mounted read-write), then remount it read-write (mountfs).
    let root: Vec<String> = files.root.iter().map(|r| format!("root={r} ro")).collect();
    // The last console= is /dev/console: the serial one.
    let dom0_line = |extra: &[&str], entry: &str| {
        let mut l = root.clone();
        l.extend(["console=tty0".to_string(), "console=hvc0".to_string()]);
        l.extend(dom0.iter().cloned());
        l.extend(extra.iter().map(|e| e.to_string()));
        l.push(format!("xlfs.entry={entry}"));
        l.push("xlfs.trial=${xlfs_trial}".into());
        l.join(" ")
    };
    let mut plain = root.clone();
    plain.extend([
        "console=tty0".to_string(),
        format!("console={},{}n8", s.linux(), s.speed),
        "xlfs.entry=linux".into(),
        "xlfs.trial=${xlfs_trial}".into(),
    ]);
    let plain = plain.join(" ");
    let mut debug_xen = xen.clone();
    for w in [
        "loglvl=all",
        "guest_loglvl=all",
        "sync_console",
        "console_to_ring",
    ] {
        let key = w.split('=').next().unwrap_or(w);
        debug_xen.retain(|x| x.split('=').next() != Some(key));
        debug_xen.push(w.into());
    }

    let mut c = format!(
        "# grub.cfg: generated by xlfs from profile `{}`; the boot watchdog is described in\n\
         # crates/xlfs-system/src/grub.rs. Edit the profile, not this file.\n",
        profile.name
    );
    c.push_str(&format!(
        "serial --unit={} --speed={} --word=8 --parity=no --stop=1\n\
         terminal_input serial console\n\
         terminal_output serial console\n\
         set gfxpayload=text\n\
         set timeout=5\n\
         set timeout_style=menu\n",
        s.unit(),
        s.speed
    ));
    c.push_str(WATCHDOG_PRELUDE);
    let initrd_module = files
        .initrd
        .as_ref()
        .map(|i| format!("  module2 --nounzip {}\n", q(i)))
        .unwrap_or_default();
    let xen_entry = |id: &str, title: &str, xen: &[String], dom0: String| {
        format!(
            "\nmenuentry {} --id {id} {{\n\
             \x20 insmod part_gpt\n\
             \x20 insmod ext2\n\
             \x20 insmod multiboot2\n\
             \x20 echo {}\n\
             \x20 multiboot2 {} {}\n\
             \x20 module2 {} {}\n\
             {initrd_module}}}\n",
            q(title),
            q(&format!("Loading {title}")),
            q(&files.xen),
            xen.join(" "),
            q(&files.kernel),
            dom0,
        )
    };
    c.push_str(&xen_entry(
        "xen",
        &format!("Xen with Linux dom0 ({})", profile.name),
        &xen,
        dom0_line(&[], "xen"),
    ));
    c.push_str(&format!(
        "\nmenuentry {} --id linux {{\n\
         \x20 insmod part_gpt\n\
         \x20 insmod ext2\n\
         \x20 insmod linux\n\
         \x20 linux {} {plain}\n",
        q(&format!("Linux without Xen ({})", profile.name)),
        q(&files.kernel),
    ));
    if let Some(i) = &files.initrd {
        c.push_str(&format!("  initrd {}\n", q(i)));
    }
    c.push_str("}\n");
    c.push_str(&xen_entry(
        "xen-debug",
        &format!("Xen with Linux dom0, debug output ({})", profile.name),
        &debug_xen,
        dom0_line(&["ignore_loglevel", "earlyprintk=xen"], "xen-debug"),
    ));
    c
}

/// A GRUB environment block (`grubenv`): exactly 1024 bytes, `#`-padded.
pub fn grubenv(vars: &[(&str, &str)]) -> Vec<u8> {
    let mut s = String::from("# GRUB Environment Block\n");
    for (k, v) in vars {
        s.push_str(&format!("{k}={v}\n"));
    }
    let mut b = s.into_bytes();
    assert!(b.len() <= 1024, "grubenv variables exceed the 1024-byte block");
    b.resize(1024, b'#');
    b
}

/// `usr/sbin/xlfs-boot-ok`: run last when multi-user is reached. Records the booted entry as
/// GRUB's `saved_entry` and disarms the watchdog. Rewrites grubenv in place (same size, same
/// blocks, `conv=notrunc`), as GRUB's own `save_env` requires, so no GRUB tool is needed in dom0.
pub const BOOT_OK_SCRIPT: &str = r#"#!/bin/sh
# xlfs-boot-ok: the system reached multi-user. Make the entry it booted GRUB's default and
# disarm the boot watchdog (see xlfs-boot-watchdog). Generated by xlfs.
env=${XLFS_GRUBENV:-/boot/grub/grubenv}
run=${XLFS_RUN:-/run}
entry=
for w in $(cat "${XLFS_CMDLINE:-/proc/cmdline}"); do
  case "$w" in xlfs.entry=*) entry=${w#xlfs.entry=} ;; esac
done
touch "$run/xlfs-boot-ok"
[ -n "$entry" ] && [ -f "$env" ] || exit 0
case "$entry" in *[!a-z0-9-]*) echo "xlfs-boot-ok: odd entry name '$entry'" >&2; exit 1 ;; esac
# Keep every variable but saved_entry and next_entry (GRUB erased next_entry already).
vars=$(grep -v -e '^#' -e '^saved_entry=' -e '^next_entry=' "$env")
# (Command substitution drops the last newline; it is printed back below.)
block=$(printf '# GRUB Environment Block\n%s%ssaved_entry=%s' "$vars" "${vars:+
}" "$entry")
size=$(printf '%s\n' "$block" | wc -c)
[ "$size" -le 1024 ] || { echo "xlfs-boot-ok: $env would not fit in 1024 bytes" >&2; exit 1; }
{ printf '%s\n' "$block"; head -c $((1024 - size)) /dev/zero | tr '\0' '#'; } |
  dd of="$env" conv=notrunc bs=1024 count=1 2>/dev/null
sync
echo "xlfs-boot-ok: GRUB's default is now '$entry'"
"#;

/// `usr/sbin/xlfs-boot-watchdog SECONDS`: run early in boot. On a trial boot
/// (`xlfs.trial=1`), reboot unless `xlfs-boot-ok` has run within SECONDS; GRUB then boots
/// `saved_entry`, the previous entry.
pub const WATCHDOG_SCRIPT: &str = r#"#!/bin/sh
# xlfs-boot-watchdog SECONDS: on a trial boot of a new entry (xlfs.trial=1 from GRUB), reboot
# unless xlfs-boot-ok runs within SECONDS. GRUB boots the previous entry then. Generated by xlfs.
limit=${1:-180}
run=${XLFS_RUN:-/run}
grep -qw 'xlfs.trial=1' "${XLFS_CMDLINE:-/proc/cmdline}" || exit 0
echo "xlfs-boot-watchdog: trial boot; multi-user must be reached within ${limit}s"
(
  sleep "$limit"
  if [ ! -e "$run/xlfs-boot-ok" ]; then
    echo "xlfs-boot-watchdog: multi-user not reached in ${limit}s; rebooting to the previous entry" >/dev/console
    sync
    reboot -f
  fi
) </dev/null >/dev/null 2>&1 &
"#;

/// The watchdog's two scripts, for the host's root filesystem (its boot scripts run
/// `xlfs-boot-watchdog SECONDS` early and `xlfs-boot-ok` last).
pub fn watchdog_files() -> Vec<crate::GenFile> {
    vec![
        crate::GenFile {
            path: "usr/sbin/xlfs-boot-ok".into(),
            content: BOOT_OK_SCRIPT.into(),
            mode: 0o755,
            uid: 0,
            gid: 0,
        },
        crate::GenFile {
            path: "usr/sbin/xlfs-boot-watchdog".into(),
            content: WATCHDOG_SCRIPT.into(),
            mode: 0o755,
            uid: 0,
            gid: 0,
        },
    ]
}
