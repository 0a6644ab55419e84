//! The SysV host's generated configuration, checked against the boot scripts that read it.

use std::path::Path;
use xlfs_book::profile::{parse_profile, Profile};
use xlfs_system::sysv::{auto_name, host_files, inittab, links, LFS_RELEASE, MULTI_USER_MARK};

fn host() -> Profile {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../book/profiles/host.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    // Two guests, the second autostarted before a third, to see the order.
    let text = format!(
        "{text}\n[[guest]]\nname = \"web\"\nkernel = \"linux\"\npackages = [\"busybox\"]\nautostart = true\n\
         network = {{ bridge = \"xenbr0\", address = \"10.0.0.3/24\" }}\n\
         [[guest]]\nname = \"dns\"\nkernel = \"linux\"\npackages = [\"busybox\"]\nautostart = true\n"
    );
    let (p, d) = parse_profile(&path, "host", &text);
    assert!(d.is_empty(), "{d:?}");
    p.unwrap()
}

fn files(p: &Profile) -> Vec<xlfs_system::GenFile> {
    host_files(
        p,
        &vec!["vmlinuz-6.12".to_string(); 3],
        "0A1B2C3D-0000-4000-8000-00000000ABCD",
        180,
    )
}

fn get<'a>(f: &'a [xlfs_system::GenFile], path: &str) -> &'a xlfs_system::GenFile {
    f.iter().find(|x| x.path == path).unwrap_or_else(|| {
        panic!(
            "no {path} among {:?}",
            f.iter().map(|x| &x.path).collect::<Vec<_>>()
        )
    })
}

#[test]
fn inittab_is_sysvinit_syntax_with_a_getty_on_each_console() {
    let p = host();
    let t = inittab(&p);
    let mut ids = std::collections::BTreeSet::new();
    for line in t.lines().filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let fields: Vec<&str> = line.splitn(4, ':').collect();
        assert_eq!(fields.len(), 4, "id:runlevels:action:process: {line}");
        assert!(
            fields[0].len() <= 4,
            "sysvinit ids have at most 4 characters: {line}"
        );
        assert!(ids.insert(fields[0].to_string()), "id {} twice", fields[0]);
        assert!(
            ["initdefault", "sysinit", "wait", "ctrlaltdel", "once", "respawn"].contains(&fields[2]),
            "{line}"
        );
    }
    assert!(t.contains("id:3:initdefault:"));
    assert!(t.contains("agetty --noclear tty1"), "the 80x25 console");
    assert!(t.contains(
        "grep -qw hvc0 /sys/class/tty/console/active && exec /usr/sbin/agetty -L 115200 hvc0 vt100"
    ));
    assert!(t.contains(
        "grep -qw ttyS0 /sys/class/tty/console/active && exec /usr/sbin/agetty -L 115200 ttyS0 vt100"
    ));
    // Every runlevel is run by the boot scripts' rc.
    for r in 0..=6 {
        assert!(t.contains(&format!("/etc/rc.d/init.d/rc {r}\n")));
    }
}

#[test]
fn the_files_a_sysv_host_needs() {
    let p = host();
    let f = files(&p);
    assert_eq!(get(&f, "etc/lfs-release").content, format!("{LFS_RELEASE}\n"));
    assert!(get(&f, "etc/os-release").content.contains("ID=lfs\n"));
    assert!(get(&f, "etc/fstab")
        .content
        .contains("PARTUUID=0a1b2c3d-0000-4000-8000-00000000abcd / ext4 defaults,noatime 1 1\n"));
    assert_eq!(get(&f, "etc/hostname").content, "xlfs-host\n");
    let hosts = &get(&f, "etc/hosts").content;
    assert!(
        hosts.contains("10.0.0.1 xlfs-host.example.org xlfs-host\n"),
        "{hosts}"
    );
    assert!(hosts.contains("10.0.0.2 xlfs-guest\n"), "{hosts}");
    assert_eq!(
        get(&f, "etc/sysconfig/ifconfig.xenbr0").content,
        "TYPE=bridge\nADDRESS=10.0.0.1/24\nGATEWAY=10.0.0.254\n"
    );
    assert_eq!(
        get(&f, "etc/sysconfig/ifconfig.eth0").content,
        "TYPE=ethernet\nBRIDGE=xenbr0\n"
    );
    assert_eq!(
        get(&f, "etc/resolv.conf").content.lines().last(),
        Some("nameserver 10.0.0.253")
    );
    assert!(get(&f, "etc/sysconfig/firewall")
        .content
        .contains("TCP_PORTS=\"22\""));
    // Guests: all in /etc/xen, the autostarted ones numbered in the profile's order.
    for g in ["demo", "web", "dns"] {
        get(&f, &format!("etc/xen/{g}.cfg"));
    }
    let auto: Vec<&str> = f
        .iter()
        .filter_map(|x| x.path.strip_prefix("etc/xen/auto/"))
        .collect();
    assert_eq!(auto, [auto_name(1, "web"), auto_name(2, "dns")]);
    assert!(auto_name(1, "web") < auto_name(2, "dns"));
    // The watchdog: its scripts, and the hooks the boot scripts run.
    get(&f, "usr/sbin/xlfs-boot-ok");
    get(&f, "usr/sbin/xlfs-boot-watchdog");
    assert!(get(&f, "etc/rc.d/init.d/xlfs-watchdog")
        .content
        .contains("/usr/sbin/xlfs-boot-watchdog 180"));
    let rc = include_str!("../../../book/lfs/ch9/bootscripts/rc");
    assert!(
        rc.contains("/etc/rc.d/multi-user.d/*"),
        "rc runs the multi-user hooks"
    );
    assert!(rc.contains("echo \"xlfs: multi-user (runlevel $runlevel) reached\""));
    assert_eq!(MULTI_USER_MARK, "xlfs: multi-user (runlevel 3) reached");
    let l = links();
    assert!(l.contains(&("etc/rc.d/rcS.d/S02xlfs-watchdog", "../init.d/xlfs-watchdog")));
    assert!(l.iter().any(|(p, _)| p.starts_with("etc/rc.d/multi-user.d/")));
    // The watchdog starts after mountvirtfs (S00: /proc and /run) in the LFS runlevel S.
    let recipe = include_str!("../../../book/lfs/ch9/lfs-bootscripts.toml");
    assert!(recipe.contains("link S S00 mountvirtfs"));
    // Root's key comes from the machine configuration (none in host.toml: check-credentials).
    assert!(!f.iter().any(|x| x.path == "root/.ssh/authorized_keys"));
}
