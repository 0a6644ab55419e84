//! The machine configuration of a host: the extra keys of a profile's `[host]` table that
//! replace the old interactive prompts and `machine.config`.
//!
//! ```toml
//! [host]
//! fqdn = "xen1.example.org"
//! gateway = "192.168.1.1"
//! dns = ["192.168.1.1"]
//! ntp = ["pool.ntp.org"]
//! timezone = "Europe/Berlin"
//! locale = "en_US.UTF-8"
//! march = "x86-64-v3"                 # goes into every package's build key and CFLAGS
//! root-password = "$y$j9T$...$..."    # a crypt(3) hash, or "none"
//! ssh-keys = ["ssh-ed25519 AAAAC3Nza... admin@laptop"]
//! serial = { port = "com1", speed = 115200 }
//! dom0-memory = 1024                  # MiB: Xen's dom0_mem=
//! dom0-vcpus = 2                      # Xen's dom0_max_vcpus=
//! interfaces = [
//!   { name = "eth0", bridge = "xenbr0" },
//!   { name = "eth1", address = "dhcp" },
//! ]
//! ```
//!
//! Secrets (the password hash, the SSH keys) are kept in [`Secret`], whose `Debug` and
//! `Serialize` show only a hash of the value, so they never reach a log or a key as plain text.

use crate::diag::Sink;
use crate::profile::{Bridge, Cidr};
use crate::reader::{At, Reader};
use serde::{Serialize, Serializer};
use sha2::{Digest, Sha256};
use std::net::Ipv4Addr;

/// The keys of `[host]` read by [`read`].
pub(crate) const KEYS: &[&str] = &[
    "fqdn",
    "interfaces",
    "gateway",
    "dns",
    "ntp",
    "timezone",
    "locale",
    "march",
    "root-password",
    "ssh-keys",
    "serial",
    "dom0-memory",
    "dom0-vcpus",
];

/// A value that must not appear in logs or keys: `Debug`, `Display` and `Serialize` give
/// `sha256:` and the first 16 hex digits of its hash. [`Secret::expose`] gives the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }
    /// The plain value, for writing it where it belongs (`/etc/shadow`, `authorized_keys`).
    pub fn expose(&self) -> &str {
        &self.0
    }
    /// What stands for the value in logs and keys.
    pub fn fingerprint(&self) -> String {
        let h = hex::encode(Sha256::digest(self.0.as_bytes()));
        format!("sha256:{}", &h[..16])
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret({})", self.fingerprint())
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.fingerprint())
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.fingerprint())
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RootPassword {
    /// `"none"`: root has no password (locked: `!` in /etc/shadow); log in with a key.
    None,
    /// A crypt(3) hash: SHA-512 (`$6$`) or yescrypt (`$y$`).
    Hash(Secret),
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub enum IfAddress {
    /// No address of its own (a bridge port, or down).
    None,
    Dhcp,
    Static(Cidr),
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub address: IfAddress,
    /// The host bridge this interface is a port of.
    pub bridge: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Serial {
    /// 1 to 4: com1/ttyS0 …
    pub port: u8,
    pub speed: u32,
}

impl Serial {
    /// Xen's name of the port: `com1`.
    pub fn xen(&self) -> String {
        format!("com{}", self.port)
    }
    /// Linux's name of the port: `ttyS0`.
    pub fn linux(&self) -> String {
        format!("ttyS{}", self.port - 1)
    }
    /// GRUB's `serial --unit=`.
    pub fn unit(&self) -> u8 {
        self.port - 1
    }
}

impl Default for Serial {
    fn default() -> Self {
        Serial {
            port: 1,
            speed: 115200,
        }
    }
}

/// The machine configuration of a host. Every field is optional in the profile; the defaults
/// are the quick profile's behaviour (nothing generated, nothing in the keys).
#[derive(Debug, Clone, Serialize, PartialEq, Eq, Default)]
pub struct Machine {
    pub fqdn: Option<String>,
    pub interfaces: Vec<Interface>,
    pub gateway: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    pub ntp: Vec<String>,
    /// A zone name (`Europe/Berlin`, `UTC`); the assembly checks it exists in zoneinfo.
    pub timezone: Option<String>,
    pub locale: Option<String>,
    /// `-march=` for every package built for this host; part of their keys.
    pub march: Option<String>,
    /// Absent: the packages' own /etc/shadow stays as it is.
    pub root_password: Option<RootPassword>,
    pub ssh_keys: Vec<Secret>,
    pub serial: Option<Serial>,
    /// MiB for dom0 (`dom0_mem=NM,max:NM`).
    pub dom0_memory_mib: Option<u32>,
    /// `dom0_max_vcpus=`.
    pub dom0_vcpus: Option<u32>,
}

impl Machine {
    /// The Xen command-line options generated from the machine configuration.
    pub fn xen_options(&self) -> Vec<String> {
        let mut o = Vec::new();
        if let Some(s) = &self.serial {
            o.push(format!("console={},vga", s.xen()));
            o.push(format!("{}={},8n1", s.xen(), s.speed));
        }
        if let Some(m) = self.dom0_memory_mib {
            o.push(format!("dom0_mem={m}M,max:{m}M"));
        }
        if let Some(v) = self.dom0_vcpus {
            o.push(format!("dom0_max_vcpus={v}"));
        }
        o
    }
}

/// A crypt(3) hash of SHA-512 (`$6$[rounds=N$]SALT$HASH`, 86 hash characters) or yescrypt
/// (`$y$PARAMS$SALT$HASH`, 43 hash characters).
pub fn valid_crypt_hash(h: &str) -> bool {
    let b64 = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'.' || c == b'/')
    };
    if let Some(rest) = h.strip_prefix("$6$") {
        let mut parts: Vec<&str> = rest.split('$').collect();
        if parts.len() == 3 {
            let rounds = parts.remove(0);
            let Some(n) = rounds.strip_prefix("rounds=") else {
                return false;
            };
            if !n.parse::<u32>().is_ok_and(|n| (1000..=999_999_999).contains(&n)) {
                return false;
            }
        }
        return parts.len() == 2
            && b64(parts[0])
            && parts[0].len() <= 16
            && parts[1].len() == 86
            && b64(parts[1]);
    }
    if let Some(rest) = h.strip_prefix("$y$") {
        let parts: Vec<&str> = rest.split('$').collect();
        return parts.len() == 3 && b64(parts[0]) && b64(parts[1]) && parts[2].len() == 43 && b64(parts[2]);
    }
    false
}

/// Key types accepted in `ssh-keys` (what a current OpenSSH server accepts by default).
pub const SSH_KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

/// Why an `authorized_keys` line is not a public key we accept; `None` when it is.
/// The line is `TYPE BASE64 [COMMENT]`; the base64 blob must decode and start with TYPE.
pub fn ssh_key_problem(line: &str) -> Option<String> {
    use base64::Engine;
    let mut parts = line.split_whitespace();
    let (Some(kind), Some(blob)) = (parts.next(), parts.next()) else {
        return Some("is not `TYPE BASE64 [COMMENT]`".into());
    };
    if line.contains('\n') {
        return Some("holds a line break: give one key per list entry".into());
    }
    if !SSH_KEY_TYPES.contains(&kind) {
        return Some(format!(
            "has key type `{}`, which is not accepted (options before the type are not supported either)",
            kind.chars().take(40).collect::<String>()
        ));
    }
    let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(blob) else {
        return Some("has a key that is not valid base64".into());
    };
    // RFC 4253: string (u32 length + bytes) of the key type, then the key's fields.
    let inner = bytes
        .get(..4)
        .map(|l| u32::from_be_bytes([l[0], l[1], l[2], l[3]]) as usize)
        .and_then(|n| bytes.get(4..4 + n));
    if inner != Some(kind.as_bytes()) || bytes.len() < 4 + kind.len() + 16 {
        return Some(format!("has a key whose contents are not a `{kind}` key"));
    }
    None
}

/// A time zone name as in the tz database: `UTC`, `Europe/Berlin`, `America/Argentina/Salta`,
/// `Etc/GMT+2`. Whether the zone exists is checked against zoneinfo when the image is assembled.
pub fn valid_timezone(tz: &str) -> bool {
    !tz.is_empty()
        && tz.len() <= 64
        && tz.split('/').all(|p| {
            p.starts_with(|c: char| c.is_ascii_alphabetic())
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '+'))
        })
}

/// A locale name: `C`, `POSIX`, `C.UTF-8`, `en_US.UTF-8`, `de_DE@euro`.
pub fn valid_locale(l: &str) -> bool {
    if matches!(l, "C" | "POSIX" | "C.UTF-8" | "C.utf8") {
        return true;
    }
    let (rest, modifier) = match l.split_once('@') {
        Some((r, m)) => (r, Some(m)),
        None => (l, None),
    };
    let (lang_terr, codeset) = match rest.split_once('.') {
        Some((lt, c)) => (lt, Some(c)),
        None => (rest, None),
    };
    let (lang, terr) = match lang_terr.split_once('_') {
        Some((a, t)) => (a, Some(t)),
        None => (lang_terr, None),
    };
    (2..=3).contains(&lang.len())
        && lang.chars().all(|c| c.is_ascii_lowercase())
        && terr.is_none_or(|t| t.len() == 2 && t.chars().all(|c| c.is_ascii_uppercase()))
        && codeset.is_none_or(|c| !c.is_empty() && c.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        && modifier.is_none_or(|m| !m.is_empty() && m.chars().all(|c| c.is_ascii_alphanumeric()))
}

/// A `-march=` value gcc could know: lowercase letters, digits, `-`, `.`, `_`. `native` is
/// refused because it depends on the build machine, which the key cannot see.
pub fn march_problem(m: &str) -> Option<&'static str> {
    if m == "native" {
        return Some("means whatever the build machine is, which the build's key cannot see");
    }
    let ok = m.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && m.len() <= 40
        && m.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.' | '_'));
    (!ok).then_some("is not a CPU name gcc's -march= takes")
}

/// A Linux interface name: 1–15 characters, no `/`, whitespace or `:`.
fn valid_ifname(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 15
        && n != "."
        && n != ".."
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn ipv4(sink: &mut Sink, field: String, s: &At<String>) -> Option<Ipv4Addr> {
    match s.value.parse::<Ipv4Addr>() {
        Ok(a) => Some(a),
        Err(_) => {
            sink.error(
                s.span.clone(),
                field,
                format!("`{}` is not an IPv4 address", s.value),
                Some("write four numbers 0–255, e.g. \"192.168.1.1\"".into()),
            );
            None
        }
    }
}

fn optional_number(
    sink: &mut Sink,
    r: &mut Reader,
    key: &str,
    min: u32,
    max: u32,
    unit: &str,
) -> Option<u32> {
    let At { value, span } = r.integer(sink, key)?;
    if value < min as i64 || value > max as i64 {
        sink.error(
            span,
            r.field(key),
            format!("{value} is out of range"),
            Some(format!("use a value between {min} and {max}{unit}")),
        );
        return None;
    }
    Some(value as u32)
}

/// Read the machine configuration from `[host]` (`h`); `bridge` is the host's bridge, which
/// interfaces may join and the gateway may be reached through.
pub(crate) fn read(sink: &mut Sink, h: &mut Reader, bridge: Option<&Bridge>) -> Machine {
    let mut m = Machine::default();

    if let Some(f) = h.string(sink, "fqdn") {
        if crate::profile::valid_hostname(&f.value) && f.value.contains('.') && !f.value.ends_with('.') {
            m.fqdn = Some(f.value);
        } else {
            sink.error(
                f.span,
                h.field("fqdn"),
                format!("`{}` is not a fully qualified domain name", f.value),
                Some("write the host name with its domain, e.g. \"xen1.example.org\"".into()),
            );
        }
    }

    // Networks the host has a static address in (for the gateway check).
    let mut networks: Vec<Cidr> = bridge.map(|b| b.address.clone()).into_iter().collect();
    let mut dhcp = false;
    for mut i in h.tables(sink, "interfaces") {
        let name = i.required_string(sink, "name", "\"eth0\"");
        let name = match name {
            Some(n) if valid_ifname(&n.value) => Some(n.value),
            Some(n) => {
                sink.error(
                    n.span,
                    i.field("name"),
                    format!("`{}` is not a network interface name", n.value),
                    Some("use up to 15 letters, digits, '-', '_' or '.', e.g. \"eth0\" or \"enp1s0\"".into()),
                );
                None
            }
            None => None,
        };
        if let Some(n) = &name {
            if m.interfaces.iter().any(|o| &o.name == n) {
                sink.error(
                    i.span(),
                    i.field("name"),
                    format!("two interfaces are named `{n}`"),
                    None,
                );
            }
        }
        let mut address = IfAddress::None;
        let addr_at = i.string(sink, "address");
        if let Some(a) = &addr_at {
            if a.value == "dhcp" {
                address = IfAddress::Dhcp;
                dhcp = true;
            } else if let Some(c) = Cidr::parse(&a.value) {
                networks.push(c.clone());
                address = IfAddress::Static(c);
            } else {
                sink.error(
                    a.span.clone(),
                    i.field("address"),
                    format!(
                        "`{}` is neither \"dhcp\" nor an IPv4 address with a prefix length",
                        a.value
                    ),
                    Some("write \"dhcp\" or ADDRESS/PREFIX, e.g. \"192.168.1.10/24\"".into()),
                );
            }
        }
        let mut port_of = None;
        if let Some(b) = i.string(sink, "bridge") {
            match bridge {
                Some(hb) if hb.name == b.value => {
                    if let Some(a) = &addr_at {
                        sink.error(
                            a.span.clone(),
                            i.field("address"),
                            format!("`{}` is a port of bridge `{}`, so it has no address of its own", name.as_deref().unwrap_or("?"), b.value),
                            Some("remove `address`: the bridge's address (host.bridge.address) is the host's on that network".into()),
                        );
                    }
                    port_of = Some(b.value);
                }
                Some(hb) => sink.error(
                    b.span,
                    i.field("bridge"),
                    format!("no bridge `{}` on the host", b.value),
                    Some(format!("the host's bridge is `{}`", hb.name)),
                ),
                None => sink.error(
                    b.span,
                    i.field("bridge"),
                    format!("the host has no bridge `{}`", b.value),
                    Some("add host.bridge = { name = \"xenbr0\", address = \"10.0.0.1/24\" }".into()),
                ),
            }
        }
        i.finish(sink, &["name", "address", "bridge"]);
        if let Some(name) = name {
            m.interfaces.push(Interface {
                name,
                address,
                bridge: port_of,
            });
        }
    }

    if let Some(g) = h.string(sink, "gateway") {
        if let Some(a) = ipv4(sink, h.field("gateway"), &g) {
            let reachable = networks.iter().any(|n| {
                n.same_network(&Cidr {
                    addr: a,
                    prefix: n.prefix,
                })
            });
            if !reachable && !dhcp {
                let nets: Vec<String> = networks.iter().map(|n| n.to_string()).collect();
                sink.error(
                    g.span,
                    h.field("gateway"),
                    format!("{a} is in none of the host's networks ({})", if nets.is_empty() { "it has none".into() } else { nets.join(", ") }),
                    Some("give an interface or the bridge an address in the gateway's network, or fix the gateway".into()),
                );
            } else if networks.iter().any(|n| n.addr == a) {
                sink.error(
                    g.span,
                    h.field("gateway"),
                    format!("{a} is the host's own address"),
                    Some("name the router's address, not the host's".into()),
                );
            } else {
                m.gateway = Some(a);
            }
        }
    }

    for d in h.string_list(sink, "dns").unwrap_or_default() {
        if let Some(a) = ipv4(sink, h.field("dns"), &d) {
            m.dns.push(a);
        }
    }
    for n in h.string_list(sink, "ntp").unwrap_or_default() {
        if n.value.parse::<Ipv4Addr>().is_ok() || crate::profile::valid_hostname(&n.value) {
            m.ntp.push(n.value);
        } else {
            sink.error(
                n.span,
                h.field("ntp"),
                format!("`{}` is neither a host name nor an IPv4 address", n.value),
                Some("name an NTP server, e.g. \"pool.ntp.org\"".into()),
            );
        }
    }

    if let Some(t) = h.string(sink, "timezone") {
        if valid_timezone(&t.value) {
            m.timezone = Some(t.value);
        } else {
            sink.error(
                t.span,
                h.field("timezone"),
                format!("`{}` is not a time zone name", t.value),
                Some("use a tz database name, e.g. \"UTC\" or \"Europe/Berlin\"".into()),
            );
        }
    }
    if let Some(l) = h.string(sink, "locale") {
        if valid_locale(&l.value) {
            m.locale = Some(l.value);
        } else {
            sink.error(
                l.span,
                h.field("locale"),
                format!("`{}` is not a locale name", l.value),
                Some("use LANGUAGE_TERRITORY.CODESET, e.g. \"en_US.UTF-8\", or \"C.UTF-8\"".into()),
            );
        }
    }
    if let Some(a) = h.string(sink, "march") {
        match march_problem(&a.value) {
            None => m.march = Some(a.value),
            Some(why) => sink.error(
                a.span,
                h.field("march"),
                format!("`{}` {why}", a.value),
                Some("name the CPU generation, e.g. \"x86-64-v2\", \"x86-64-v3\" or \"znver3\"".into()),
            ),
        }
    }

    // Secrets: the messages name the field and the problem, never the value.
    if let Some(p) = h.string(sink, "root-password") {
        if p.value == "none" {
            m.root_password = Some(RootPassword::None);
        } else if valid_crypt_hash(&p.value) {
            m.root_password = Some(RootPassword::Hash(Secret::new(p.value)));
        } else {
            let what = if p.value.starts_with('$') {
                "is not a SHA-512 (`$6$`) or yescrypt (`$y$`) crypt hash"
            } else {
                "looks like a plain password, not a hash"
            };
            sink.error(
                p.span,
                h.field("root-password"),
                format!("the value {what} (not shown)"),
                Some("write a hash from `mkpasswd -m yescrypt` or `openssl passwd -6`, or \"none\" for key-only logins".into()),
            );
        }
    }
    if let Some(keys) = h.string_list(sink, "ssh-keys") {
        for (n, k) in keys.into_iter().enumerate() {
            match ssh_key_problem(&k.value) {
                None => m.ssh_keys.push(Secret::new(k.value.trim())),
                Some(why) => sink.error(
                    k.span,
                    format!("{}[{n}]", h.field("ssh-keys")),
                    format!("the key {why}"),
                    Some("paste one line of an OpenSSH public key file (~/.ssh/id_ed25519.pub): `ssh-ed25519 AAAA… comment`".into()),
                ),
            }
        }
    }

    if let Some(mut s) = h.table(sink, "serial") {
        let mut serial = Serial::default();
        if let Some(p) = s.string(sink, "port") {
            match p.value.as_str() {
                "com1" => serial.port = 1,
                "com2" => serial.port = 2,
                "com3" => serial.port = 3,
                "com4" => serial.port = 4,
                other => sink.error(
                    p.span,
                    s.field("port"),
                    format!("unknown serial port `{other}`"),
                    Some("use \"com1\" (ttyS0) to \"com4\" (ttyS3)".into()),
                ),
            }
        }
        if let Some(sp) = s.integer(sink, "speed") {
            const SPEEDS: &[i64] = &[9600, 19200, 38400, 57600, 115200];
            if SPEEDS.contains(&sp.value) {
                serial.speed = sp.value as u32;
            } else {
                sink.error(
                    sp.span,
                    s.field("speed"),
                    format!("{} is not a serial speed GRUB, Xen and Linux all take", sp.value),
                    Some("use 9600, 19200, 38400, 57600 or 115200".into()),
                );
            }
        }
        s.finish(sink, &["port", "speed"]);
        m.serial = Some(serial);
    }
    m.dom0_memory_mib = optional_number(sink, h, "dom0-memory", 128, 1 << 20, " MiB");
    m.dom0_vcpus = optional_number(sink, h, "dom0-vcpus", 1, 512, "");
    m
}

/// Conflicts between the generated Xen options and a hand-written `xen-cmdline`.
pub(crate) fn check_xen_cmdline(sink: &mut Sink, m: &Machine, cmdline: &At<String>) {
    let has = |opt: &str| cmdline.value.split_whitespace().any(|w| w.starts_with(opt));
    let mut clash = |opt: &str, key: &str| {
        sink.error(
            cmdline.span.clone(),
            "host.xen-cmdline",
            format!("`{opt}` is set by host.{key} too"),
            Some(format!("remove `{opt}…` from xen-cmdline: host.{key} writes it")),
        );
    };
    if m.dom0_memory_mib.is_some() && has("dom0_mem=") {
        clash("dom0_mem=", "dom0-memory");
    }
    if m.dom0_vcpus.is_some() && has("dom0_max_vcpus=") {
        clash("dom0_max_vcpus=", "dom0-vcpus");
    }
    if let Some(s) = &m.serial {
        if has("console=") {
            clash("console=", "serial");
        }
        if has(&format!("{}=", s.xen())) {
            clash(&format!("{}=", s.xen()), "serial");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::{parse_profile, Profile};
    use std::path::Path;

    // `ssh-keygen -t ed25519 -C admin@laptop`
    const ED25519: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJYRch0E2Zkxt8T/4TIEnwPjIqM/QtIZKGLzl/4zTJrp admin@laptop";
    // `openssl passwd -6 -salt saltsalt secret`
    const SHA512: &str =
        "$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1";
    // `mkpasswd -m yescrypt secret` (Python crypt with that salt)
    const YESCRYPT: &str = "$y$j9T$PaFbZ4Kp7ZGv8M0MaOwlw/$fM7HRFkH1AsLOVJe2NfCIIoO37LKAGdec.GFwv9FWYB";

    fn host(extra: &str) -> String {
        format!(
            "[host]\nxen = \"xen\"\nkernel = \"linux\"\nxen-cmdline = \"console=com1\"\nbridge = {{ name = \"xenbr0\", address = \"10.0.0.1/24\" }}\n{extra}\n"
        )
    }

    fn parse(text: &str) -> Result<Profile, String> {
        let (p, d) = parse_profile(Path::new("profiles/t.toml"), "t", text);
        match p {
            Some(p) if d.is_empty() => Ok(p),
            _ => Err(d.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("\n")),
        }
    }

    /// The only problem is `want` (with file, line and field), and it offers a fix.
    fn fails(extra: &str, want: &str) -> String {
        let err = parse(&host(extra)).expect_err(extra);
        assert!(err.contains(want), "{err}\n(wanted {want})");
        assert!(
            err.starts_with("profiles/t.toml:6:") || err.starts_with("profiles/t.toml:7:"),
            "{err}"
        );
        assert!(err.contains("\n  help: "), "{err}");
        assert_eq!(err.matches("profiles/t.toml").count(), 1, "{err}");
        err
    }

    #[test]
    fn a_full_machine_configuration_is_read() {
        let p = parse(&host(&format!(
            r#"fqdn = "xen1.example.org"
interfaces = [{{ name = "eth0", bridge = "xenbr0" }}, {{ name = "eth1", address = "dhcp" }}, {{ name = "eth2", address = "192.168.5.2/24" }}]
gateway = "10.0.0.254"
dns = ["10.0.0.254", "9.9.9.9"]
ntp = ["pool.ntp.org", "10.0.0.254"]
timezone = "America/Argentina/Salta"
locale = "en_US.UTF-8"
march = "x86-64-v3"
root-password = "{YESCRYPT}"
ssh-keys = ["{ED25519}"]
dom0-memory = 1024
dom0-vcpus = 2
"#
        )))
        .unwrap();
        let m = &p.host.machine;
        assert_eq!(m.fqdn.as_deref(), Some("xen1.example.org"));
        assert_eq!(m.interfaces.len(), 3);
        assert_eq!(m.interfaces[0].bridge.as_deref(), Some("xenbr0"));
        assert_eq!(m.interfaces[0].address, IfAddress::None);
        assert_eq!(m.interfaces[1].address, IfAddress::Dhcp);
        assert_eq!(
            m.interfaces[2].address,
            IfAddress::Static(Cidr::parse("192.168.5.2/24").unwrap())
        );
        assert_eq!(m.gateway, Some("10.0.0.254".parse().unwrap()));
        assert_eq!(m.dns.len(), 2);
        assert_eq!(m.ntp, ["pool.ntp.org", "10.0.0.254"]);
        assert_eq!(m.march.as_deref(), Some("x86-64-v3"));
        assert_eq!(m.root_password, Some(RootPassword::Hash(Secret::new(YESCRYPT))));
        assert_eq!(m.ssh_keys[0].expose(), ED25519);
        assert_eq!(
            p.host.xen_command_line(),
            "console=com1 dom0_mem=1024M,max:1024M dom0_max_vcpus=2"
        );
    }

    #[test]
    fn secrets_never_show_in_debug_or_json() {
        let p = parse(&host(&format!(
            "root-password = \"{SHA512}\"\nssh-keys = [\"{ED25519}\"]"
        )))
        .unwrap();
        let debug = format!("{p:?}");
        let json = serde_json::to_string(&p).unwrap();
        for shown in [debug, json] {
            assert!(!shown.contains("saltsalt"), "{shown}");
            assert!(!shown.contains("AAAAC3Nz"), "{shown}");
            assert!(shown.contains("sha256:"), "{shown}");
        }
        // Bad secrets are not echoed in the error either.
        let err = fails(
            "root-password = \"hunter2\"",
            "host.root-password: the value looks like a plain password",
        );
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn the_quick_profile_has_no_machine_configuration() {
        let p = parse(&host("")).unwrap();
        assert_eq!(p.host.machine, Machine::default());
        assert_eq!(p.host.xen_command_line(), "console=com1");
    }

    #[test]
    fn password_hashes() {
        assert!(valid_crypt_hash(SHA512));
        assert!(valid_crypt_hash(YESCRYPT));
        assert!(valid_crypt_hash(&SHA512.replace("$6$", "$6$rounds=5000$")));
        assert!(!valid_crypt_hash(&SHA512[..SHA512.len() - 1]));
        assert!(
            !valid_crypt_hash("$1$abc$abcdefghijklmnopqrstuv"),
            "MD5 is refused"
        );
        assert!(!valid_crypt_hash("$6$rounds=10$saltsalt$x"));
        assert!(!valid_crypt_hash(&YESCRYPT.replace("j9T", "j9T$x")));
        assert!(parse(&host("root-password = \"none\"")).is_ok());
        fails(
            "root-password = \"$1$abc$abcdefghijklmnopqrstuv\"",
            "profiles/t.toml:6:17: host.root-password: the value is not a SHA-512 (`$6$`) or yescrypt (`$y$`) crypt hash (not shown)\n  help: write a hash from `mkpasswd -m yescrypt`",
        );
    }

    #[test]
    fn ssh_keys() {
        assert_eq!(ssh_key_problem(ED25519), None);
        assert_eq!(ssh_key_problem(&ED25519.replace(" admin@laptop", "")), None);
        // The blob says ssh-ed25519, the type says ssh-rsa.
        assert!(ssh_key_problem(&ED25519.replace("ssh-ed25519", "ssh-rsa"))
            .unwrap()
            .contains("not a `ssh-rsa` key"));
        assert!(ssh_key_problem("ssh-dss AAAAB3NzaC1kc3MAAACBAP")
            .unwrap()
            .contains("`ssh-dss`"));
        assert!(ssh_key_problem("ssh-ed25519 not*base64")
            .unwrap()
            .contains("base64"));
        assert!(ssh_key_problem("ssh-ed25519").is_some());
        assert!(ssh_key_problem("from=\"1.2.3.4\" ssh-ed25519 AAAA").is_some());
        let err = fails(
            "ssh-keys = [\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5\"]",
            ":6:13: host.ssh-keys[0]: the key has a key whose contents are not a `ssh-ed25519` key",
        );
        assert!(!err.contains("AAAAC3"), "{err}");
    }

    #[test]
    fn time_zone_and_locale() {
        for ok in [
            "UTC",
            "Europe/Berlin",
            "Etc/GMT+2",
            "America/Argentina/Salta",
            "America/Port-au-Prince",
        ] {
            assert!(valid_timezone(ok), "{ok}");
        }
        for bad in [
            "",
            "/etc/passwd",
            "Europe/../../etc",
            "Europe//Berlin",
            "Europe/Berlin ",
            "1Zone",
        ] {
            assert!(!valid_timezone(bad), "{bad}");
        }
        for ok in [
            "C",
            "POSIX",
            "C.UTF-8",
            "en_US.UTF-8",
            "de_DE@euro",
            "fr_FR",
            "ast_ES.UTF-8",
        ] {
            assert!(valid_locale(ok), "{ok}");
        }
        for bad in ["", "english", "en_us.UTF-8", "en_US.", "EN_US", "en_US.UTF-8@"] {
            assert!(!valid_locale(bad), "{bad}");
        }
        fails(
            "timezone = \"Europe/../Berlin\"",
            ":6:12: host.timezone: `Europe/../Berlin` is not a time zone name",
        );
        fails(
            "locale = \"en-US\"",
            ":6:10: host.locale: `en-US` is not a locale name",
        );
    }

    #[test]
    fn march() {
        assert_eq!(march_problem("x86-64-v2"), None);
        assert_eq!(march_problem("znver3"), None);
        fails(
            "march = \"native\"",
            ":6:9: host.march: `native` means whatever the build machine is",
        );
        fails(
            "march = \"x86-64 -O0\"",
            ":6:9: host.march: `x86-64 -O0` is not a CPU name gcc's -march= takes",
        );
    }

    #[test]
    fn network() {
        fails(
            "fqdn = \"xen1\"",
            ":6:8: host.fqdn: `xen1` is not a fully qualified domain name",
        );
        fails(
            "gateway = \"10.0.0\"",
            ":6:11: host.gateway: `10.0.0` is not an IPv4 address",
        );
        fails(
            "gateway = \"10.1.0.1\"",
            ":6:11: host.gateway: 10.1.0.1 is in none of the host's networks (10.0.0.1/24)",
        );
        fails(
            "gateway = \"10.0.0.1\"",
            "host.gateway: 10.0.0.1 is the host's own address",
        );
        fails(
            "dns = [\"1.1.1.1\", \"dns.example\"]",
            ":6:19: host.dns: `dns.example` is not an IPv4 address",
        );
        fails(
            "ntp = [\"not a host\"]",
            ":6:8: host.ntp: `not a host` is neither a host name nor an IPv4 address",
        );
        fails(
            "interfaces = [{ name = \"eth0/1\" }]",
            ":6:24: host.interfaces[0].name: `eth0/1` is not a network interface name",
        );
        fails(
            "interfaces = [{ name = \"eth0\", address = \"10.0.0.5\" }]",
            ":6:42: host.interfaces[0].address: `10.0.0.5` is neither \"dhcp\" nor an IPv4 address with a prefix length",
        );
        fails(
            "interfaces = [{ name = \"eth0\", bridge = \"br1\" }]",
            ":6:41: host.interfaces[0].bridge: no bridge `br1` on the host\n  help: the host's bridge is `xenbr0`",
        );
        fails(
            "interfaces = [{ name = \"eth0\", bridge = \"xenbr0\", address = \"dhcp\" }]",
            ":6:61: host.interfaces[0].address: `eth0` is a port of bridge `xenbr0`, so it has no address of its own",
        );
        fails(
            "interfaces = [{ name = \"eth0\", mtu = 9000 }]",
            "host.interfaces[0].mtu",
        );
        // DHCP: the gateway may be anywhere.
        assert!(parse(&host(
            "interfaces = [{ name = \"eth1\", address = \"dhcp\" }]\ngateway = \"172.16.0.1\""
        ))
        .is_ok());
    }

    #[test]
    fn serial_console_and_dom0() {
        let p = parse(
            "[host]\nxen = \"xen\"\nkernel = \"linux\"\nserial = { port = \"com2\", speed = 57600 }\ndom0-memory = 512\n",
        )
        .unwrap();
        let s = p.host.machine.serial.clone().unwrap();
        assert_eq!(
            (s.xen(), s.linux(), s.unit(), s.speed),
            ("com2".into(), "ttyS1".into(), 1, 57600)
        );
        assert_eq!(
            p.host.xen_command_line(),
            "console=com2,vga com2=57600,8n1 dom0_mem=512M,max:512M"
        );
        let serial = |s: &str| {
            parse(&format!(
                "[host]\nxen = \"xen\"\nkernel = \"linux\"\nserial = {s}\n"
            ))
            .unwrap_err()
        };
        let err = serial("{ port = \"ttyS0\" }");
        assert!(
            err.starts_with(
                "profiles/t.toml:4:19: host.serial.port: unknown serial port `ttyS0`\n  help: use \"com1\""
            ),
            "{err}"
        );
        let err = serial("{ speed = 115201 }");
        assert!(
            err.starts_with("profiles/t.toml:4:20: host.serial.speed: 115201 is not a serial speed"),
            "{err}"
        );
        fails(
            "dom0-memory = 64",
            ":6:15: host.dom0-memory: 64 is out of range\n  help: use a value between 128 and 1048576 MiB",
        );
        fails("dom0-vcpus = 0", ":6:14: host.dom0-vcpus: 0 is out of range");
        // A hand-written option that the machine configuration also writes.
        let err = parse(
            "[host]\nxen = \"xen\"\nkernel = \"linux\"\nxen-cmdline = \"dom0_mem=1G loglvl=all\"\ndom0-memory = 512\nserial = {}\n",
        )
        .unwrap_err();
        assert!(
            err.contains(
                "profiles/t.toml:4:15: host.xen-cmdline: `dom0_mem=` is set by host.dom0-memory too"
            ),
            "{err}"
        );
        assert!(!err.contains("console="), "{err}");
        let err =
            parse("[host]\nxen = \"xen\"\nkernel = \"linux\"\nxen-cmdline = \"console=vga\"\nserial = {}\n")
                .unwrap_err();
        assert!(
            err.contains("host.xen-cmdline: `console=` is set by host.serial too"),
            "{err}"
        );
    }
}
