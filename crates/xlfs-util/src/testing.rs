//! Test support shared by the crates' test suites (the `testing` feature, for dev-dependencies
//! only): things a test of xlfs as an ordinary user needs from the machine.

use std::process::Command;

/// A system user `name` with the subordinate id range `sub..sub + 65536` in `/etc/subuid` and
/// `/etc/subgid`, made once and idempotently (run as root); returns its uid and gid. Give each
/// suite its own name and range, away from adduser's (100000+) and xlfs's root default.
pub fn user_with_subids(name: &str, sub: u32) -> (u32, u32) {
    let id = |flag: &str| {
        Command::new("id")
            .args([flag, name])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse::<u32>().ok())
    };
    if id("-u").is_none() {
        let st = Command::new("useradd")
            .args([
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                name,
            ])
            .status()
            .unwrap();
        // Another suite running at the same time may have made it first.
        assert!(st.success() || id("-u").is_some(), "useradd {name}");
    }
    for file in ["/etc/subuid", "/etc/subgid"] {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        if !text.lines().any(|l| l.starts_with(&format!("{name}:"))) {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(file)
                .unwrap();
            writeln!(f, "{name}:{sub}:65536").unwrap();
        }
    }
    (id("-u").unwrap(), id("-g").unwrap())
}
