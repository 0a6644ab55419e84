use std::path::Path;
use std::process::Command;
use xlfs_book::profile::parse_profile;
use xlfs_system::grub::{grub_cfg, grubenv, watchdog_files, BootFiles, BOOT_OK_SCRIPT, WATCHDOG_SCRIPT};

const PROFILE: &str = include_str!("../../../book/profiles/quick.toml");

fn files() -> BootFiles {
    BootFiles {
        xen: "/boot/xen.gz".into(),
        kernel: "/boot/vmlinuz".into(),
        initrd: Some("/boot/initrd.img".into()),
        root: Some("PARTUUID=0B2F1E6A-1C4D-4A9B-8E3F-0123456789AB".into()),
    }
}

fn entry<'a>(cfg: &'a str, id: &str) -> &'a str {
    let at = cfg
        .find(&format!("--id {id} {{"))
        .unwrap_or_else(|| panic!("no entry {id}:\n{cfg}"));
    let end = cfg[at..].find("\n}\n").unwrap() + at;
    &cfg[at..end]
}

#[test]
fn grub_cfg_for_the_quick_profile() {
    let (p, _) = parse_profile(Path::new("profiles/quick.toml"), "quick", PROFILE);
    let cfg = grub_cfg(&p.unwrap(), &files());
    // Serial and text console in GRUB.
    assert!(cfg.contains(
        "serial --unit=0 --speed=115200 --word=8 --parity=no --stop=1\nterminal_input serial console\nterminal_output serial console\nset gfxpayload=text\n"
    ), "{cfg}");
    let xen = entry(&cfg, "xen");
    assert!(xen.contains(
        "  multiboot2 '/boot/xen.gz' console=com1 com1=115200,8n1 dom0_mem=512M,max:512M loglvl=all guest_loglvl=all vga=text-80x25\n"
    ), "{xen}");
    assert!(xen.contains(
        "  module2 '/boot/vmlinuz' root=PARTUUID=0B2F1E6A-1C4D-4A9B-8E3F-0123456789AB ro console=tty0 console=hvc0 earlyprintk=xen xlfs.entry=xen xlfs.trial=${xlfs_trial}\n"
    ), "{xen}");
    assert!(xen.ends_with("  module2 --nounzip '/boot/initrd.img'"), "{xen}");
    let linux = entry(&cfg, "linux");
    assert!(linux.contains(
        "  linux '/boot/vmlinuz' root=PARTUUID=0B2F1E6A-1C4D-4A9B-8E3F-0123456789AB ro console=tty0 console=ttyS0,115200n8 xlfs.entry=linux"
    ), "{linux}");
    assert!(linux.contains("  initrd '/boot/initrd.img'"), "{linux}");
    let debug = entry(&cfg, "xen-debug");
    assert!(
        debug.contains("loglvl=all guest_loglvl=all sync_console console_to_ring"),
        "{debug}"
    );
    assert_eq!(
        debug.matches("loglvl=all").count(),
        2,
        "no duplicate options: {debug}"
    );
    assert!(
        debug.contains("ignore_loglevel earlyprintk=xen xlfs.entry=xen-debug"),
        "{debug}"
    );
    // The watchdog's once-only default and the fallback.
    for line in [
        "  set default=\"${next_entry}\"\n  set next_entry=\n  save_env next_entry\n  set xlfs_trial=1\n",
        "export xlfs_trial\n",
        "  set fallback=\"${saved_entry} linux\"\n",
    ] {
        assert!(cfg.contains(line), "{line} in\n{cfg}");
    }
}

#[test]
fn grub_cfg_follows_the_machine_configuration() {
    let text = PROFILE
        .replace(
            "xen-cmdline = \"console=com1 com1=115200,8n1 dom0_mem=512M,max:512M loglvl=all guest_loglvl=all\"",
            "xen-cmdline = \"loglvl=all\"\nserial = { port = \"com2\", speed = 57600 }\ndom0-memory = 768\ndom0-vcpus = 2",
        )
        .replace("linux-cmdline = \"console=hvc0 earlyprintk=xen\"", "linux-cmdline = \"console=hvc0 quiet\"");
    let (p, d) = parse_profile(Path::new("profiles/quick.toml"), "quick", &text);
    assert!(d.is_empty(), "{d:?}");
    let mut f = files();
    f.initrd = None;
    f.root = None;
    let cfg = grub_cfg(&p.unwrap(), &f);
    assert!(cfg.contains("serial --unit=1 --speed=57600 "), "{cfg}");
    let xen = entry(&cfg, "xen");
    assert!(xen.contains(
        "multiboot2 '/boot/xen.gz' loglvl=all console=com2,vga com2=57600,8n1 dom0_mem=768M,max:768M dom0_max_vcpus=2 vga=text-80x25\n"
    ), "{xen}");
    assert!(
        xen.contains("module2 '/boot/vmlinuz' console=tty0 console=hvc0 quiet xlfs.entry=xen"),
        "{xen}"
    );
    assert!(
        entry(&cfg, "linux").contains("linux '/boot/vmlinuz' console=tty0 console=ttyS1,57600n8"),
        "{cfg}"
    );
    assert!(!xen.contains("module2 --nounzip"), "{xen}");
    assert!(entry(&cfg, "linux").contains("console=ttyS1,57600n8"), "{cfg}");
    assert!(!entry(&cfg, "linux").contains("initrd"), "{cfg}");
}

#[test]
fn grubenv_is_one_block() {
    let b = grubenv(&[("saved_entry", "xen"), ("next_entry", "xen-new")]);
    assert_eq!(b.len(), 1024);
    assert!(b.starts_with(b"# GRUB Environment Block\nsaved_entry=xen\nnext_entry=xen-new\n#"));
    assert!(b.ends_with(b"####"));
}

fn sh(script: &str, args: &[&str], dir: &Path, cmdline: &str) -> String {
    std::fs::write(dir.join("cmdline"), cmdline).unwrap();
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg("sh")
        .args(args)
        .env("XLFS_GRUBENV", dir.join("grubenv"))
        .env("XLFS_RUN", dir)
        .env("XLFS_CMDLINE", dir.join("cmdline"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn boot_ok_promotes_the_booted_entry_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let env = dir.path().join("grubenv");
    std::fs::write(&env, grubenv(&[("saved_entry", "xen"), ("other", "kept")])).unwrap();
    let out = sh(
        BOOT_OK_SCRIPT,
        &[],
        dir.path(),
        "root=/dev/sda2 xlfs.entry=xen-debug xlfs.trial=1\n",
    );
    assert!(out.contains("GRUB's default is now 'xen-debug'"), "{out}");
    assert_eq!(
        std::fs::read(&env).unwrap(),
        grubenv(&[("other", "kept"), ("saved_entry", "xen-debug")])
    );
    assert!(dir.path().join("xlfs-boot-ok").exists());
    // Without xlfs.entry= (booted some other way) grubenv is left alone.
    let before = std::fs::read(&env).unwrap();
    sh(BOOT_OK_SCRIPT, &[], dir.path(), "root=/dev/sda2\n");
    assert_eq!(std::fs::read(&env).unwrap(), before);
}

#[test]
fn the_watchdog_arms_only_on_a_trial_boot() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(
        sh(
            WATCHDOG_SCRIPT,
            &["1"],
            dir.path(),
            "xlfs.entry=xen xlfs.trial=0\n"
        ),
        ""
    );
    // A trial boot that reached multi-user in time: the timer finds the flag and does nothing
    // (`reboot` is not reached: the test machine keeps running).
    std::fs::write(dir.path().join("xlfs-boot-ok"), "").unwrap();
    let out = sh(
        WATCHDOG_SCRIPT,
        &["1"],
        dir.path(),
        "xlfs.entry=xen xlfs.trial=1\n",
    );
    assert!(out.contains("multi-user must be reached within 1s"), "{out}");
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(watchdog_files().len(), 2);
}
