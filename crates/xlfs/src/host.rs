//! A SysV host (`init = "sysv"`, the `host` profile): its image inputs (GRUB, the toolchain
//! root's binutils, the boot-check credentials) and `xlfs boot PROFILE --check` on its disk:
//! GRUB -> Xen -> Linux dom0 -> SysV init, a login on the serial console, then the checks.

use crate::app::App;
use crate::system::indent;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use xlfs_assemble::sysv::CheckCredentials;
use xlfs_assemble::Images;
use xlfs_book::profile::Profile;
use xlfs_boot::{Accel, Check, Console, Drive, Machine};

/// Where a home keeps its boot-check key and console password.
pub fn credentials_dir(app: &App) -> PathBuf {
    app.home.root.join("keys").join("boot-check")
}

fn run(cmd: &mut Command, what: &str) -> Result<Vec<u8>> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {what} (Debian package openssh-client / openssl)"))?;
    if !out.status.success() {
        bail!("{what} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(out.stdout)
}

/// The boot-check credentials of this home, made once: an ed25519 key (`ssh-keygen`) and a
/// random console password hashed with SHA-512 crypt (`openssl passwd -6`). Mode 0600; the
/// password is never printed.
pub fn check_credentials(app: &App) -> Result<CheckCredentials> {
    credentials_in(&credentials_dir(app))
}

/// [`check_credentials`] kept in `dir`.
fn credentials_in(dir: &Path) -> Result<CheckCredentials> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
    let key = dir.join("id_ed25519");
    if !key.exists() {
        run(
            Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", "xlfs-boot-check", "-f"])
                .arg(&key),
            "ssh-keygen",
        )?;
    }
    let pw_file = dir.join("console-password");
    // The hash is made once too (its salt is random), so that the check disk of one home is
    // the same bytes on every `xlfs image` of the same artifacts.
    let hash_file = dir.join("console-password.sha512crypt");
    if !pw_file.exists() {
        // A new password: the old one's hash goes.
        if hash_file.exists() {
            std::fs::remove_file(&hash_file)
                .with_context(|| format!("cannot remove {}", hash_file.display()))?;
        }
        let mut bytes = [0u8; 18];
        getrandom(&mut bytes)?;
        let pw: String = bytes
            .iter()
            .map(|b| {
                let a = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
                a[*b as usize % a.len()] as char
            })
            .collect();
        std::fs::write(&pw_file, format!("{pw}\n"))?;
        std::fs::set_permissions(&pw_file, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    }
    if !hash_file.exists() {
        let password = std::fs::read_to_string(&pw_file)?.trim().to_string();
        let hash = sha512_crypt(&password)?;
        xlfs_cache::write_atomic(&hash_file, format!("{hash}\n").as_bytes(), 0o600)
            .map_err(anyhow::Error::msg)?;
    }
    let password_hash = std::fs::read_to_string(&hash_file)?.trim().to_string();
    if !password_hash.starts_with("$6$") {
        bail!(
            "{} is not a SHA-512 crypt hash; remove it and it is made again",
            hash_file.display()
        );
    }
    let public_key = std::fs::read_to_string(key.with_extension("pub"))?
        .trim()
        .to_string();
    Ok(CheckCredentials {
        public_key,
        password_hash,
    })
}

/// A SHA-512 crypt(3) hash of `password`, with a random salt (`openssl passwd -6`).
fn sha512_crypt(password: &str) -> Result<String> {
    let mut child = Command::new("openssl")
        .args(["passwd", "-6", "-stdin"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("cannot run openssl (Debian package openssl)")?;
    std::io::Write::write_all(
        child.stdin.as_mut().context("openssl's stdin")?,
        format!("{password}\n").as_bytes(),
    )?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "openssl passwd -6 failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let hash = String::from_utf8(out.stdout)?.trim().to_string();
    if !hash.starts_with("$6$") {
        bail!("openssl passwd -6 did not give a SHA-512 crypt hash");
    }
    Ok(hash)
}

fn getrandom(buf: &mut [u8]) -> Result<()> {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")?.read_exact(buf)?;
    Ok(())
}

/// The inputs of a SysV host's assembly.
pub fn sysv_inputs<'a>(
    app: &App,
    book: &xlfs_book::Book,
    profile: &Profile,
    grub: xlfs_assemble::GrubTrees<'a>,
) -> Result<xlfs_assemble::sysv::SysvInputs<'a>> {
    let binutils = if profile.host.keep.contains(&xlfs_book::profile::Keep::Debug) {
        None
    } else {
        let tc = app.toolchain(book)?;
        Some(xlfs_assemble::debug::Binutils::from_root(&tc.root)?)
    };
    let credentials = if profile.boot.check_credentials {
        Some(check_credentials(app)?)
    } else {
        None
    };
    Ok(xlfs_assemble::sysv::SysvInputs {
        grub,
        binutils,
        credentials,
    })
}

/// The QEMU machine of a SysV host: its disk (qcow2, `-snapshot`: a boot never changes it), the
/// user-mode network on the bridge with `fwd` forwarded. With `check`, the boot check's disk
/// (the deliverable disk plus this home's check credentials), else the deliverable disk.
pub fn machine(
    profile: &Profile,
    images: &Images,
    accel: Accel,
    firmware: Firmware,
    fwd: &[crate::system::Forward],
    check: bool,
) -> Result<Machine> {
    let disk = if check {
        images.check_disk.clone().with_context(|| {
            format!(
                "the images of `{0}` have no boot-check disk ({1}); set [boot] check-credentials = true in {2} and run `xlfs image {0}`",
                profile.name,
                xlfs_assemble::sysv::CHECK_DISK,
                profile.path.display()
            )
        })?
    } else {
        images
            .disk_qcow2
            .clone()
            .context("these images have no disk; run `xlfs image PROFILE`")?
    };
    disk_machine(
        profile,
        &disk,
        accel,
        firmware,
        crate::system::uplink_args(profile, fwd),
    )
}

/// The firmware a disk machine starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Firmware {
    /// QEMU's own SeaBIOS: GRUB's boot.img in the MBR, core.img in the BIOS boot partition.
    Bios,
    /// OVMF (UEFI): GRUB's BOOTX64.EFI in the EFI system partition.
    Uefi,
}

/// Where Debian's `ovmf` puts the UEFI firmware, code and variables in one image.
pub const OVMF: &str = "/usr/share/ovmf/OVMF.fd";

/// The UEFI firmware for QEMU, or an error that says how to get it.
pub fn ovmf() -> Result<PathBuf> {
    let p = PathBuf::from(OVMF);
    if !p.is_file() {
        bail!("a UEFI boot needs OVMF, QEMU's UEFI firmware ({OVMF}): install Debian's `ovmf` (`xlfs doctor --fix` does)");
    }
    Ok(p)
}

/// A QEMU machine that boots from the qcow2 disk `disk` with `-snapshot` (a boot never changes
/// it), with the profile's memory and CPUs, started by `firmware`; `extra`: further QEMU
/// arguments.
pub fn disk_machine(
    profile: &Profile,
    disk: &Path,
    accel: Accel,
    firmware: Firmware,
    mut extra: Vec<String>,
) -> Result<Machine> {
    extra.push("-snapshot".into());
    if firmware == Firmware::Uefi {
        extra.push("-bios".into());
        extra.push(ovmf()?.display().to_string());
    }
    Ok(Machine {
        memory_mib: profile.boot.memory_mib,
        smp: profile.boot.cpus,
        cpu: "qemu64".into(),
        drives: vec![Drive {
            format: "qcow2".into(),
            ..Drive::raw(disk, "ide")
        }],
        extra,
        ..Machine::new(accel)
    })
}

/// Wait for `pattern` on the console; a failure names the expectation and shows the console.
pub(crate) fn wait(
    con: &mut Console,
    what: &str,
    pattern: &str,
    secs: u64,
    marks: &mut Vec<(String, Duration)>,
) -> Result<()> {
    if let Err(e) = con.expect(pattern, Duration::from_secs(secs)) {
        bail!(
            "check failed: {what}\n  expected `{pattern}` on the console within {secs}s: {e}\n  the console, last lines:\n{}",
            indent(&con.tail(40))
        );
    }
    println!("  ok  {what} ({:.1}s)", con.elapsed().as_secs_f64());
    marks.push((what.into(), con.elapsed()));
    Ok(())
}

/// A check run on the build machine (retried until its timeout); its output.
fn from_build_machine(
    con: &Console,
    what: &str,
    cmd: String,
    expect: &str,
    secs: u64,
    marks: &mut Vec<(String, Duration)>,
) -> Result<String> {
    let check = Check {
        name: what.into(),
        send: Some(cmd),
        expect: expect.into(),
        timeout_s: secs,
    };
    let (r, out) = xlfs_boot::run_on_build_machine(&check);
    if !r.ok {
        bail!(
            "check failed: {what}\n  {}\n  the client (on the build machine):\n{}\n  the console, last lines:\n{}",
            r.error.unwrap_or_default(),
            indent(&out),
            indent(&con.tail(40))
        );
    }
    println!("  ok  {what} ({:.1}s)", con.elapsed().as_secs_f64());
    marks.push((what.into(), con.elapsed()));
    Ok(out)
}

/// The verdict of a pure check on a command's output: a failure names what was expected and
/// shows the output and the console.
fn judge(
    con: &Console,
    what: &str,
    out: &str,
    verdict: std::result::Result<(), String>,
    marks: &mut Vec<(String, Duration)>,
) -> Result<()> {
    if let Err(e) = verdict {
        bail!(
            "check failed: {what}\n  {e}\n  the output:\n{}\n  the console, last lines:\n{}",
            indent(out),
            indent(&con.tail(40))
        );
    }
    println!("  ok  {what} ({:.1}s)", con.elapsed().as_secs_f64());
    marks.push((what.into(), con.elapsed()));
    Ok(())
}

/// `ss -Hltun` (TCP listening, UDP unconnected sockets, numeric) shows sshd on TCP port 22 and
/// nothing else, on any address (loopback included: a daemon that listens there is still
/// one too many).
pub fn only_sshd_listens(ss: &str) -> std::result::Result<(), String> {
    let mut sshd = false;
    let mut others = Vec::new();
    for line in ss.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let f: Vec<&str> = line.split_whitespace().collect();
        // Netid State Recv-Q Send-Q Local:Port Peer:Port [Process]; other lines are not
        // sockets (the end marker, kernel messages on the console).
        let Some(net) = f.first().filter(|n| matches!(**n, "tcp" | "udp")) else {
            continue;
        };
        let Some(local) = f.get(4) else {
            others.push(format!("an unreadable line `{line}`"));
            continue;
        };
        let port = local.rsplit(':').next().unwrap_or("");
        if *net == "tcp" && port == "22" {
            sshd = true;
        } else {
            others.push(format!("{net} {local}"));
        }
    }
    match (sshd, others.is_empty()) {
        (true, true) => Ok(()),
        (false, _) => Err(format!(
            "expected sshd on TCP port 22, and it is not listening{}",
            if others.is_empty() {
                String::new()
            } else {
                format!("; listening instead: {}", others.join(", "))
            }
        )),
        (true, false) => Err(format!(
            "expected only sshd (TCP 22) listening, but also: {}",
            others.join(", ")
        )),
    }
}

/// `xl info` names the hypervisor's version, which starts with `xen_version` (the recipe's,
/// without `+...`).
pub fn xl_info_check(info: &str, xen_version: &str) -> std::result::Result<(), String> {
    let field = |name: &str| {
        info.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == name).then(|| v.trim().to_string())
        })
    };
    let Some(v) = field("xen_version") else {
        return Err("expected a `xen_version` line from `xl info`".into());
    };
    if !v.starts_with(xen_version) {
        return Err(format!(
            "expected Xen {xen_version}, `xl info` says xen_version {v}"
        ));
    }
    if field("xen_caps").is_none_or(|c| c.is_empty()) {
        return Err("expected the hypervisor's capabilities (`xen_caps`) from `xl info`".into());
    }
    Ok(())
}

/// `ip -o link show dev BR` says the bridge is up with a carrier (a port is up), and
/// `ip -o addr show dev BR` gives it `address` (`10.0.0.1/24`).
pub fn bridge_check(link: &str, addr: &str, address: &str) -> std::result::Result<(), String> {
    let flags = link
        .split_once('<')
        .and_then(|(_, r)| r.split_once('>'))
        .map(|(f, _)| f.split(',').collect::<Vec<_>>())
        .ok_or_else(|| {
            format!(
                "expected the link's flags (<...>) from `ip -o link`, got `{}`",
                link.trim()
            )
        })?;
    for f in ["UP", "LOWER_UP"] {
        if !flags.contains(&f) {
            return Err(format!(
                "expected the bridge's flags to include {f} (up, with a port that has a carrier), got <{}>",
                flags.join(",")
            ));
        }
    }
    let has = addr.lines().any(|l| {
        let w: Vec<&str> = l.split_whitespace().collect();
        w.windows(2).any(|p| p[0] == "inet" && p[1] == address)
    });
    if !has {
        return Err(format!(
            "expected the address {address} on the bridge (`inet {address}`)"
        ));
    }
    Ok(())
}

/// The output of a password-only `ssh` login (with `; echo "ssh exit $?"`): refused (exit 255,
/// `Permission denied`), and the methods the server still offers are public keys only.
pub fn password_refused(out: &str) -> std::result::Result<(), String> {
    let exit = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("ssh exit "))
        .ok_or("expected the exit status of ssh (`ssh exit N`)")?;
    if exit != "255" {
        return Err(format!(
            "expected ssh to fail (exit 255) without a key; it exited {exit}: a password login worked or ssh could not run"
        ));
    }
    let methods = out
        .split_once("Permission denied (")
        .and_then(|(_, r)| r.split_once(')'))
        .map(|(m, _)| m)
        .ok_or("expected `Permission denied (METHODS)` from sshd; it did not answer as sshd")?;
    let offered: Vec<&str> = methods.split(',').map(str::trim).collect();
    if offered != ["publickey"] {
        return Err(format!(
            "expected sshd to offer public keys only, it offers: {}; fix: PasswordAuthentication no and KbdInteractiveAuthentication no in sshd_config",
            offered.join(", ")
        ));
    }
    Ok(())
}

/// `xlfs boot PROFILE --check` for a SysV host.
pub fn boot_check(
    app: &App,
    profile: &Profile,
    images: &Images,
    accel: Accel,
    reason: &str,
) -> Result<crate::system::BootReport> {
    let name = &profile.name;
    let bridge = profile
        .host
        .bridge
        .as_ref()
        .context("a SysV host's check reaches sshd over its bridge: add host.bridge")?;
    let creds = credentials_dir(app);
    let key = creds.join("id_ed25519");
    let password = std::fs::read_to_string(creds.join("console-password"))
        .with_context(|| {
            format!(
                "no boot-check credentials in {}: set [boot] check-credentials = true in the profile and run `xlfs image {name}`",
                creds.display()
            )
        })?
        .trim()
        .to_string();
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("cannot find a free local port")?;
    let ssh_port = l.local_addr()?.port();
    drop(l);
    let fwd = vec![crate::system::Forward {
        guest: "dom0".into(),
        host_port: ssh_port,
        address: bridge.address.addr,
        port: 22,
    }];
    println!("booting `{name}` from its disk under QEMU with {accel:?}: {reason}");
    let m = machine(profile, images, accel, Firmware::Bios, &fwd, true)?;
    let log = app.home.root.join("logs").join(format!("boot-{name}.log"));
    let mut con = Console::spawn(&m, &log)?;
    let mut marks = Vec::new();
    boot_to_login(&mut con, images, Firmware::Bios, &mut marks)?;
    let xen_major = xen_major(images);
    login(&mut con, &password, &mut marks)?;
    must(
        &mut con,
        "/etc/lfs-release is present",
        "cat /etc/lfs-release",
        xlfs_system::sysv::LFS_RELEASE,
        &mut marks,
    )?;
    let out = must(
        &mut con,
        "`xl info` answers",
        "xl info",
        "xen_version",
        &mut marks,
    )?;
    judge(
        &con,
        &format!("Xen {xen_major} is running (`xl info`)"),
        &out,
        xl_info_check(&out, &xen_major),
        &mut marks,
    )?;
    let link = must(
        &mut con,
        &format!("the bridge {} exists", bridge.name),
        &format!("ip -o link show dev {}", bridge.name),
        &bridge.name,
        &mut marks,
    )?;
    let addr = must(
        &mut con,
        &format!("the bridge {} has addresses", bridge.name),
        &format!("ip -o addr show dev {}", bridge.name),
        &bridge.name,
        &mut marks,
    )?;
    judge(
        &con,
        &format!("the bridge {} is up with {}", bridge.name, bridge.address),
        &format!("{link}\n{addr}"),
        bridge_check(&link, &addr, &bridge.address.to_string()),
        &mut marks,
    )?;
    must(
        &mut con,
        "dom0 has no Python, X11 library or compiler",
        "d=; for c in python python3 gcc cc c++ g++ cpp as ld; do command -v $c && d=1; done; \
         ls /usr/lib /usr/lib64 /lib 2>/dev/null | grep -E '^(libX11|libxcb|libXext|python[0-9])' && d=1; [ -z \"$d\" ] && echo CLEAN",
        "CLEAN",
        &mut marks,
    )?;
    let out = must(
        &mut con,
        "`ss` lists the listening sockets",
        "ss -Hltun; echo SS-DONE",
        "SS-DONE",
        &mut marks,
    )?;
    judge(
        &con,
        "only sshd listens (TCP and UDP)",
        &out,
        only_sshd_listens(&out),
        &mut marks,
    )?;
    let sockets: String = out
        .lines()
        .filter(|l| !l.contains("SS-DONE"))
        .map(|l| format!("{}\n", l.trim_end()))
        .collect();
    let file = crate::system::dom0_sockets_file(images);
    xlfs_util::write_atomic(&file, sockets.as_bytes())
        .with_context(|| format!("cannot write {}", file.display()))?;
    let ssh = |extra: &str, cmd: &str| {
        format!(
            "ssh -p {ssh_port} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes \
             -o ConnectTimeout=10 -o LogLevel=ERROR {extra} root@127.0.0.1 {cmd}"
        )
    };
    from_build_machine(
        &con,
        "sshd accepts the configured key (through QEMU's port forward)",
        ssh(
            &format!("-o IdentitiesOnly=yes -i {}", key.display()),
            "'cat /etc/lfs-release'",
        ),
        xlfs_system::sysv::LFS_RELEASE,
        180,
        &mut marks,
    )?;
    let out = from_build_machine(
        &con,
        "sshd answers a password login",
        format!(
            "{} 2>&1; echo \"ssh exit $?\"",
            ssh(
                "-o PubkeyAuthentication=no -o PreferredAuthentications=password,keyboard-interactive",
                "true"
            )
        ),
        "Permission denied (",
        60,
        &mut marks,
    )?;
    judge(
        &con,
        "sshd refuses a password login (it offers public keys only)",
        &out,
        password_refused(&out),
        &mut marks,
    )?;
    for g in &profile.guests {
        con.sendline(&format!("xl create -c /etc/xen/{}.cfg", g.name))?;
        wait(
            &mut con,
            &format!("guest `{}` starts", g.name),
            &format!("XLFS-GUEST-UP hostname={}", g.hostname),
            300,
            &mut marks,
        )?;
        crate::system::leave_guest_console(&mut con, &profile.host.hostname)?;
        if let Some(n) = &g.network {
            must(
                &mut con,
                &format!("guest `{}` answers a ping over the bridge", g.name),
                &format!("ping -c 3 -W 5 {}", n.address.addr),
                " 0% packet loss",
                &mut marks,
            )?;
        }
        must(
            &mut con,
            &format!("`xl shutdown` stops guest `{}`", g.name),
            &format!("xl shutdown -w {}", g.name),
            "",
            &mut marks,
        )?;
        crate::system::guest_gone(&mut con, &g.name)?;
    }
    crate::system::power_off(&mut con, POWER_OFF, &mut marks)?;
    if profile.host.uefi {
        uefi_boot(app, profile, images, accel, &password, &mut marks)?;
    }
    Ok(crate::system::BootReport {
        accel,
        accel_reason: reason.to_string(),
        marks,
        log,
    })
}

/// Run `cmd` on the logged-in console: a check that passes when it exits 0 and prints `expect`.
/// A failure names the check, the command, its output and the console's last lines.
fn must(
    con: &mut Console,
    what: &str,
    cmd: &str,
    expect: &str,
    marks: &mut Vec<(String, Duration)>,
) -> Result<String> {
    let (rc, out) = con.run(cmd, Duration::from_secs(120)).map_err(|e| {
        anyhow::anyhow!(
            "check failed: {what}\n  {e}\n  the console, last lines:\n{}",
            indent(&con.tail(40))
        )
    })?;
    if rc != 0 || !out.contains(expect) {
        bail!(
            "check failed: {what}\n  command: {cmd}\n  expected exit 0 and `{expect}`, got exit {rc}:\n{}\n  the console, last lines:\n{}",
            indent(&out),
            indent(&con.tail(40))
        );
    }
    println!("  ok  {what} ({:.1}s)", con.elapsed().as_secs_f64());
    marks.push((what.into(), con.elapsed()));
    Ok(out)
}

/// Log in as root on the serial console's getty (its `login:` prompt seen) with the boot check's
/// console password, and check that the shell is root's.
fn login(con: &mut Console, password: &str, marks: &mut Vec<(String, Duration)>) -> Result<()> {
    con.sendline("root")?;
    wait(
        con,
        "the console asks for root's password",
        "Password:",
        60,
        marks,
    )?;
    con.sendline(password)?;
    std::thread::sleep(Duration::from_secs(3));
    must(
        con,
        "root is logged in on the serial console",
        "id -u",
        "0",
        marks,
    )?;
    Ok(())
}

/// A SysV dom0 gets this long to power off: its boot scripts stop the guests and services
/// first, which may take minutes under TCG.
const POWER_OFF: Duration = Duration::from_secs(300);

/// Xen's version without the snapshot suffix (`4.17.5+72` -> `4.17.5`), as its banner and
/// `xl info` give it.
fn xen_major(images: &Images) -> String {
    images.xen_version.split('+').next().unwrap_or("").to_string()
}

/// From power-on to the serial getty's `login:`: GRUB, Xen (with `Uefi`, also Xen saying that
/// GRUB loaded it and that it took its memory map from EFI), the dom0 kernel, SysV init and the
/// boot scripts to multi-user.
fn boot_to_login(
    con: &mut Console,
    images: &Images,
    firmware: Firmware,
    marks: &mut Vec<(String, Duration)>,
) -> Result<()> {
    let xen_major = xen_major(images);
    // OVMF under TCG takes a while before it loads GRUB.
    let (grub, grub_secs) = match firmware {
        Firmware::Bios => ("GRUB boots the disk", 180),
        Firmware::Uefi => ("GRUB boots the disk (UEFI)", 300),
    };
    let mut steps: Vec<(&str, String, u64)> = vec![(grub, "Loading Xen with Linux dom0".into(), grub_secs)];
    steps.push((
        "the Xen banner and version appear",
        format!("Xen version {xen_major}"),
        300,
    ));
    if firmware == Firmware::Uefi {
        steps.push((
            "GRUB loaded Xen (multiboot2)",
            "(XEN) Bootloader: GRUB".into(),
            300,
        ));
        steps.push((
            "Xen has the memory map of the UEFI firmware",
            "(XEN) EFI RAM map:".into(),
            60,
        ));
    }
    steps.extend([
        (
            "the dom0 kernel comes up",
            format!("Linux version {}", images.kernel_version),
            300,
        ),
        ("SysV init runs the boot scripts", "INIT: version".into(), 300),
        (
            "the boot scripts reach multi-user",
            xlfs_system::sysv::MULTI_USER_MARK.into(),
            900,
        ),
        ("a getty on the serial console", "login:".into(), 120),
    ]);
    for (what, pattern, secs) in &steps {
        wait(con, what, pattern, *secs, marks)?;
    }
    Ok(())
}

/// With `uefi = true`, the same check disk once more from OVMF: GRUB from the EFI system
/// partition, Xen on its EFI path (it must take its memory map from EFI), dom0 through the boot
/// scripts to a login, then a clean power-off. The services were checked on the BIOS boot.
fn uefi_boot(
    app: &App,
    profile: &Profile,
    images: &Images,
    accel: Accel,
    password: &str,
    marks: &mut Vec<(String, Duration)>,
) -> Result<()> {
    println!(
        "booting `{}` from its disk again, from UEFI firmware (OVMF)",
        profile.name
    );
    let m = machine(profile, images, accel, Firmware::Uefi, &[], true)?;
    let log = app
        .home
        .root
        .join("logs")
        .join(format!("boot-{}-uefi.log", profile.name));
    let mut con = Console::spawn(&m, &log)?;
    let mut uefi = Vec::new();
    boot_to_login(&mut con, images, Firmware::Uefi, &mut uefi)?;
    login(&mut con, password, &mut uefi)?;
    crate::system::power_off(&mut con, POWER_OFF, &mut uefi)?;
    marks.extend(uefi.into_iter().map(|(n, t)| (format!("uefi: {n}"), t)));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The salt of a `$6$SALT$HASH` string, and whether `password` gives that hash.
    fn hash_matches(hash: &str, password: &str) -> bool {
        let salt = hash.split('$').nth(2).unwrap();
        let out = Command::new("openssl")
            .args(["passwd", "-6", "-salt", salt, password])
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().trim() == hash
    }

    #[test]
    fn check_credentials_are_made_once_with_one_hash() {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("boot-check");
        let first = credentials_in(&keys).unwrap();
        let password = std::fs::read_to_string(keys.join("console-password")).unwrap();
        assert!(hash_matches(&first.password_hash, password.trim()));
        // Again: the same key and the same hash (openssl's salt is random), so the check disk of
        // one home is the same bytes on every `xlfs image`.
        let again = credentials_in(&keys).unwrap();
        assert_eq!(again.public_key, first.public_key);
        assert_eq!(again.password_hash, first.password_hash);
        // A new password gets its own hash, not the old one's.
        std::fs::remove_file(keys.join("console-password")).unwrap();
        let new = credentials_in(&keys).unwrap();
        let new_password = std::fs::read_to_string(keys.join("console-password")).unwrap();
        assert_ne!(new_password, password);
        assert_ne!(new.password_hash, first.password_hash);
        assert!(hash_matches(&new.password_hash, new_password.trim()));
        // A damaged hash file is an error that names it.
        std::fs::write(keys.join("console-password.sha512crypt"), "plain\n").unwrap();
        let e = credentials_in(&keys).unwrap_err().to_string();
        assert!(e.contains("console-password.sha512crypt"), "{e}");
    }

    /// `ss -Hltun` of a host whose chronyd still has its command port (323) on loopback.
    const SS_CHRONY_CMDPORT: &str = "\
udp   UNCONN 0      0          127.0.0.1:323        0.0.0.0:*          
udp   UNCONN 0      0              [::1]:323           [::]:*          
tcp   LISTEN 0      128          0.0.0.0:22         0.0.0.0:*          
tcp   LISTEN 0      128             [::]:22            [::]:*          
SS-DONE
";

    #[test]
    fn only_sshd_listening_covers_udp_and_loopback() {
        let clean = "tcp   LISTEN 0      128          0.0.0.0:22         0.0.0.0:*\n\
                     tcp   LISTEN 0      128             [::]:22            [::]:*\nSS-DONE\n";
        assert_eq!(only_sshd_listens(clean), Ok(()));
        // A kernel message on the console between the lines is not a socket.
        let noisy = format!("[  812.402114] xenbr0: port 2(vif1.0) entered forwarding state\n{clean}");
        assert_eq!(only_sshd_listens(&noisy), Ok(()));
        let e = only_sshd_listens(SS_CHRONY_CMDPORT).unwrap_err();
        assert!(
            e.contains("udp 127.0.0.1:323") && e.contains("udp [::1]:323"),
            "{e}"
        );
        // chronyd as an NTP server, a DHCP client on an interface, another TCP daemon.
        for (line, named) in [
            (
                "udp   UNCONN 0      0            0.0.0.0:123        0.0.0.0:*",
                "udp 0.0.0.0:123",
            ),
            (
                "udp   UNCONN 0      0       0.0.0.0%eth0:68         0.0.0.0:*",
                "udp 0.0.0.0%eth0:68",
            ),
            (
                "tcp   LISTEN 0      64                 *:111              *:*",
                "tcp *:111",
            ),
            // UDP port 22 is not sshd.
            (
                "udp   UNCONN 0      0            0.0.0.0:22         0.0.0.0:*",
                "udp 0.0.0.0:22",
            ),
        ] {
            let e = only_sshd_listens(&format!("{clean}{line}\n")).unwrap_err();
            assert!(e.contains(named), "{line}: {e}");
        }
        // No sshd at all is a failure too, even with nothing else listening.
        let e = only_sshd_listens("SS-DONE\n").unwrap_err();
        assert!(e.contains("not listening"), "{e}");
        let e = only_sshd_listens("tcp   LISTEN 0      128\n").unwrap_err();
        assert!(e.contains("unreadable"), "{e}");
    }

    const XL_INFO: &str = "\
host                   : xlfs-host
release                : 6.12.41
version                : #1 SMP PREEMPT_DYNAMIC Tue Jan  2 00:00:00 UTC 2024
machine                : x86_64
nr_cpus                : 2
xen_major              : 4
xen_minor              : 19
xen_extra              : .1
xen_version            : 4.19.1
xen_caps               : xen-3.0-x86_64 hvm-3.0-x86_32 hvm-3.0-x86_32p hvm-3.0-x86_64 
xen_scheduler          : credit2
xen_commandline        : placeholder dom0_mem=1024M,max:1024M dom0_max_vcpus=2 console=com1,vga com1=115200,8n1
cc_compiler            : gcc (GCC) 15.2.0
";

    #[test]
    fn xl_info_names_the_built_xen() {
        assert_eq!(xl_info_check(XL_INFO, "4.19.1"), Ok(()));
        assert_eq!(xl_info_check(XL_INFO, "4.19"), Ok(()));
        let e = xl_info_check(XL_INFO, "4.20.0").unwrap_err();
        assert!(e.contains("4.20.0") && e.contains("4.19.1"), "{e}");
        let e = xl_info_check(
            "libxl: error: libxl.c:102:libxl_ctx_alloc: cannot open libxc handle\n",
            "4.19",
        )
        .unwrap_err();
        assert!(e.contains("xen_version"), "{e}");
        let no_caps = XL_INFO.replace(
            "xen-3.0-x86_64 hvm-3.0-x86_32 hvm-3.0-x86_32p hvm-3.0-x86_64 ",
            "",
        );
        assert!(xl_info_check(&no_caps, "4.19").unwrap_err().contains("xen_caps"));
    }

    #[test]
    fn the_bridge_is_up_with_a_carrier_and_its_address() {
        let up = "5: xenbr0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue state UP mode DEFAULT group default qlen 1000\\    link/ether 52:54:00:12:34:56 brd ff:ff:ff:ff:ff:ff\n";
        let addr = "5: xenbr0    inet 10.0.0.1/24 brd 10.0.0.255 scope global xenbr0\\       valid_lft forever preferred_lft forever\n\
                    5: xenbr0    inet6 fe80::5054:ff:fe12:3456/64 scope link \\       valid_lft forever preferred_lft forever\n";
        assert_eq!(bridge_check(up, addr, "10.0.0.1/24"), Ok(()));
        // Up, but no port has a carrier (eth0 not enslaved): no LOWER_UP.
        let no_carrier = "5: xenbr0: <NO-CARRIER,BROADCAST,MULTICAST,UP> mtu 1500 qdisc noqueue state DOWN mode DEFAULT group default qlen 1000\\    link/ether 52:54:00:12:34:56 brd ff:ff:ff:ff:ff:ff\n";
        assert!(bridge_check(no_carrier, addr, "10.0.0.1/24")
            .unwrap_err()
            .contains("LOWER_UP"));
        let down = "5: xenbr0: <BROADCAST,MULTICAST> mtu 1500 qdisc noop state DOWN mode DEFAULT group default qlen 1000\n";
        assert!(bridge_check(down, addr, "10.0.0.1/24")
            .unwrap_err()
            .contains("UP"));
        // Another address, or the right one with another prefix, is not the profile's.
        assert!(bridge_check(up, addr, "10.0.0.2/24")
            .unwrap_err()
            .contains("10.0.0.2/24"));
        assert!(bridge_check(up, &addr.replace("/24", "/16"), "10.0.0.1/24").is_err());
        assert!(bridge_check("Device \"xenbr0\" does not exist.\n", addr, "10.0.0.1/24").is_err());
    }

    #[test]
    fn a_password_login_is_refused_with_public_keys_offered_only() {
        assert_eq!(
            password_refused("root@127.0.0.1: Permission denied (publickey).\nssh exit 255\n"),
            Ok(())
        );
        let e = password_refused(
            "root@127.0.0.1: Permission denied (publickey,password,keyboard-interactive).\nssh exit 255\n",
        )
        .unwrap_err();
        assert!(
            e.contains("password") && e.contains("PasswordAuthentication no"),
            "{e}"
        );
        let e = password_refused(
            "root@127.0.0.1: Permission denied (publickey,keyboard-interactive).\nssh exit 255\n",
        )
        .unwrap_err();
        assert!(e.contains("keyboard-interactive"), "{e}");
        // Not sshd refusing: the port is closed.
        let e =
            password_refused("ssh: connect to host 127.0.0.1 port 40022: Connection refused\nssh exit 255\n")
                .unwrap_err();
        assert!(e.contains("Permission denied"), "{e}");
        // Logged in without a key.
        assert!(password_refused("ssh exit 0\n").unwrap_err().contains("exited 0"));
        assert!(password_refused("").is_err());
    }
}
