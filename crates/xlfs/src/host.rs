//! A SysV host (`init = "sysv"`, the `host` profile): its image inputs (GRUB, the toolchain
//! root's binutils, the boot-check credentials) and `xlfs boot PROFILE --check` on its disk:
//! GRUB -> Xen -> Linux dom0 -> SysV init, a login on the serial console, then the checks.

use crate::app::App;
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
    let dir = credentials_dir(app);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
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
    if !pw_file.exists() {
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
    let password = std::fs::read_to_string(&pw_file)?.trim().to_string();
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
    let password_hash = String::from_utf8(out.stdout)?.trim().to_string();
    if !password_hash.starts_with("$6$") {
        bail!("openssl passwd -6 did not give a SHA-512 crypt hash");
    }
    let public_key = std::fs::read_to_string(key.with_extension("pub"))?
        .trim()
        .to_string();
    Ok(CheckCredentials {
        public_key,
        password_hash,
    })
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
    grub: &'a Path,
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

/// The QEMU machine of a SysV host: its disk (qcow2, `-snapshot`: a check never changes it), the
/// user-mode network on the bridge with `fwd` forwarded.
pub fn machine(
    profile: &Profile,
    images: &Images,
    accel: Accel,
    fwd: &[crate::system::Forward],
) -> Result<Machine> {
    let disk = images
        .disk_qcow2
        .clone()
        .context("these images have no disk; run `xlfs image PROFILE`")?;
    let mut extra = crate::system::uplink_args(profile, fwd);
    extra.push("-snapshot".into());
    Ok(Machine {
        qemu: xlfs_boot::default_qemu(),
        accel,
        memory_mib: profile.boot.memory_mib,
        smp: profile.boot.cpus,
        cpu: "qemu64".into(),
        machine: "pc".into(),
        kernel: PathBuf::new(),
        append: String::new(),
        initrd: Vec::new(),
        drives: vec![Drive {
            path: disk,
            format: "qcow2".into(),
            interface: "ide".into(),
            readonly: false,
        }],
        net: false,
        extra,
    })
}

fn indent(s: &str) -> String {
    s.lines()
        .map(|l| format!("  | {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Wait for `pattern` on the console; a failure names the expectation and shows the console.
fn wait(
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

/// A check run on the build machine (retried until its timeout).
fn from_build_machine(
    con: &Console,
    what: &str,
    cmd: String,
    expect: &str,
    secs: u64,
    marks: &mut Vec<(String, Duration)>,
) -> Result<()> {
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
    let m = machine(profile, images, accel, &fwd)?;
    let log = app.home.root.join("logs").join(format!("boot-{name}.log"));
    let mut con = Console::spawn(&m, &log)?;
    let mut marks = Vec::new();
    let xen_major = images.xen_version.split('+').next().unwrap_or("").to_string();
    wait(
        &mut con,
        "GRUB boots the disk",
        "Loading Xen with Linux dom0",
        180,
        &mut marks,
    )?;
    wait(
        &mut con,
        "the Xen banner and version appear",
        &format!("Xen version {xen_major}"),
        300,
        &mut marks,
    )?;
    wait(
        &mut con,
        "the dom0 kernel comes up",
        &format!("Linux version {}", images.kernel_version),
        300,
        &mut marks,
    )?;
    wait(
        &mut con,
        "SysV init runs the boot scripts",
        "INIT: version",
        300,
        &mut marks,
    )?;
    wait(
        &mut con,
        "the boot scripts reach multi-user",
        xlfs_system::sysv::MULTI_USER_MARK,
        900,
        &mut marks,
    )?;
    wait(
        &mut con,
        "a getty on the serial console",
        "login:",
        120,
        &mut marks,
    )?;
    con.sendline("root")?;
    wait(
        &mut con,
        "the console asks for root's password",
        "Password:",
        60,
        &mut marks,
    )?;
    con.sendline(&password)?;
    std::thread::sleep(Duration::from_secs(3));
    let must = |con: &mut Console,
                what: &str,
                cmd: &str,
                expect: &str,
                marks: &mut Vec<(String, Duration)>|
     -> Result<String> {
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
    };
    must(
        &mut con,
        "root is logged in on the serial console",
        "id -u",
        "0",
        &mut marks,
    )?;
    must(
        &mut con,
        "/etc/lfs-release is present",
        "cat /etc/lfs-release",
        xlfs_system::sysv::LFS_RELEASE,
        &mut marks,
    )?;
    must(
        &mut con,
        "Xen is running (`xl info`)",
        "xl info",
        "xen_version",
        &mut marks,
    )?;
    must(
        &mut con,
        &format!("the bridge {} is up with {}", bridge.name, bridge.address),
        &format!(
            "ip -o addr show dev {0} && ip -o link show dev {0} | grep -v DOWN",
            bridge.name
        ),
        &bridge.address.to_string(),
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
    must(
        &mut con,
        "only sshd listens (TCP)",
        "p=$(ss -Htln | awk '{print $4}' | grep -v ':22$'); echo \"$p\"; [ -z \"$p\" ] && echo ONLY-SSHD",
        "ONLY-SSHD",
        &mut marks,
    )?;
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
    from_build_machine(
        &con,
        "sshd refuses a password login",
        format!(
            "{} 2>&1; echo \"ssh exit $?\"",
            ssh(
                "-o PubkeyAuthentication=no -o PreferredAuthentications=password,keyboard-interactive",
                "true"
            )
        ),
        "Permission denied (publickey).",
        60,
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
    }
    con.sendline("poweroff")?;
    let halted = con.expect_any(
        &[
            "Hardware Dom0 shutdown",
            "Hardware Dom0 halted",
            "reboot: Power down",
        ],
        Duration::from_secs(300),
    );
    if let Err(e) = halted {
        if con.exit_status().is_none() {
            bail!(
                "check failed: dom0 powers off cleanly: {e}\n  the console, last lines:\n{}",
                indent(&con.tail(40))
            );
        }
    }
    let _ = con.wait_exit(Duration::from_secs(20));
    println!("  ok  dom0 powered off ({:.1}s)", con.elapsed().as_secs_f64());
    marks.push(("powered off".into(), con.elapsed()));
    Ok(crate::system::BootReport {
        accel,
        accel_reason: reason.to_string(),
        marks,
        log,
    })
}
