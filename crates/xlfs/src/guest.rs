//! `xlfs guest new` and `xlfs guest check`.
//!
//! A guest is a template plus instance settings. `guest new` writes it as a `[[guest]]` table
//! at the end of the profile (comments and formatting of the rest are kept), after checking
//! the whole new profile the way `image` will read it; nothing is written if anything is wrong.

use crate::app::{App, BookFailed};
use crate::args::{GuestCommand, GuestNewArgs};
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;
use toml_edit::{value, Array, DocumentMut, InlineTable, Item, Table};
use xlfs_book::guest::{GuestTemplate, SettingValue};
use xlfs_book::profile::{Cidr, Profile};
use xlfs_book::{suggest, Book, BookErrors, Diagnostic};

pub fn run(app: &App, command: GuestCommand) -> Result<i32> {
    match command {
        GuestCommand::New(args) => {
            let book = app.book()?;
            let path = book.root.join("profiles").join(format!("{}.toml", args.profile));
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read profile `{}` ({})", args.profile, path.display()))?;
            let keys = args
                .ssh_key
                .iter()
                .map(|f| read_public_key(f))
                .collect::<Result<Vec<_>>>()?;
            let new = add_guest(&book, &path, &args.profile, &text, &args, &keys)?;
            let tmp = path.with_extension("toml.tmp");
            std::fs::write(&tmp, &new).with_context(|| format!("cannot write {}", tmp.display()))?;
            std::fs::rename(&tmp, &path).with_context(|| format!("cannot replace {}", path.display()))?;
            println!(
                "guest `{}` (template `{}`) added to {}; `xlfs image {}` makes its disk and xl.cfg",
                args.name,
                args.template,
                path.display(),
                args.profile
            );
            Ok(0)
        }
        GuestCommand::Check { name, profile, accel } => {
            let profile = match profile {
                Some(p) => p,
                None => profile_of(app, &name)?,
            };
            let r = crate::system::boot_check_guests(app, &profile, accel.as_deref(), Some(&name))?;
            println!(
                "guest `{name}` of `{profile}`: all checks passed ({:?}); console log {}",
                r.accel,
                r.log.display()
            );
            Ok(0)
        }
    }
}

/// The one profile that declares guest `name`.
fn profile_of(app: &App, name: &str) -> Result<String> {
    let book = app.book()?;
    let mut found = Vec::new();
    for p in xlfs_book::profile::list_profiles(&book.root) {
        if let Ok(profile) = Profile::load(&book, &p) {
            if profile.guests.iter().any(|g| g.name == name) {
                found.push(p);
            }
        }
    }
    match found.as_slice() {
        [one] => Ok(one.clone()),
        [] => bail!("no profile has a guest `{name}`; create one with `xlfs guest new {name} --template T`"),
        many => bail!(
            "guest `{name}` is in several profiles ({}); say which with --profile",
            many.join(", ")
        ),
    }
}

fn read_public_key(f: &Path) -> Result<String> {
    let text =
        std::fs::read_to_string(f).with_context(|| format!("cannot read the key file {}", f.display()))?;
    if text.contains("PRIVATE KEY") {
        bail!(
            "{} is a private key; give the public key (its .pub file)",
            f.display()
        );
    }
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    match lines.as_slice() {
        [one] => Ok(one.to_string()),
        _ => bail!(
            "{} should hold one public key line (ssh-ed25519 AAAA… comment)",
            f.display()
        ),
    }
}

/// Parse a disk size: MiB, or with a unit M/MiB, G/GiB.
pub fn parse_size_mib(s: &str) -> Option<u32> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u32 = n.parse().ok()?;
    match unit.trim().to_ascii_lowercase().as_str() {
        "" | "m" | "mib" | "mb" => Some(n),
        "g" | "gib" | "gb" => n.checked_mul(1024),
        _ => None,
    }
}

fn problem(field: &str, message: String, help: Option<String>) -> Diagnostic {
    Diagnostic {
        file: "command line".into(),
        line: 0,
        col: 0,
        field: field.into(),
        message,
        help,
    }
}

/// The `--set KEY=VALUE` settings, typed by the template's declarations.
pub fn parse_sets(
    t: &GuestTemplate,
    sets: &[String],
) -> Result<BTreeMap<String, SettingValue>, Vec<Diagnostic>> {
    let mut out = BTreeMap::new();
    let mut errs = Vec::new();
    for s in sets {
        let Some((k, v)) = s.split_once('=') else {
            errs.push(problem(
                "--set",
                format!("`{s}` is not KEY=VALUE"),
                Some("e.g. --set title=Welcome".into()),
            ));
            continue;
        };
        let k = k.trim();
        match t.setting(k) {
            None => errs.push(problem(
                &format!("--set {k}"),
                format!("template `{}` has no setting `{k}`", t.name),
                Some(match suggest(k, t.settings.iter().map(|s| s.name.as_str())) {
                    Some(n) => format!("did you mean `{n}`?"),
                    None => format!(
                        "its settings: {}",
                        t.settings
                            .iter()
                            .map(|s| s.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                }),
            )),
            Some(d) => match d.parse_text(v) {
                Ok(v) => {
                    out.insert(k.to_string(), v);
                }
                Err((m, h)) => errs.push(problem(&format!("--set {k}"), m, Some(h))),
            },
        }
    }
    if errs.is_empty() {
        Ok(out)
    } else {
        Err(errs)
    }
}

/// The profile text with the new guest appended, checked like `xlfs image` reads it.
pub fn add_guest(
    book: &Book,
    path: &Path,
    profile_name: &str,
    text: &str,
    a: &GuestNewArgs,
    ssh_keys: &[String],
) -> Result<String> {
    let fail = |d: Vec<Diagnostic>| anyhow::Error::new(BookFailed(BookErrors(d))).context("nothing written");
    let Some(t) = book.guests.get(&a.template) else {
        let known: Vec<&str> = book.guests.keys().map(|s| s.as_str()).collect();
        return Err(fail(vec![problem(
            "--template",
            format!("no guest template `{}` in the book", a.template),
            Some(match suggest(&a.template, known.iter().copied()) {
                Some(s) => format!("did you mean `{s}`?"),
                None => format!("templates in book/guests/: {}", known.join(", ")),
            }),
        )]));
    };
    let settings = parse_sets(t, &a.set).map_err(fail)?;
    let (current, diags) = xlfs_book::profile::parse_profile(path, profile_name, text);
    let Some(current) = current else {
        return Err(
            anyhow::Error::new(BookFailed(BookErrors(diags))).context("the profile has problems already")
        );
    };
    if current.guests.iter().any(|g| g.name == a.name) {
        bail!("profile `{profile_name}` already has a guest `{}`", a.name);
    }
    let disk = match &a.disk {
        Some(d) => Some(parse_size_mib(d).ok_or_else(|| {
            fail(vec![problem(
                "--disk",
                format!("`{d}` is not a size"),
                Some("write MiB, or e.g. 64M, 1G".into()),
            )])
        })?),
        None => None,
    };

    let mut g = Table::new();
    g.insert("name", value(a.name.as_str()));
    g.insert("template", value(a.template.as_str()));
    g.insert("type", value(a.kind.as_deref().unwrap_or("pvh")));
    if let Some(h) = &a.hostname {
        g.insert("hostname", value(h.as_str()));
    }
    if let Some(m) = a.memory {
        g.insert("memory", value(m as i64));
    }
    if let Some(v) = a.vcpus {
        g.insert("vcpus", value(v as i64));
    }
    if let Some(d) = disk {
        g.insert("disk-size", value(d as i64));
    }
    if let Some(vg) = &a.lvm {
        g.insert("lvm", value(vg.as_str()));
    }
    if a.autostart {
        g.insert("autostart", value(true));
    }
    if !ssh_keys.is_empty() {
        g.insert(
            "ssh-keys",
            value(ssh_keys.iter().map(|s| s.as_str()).collect::<Array>()),
        );
    }
    let bridge = a
        .bridge
        .clone()
        .or_else(|| current.host.bridge.as_ref().map(|b| b.name.clone()));
    if let Some(bridge) = bridge {
        let address = match &a.ip {
            Some(ip) => ip.clone(),
            None => free_address(&current).ok_or_else(|| {
                fail(vec![problem(
                    "--ip",
                    "no free address on the host's bridge".into(),
                    Some("give one with --ip ADDR/PREFIX".into()),
                )])
            })?,
        };
        let mut n = InlineTable::new();
        n.insert("bridge", bridge.as_str().into());
        n.insert("address", address.as_str().into());
        if let Some(m) = &a.mac {
            n.insert("mac", m.as_str().into());
        }
        if let Some(gw) = &a.gateway {
            n.insert("gateway", gw.as_str().into());
        }
        if !a.dns.is_empty() {
            n.insert(
                "dns",
                toml_edit::Value::Array(a.dns.iter().map(|s| s.as_str()).collect()),
            );
        }
        g.insert("network", value(n));
    }
    if !settings.is_empty() {
        let mut s = InlineTable::new();
        for (k, v) in &settings {
            s.insert(k, v.to_toml());
        }
        g.insert("settings", value(s));
    }
    g.decor_mut().set_prefix(format!(
        "\n# `xlfs guest new {}`: template `{}`\n",
        a.name, a.template
    ));

    let mut doc: DocumentMut = text.parse().context("the profile is not valid TOML")?;
    match doc.get_mut("guest") {
        Some(Item::ArrayOfTables(arr)) => arr.push(g),
        Some(_) => bail!("the profile's `guest` is not an array of tables ([[guest]])"),
        None => {
            let mut arr = toml_edit::ArrayOfTables::new();
            arr.push(g);
            doc.insert("guest", Item::ArrayOfTables(arr));
        }
    }
    let new = doc.to_string();
    // The whole new profile, checked as `xlfs image` will read it.
    let (p, mut diags) = xlfs_book::profile::parse_profile(path, profile_name, &new);
    if let Some(mut p) = p {
        diags.extend(p.resolve_templates(book));
        diags.extend(p.check(book));
    }
    if !diags.is_empty() {
        return Err(fail(diags));
    }
    Ok(new)
}

/// The first address of the host's bridge network that neither the host nor a guest has.
fn free_address(p: &Profile) -> Option<String> {
    let b = p.host.bridge.as_ref()?;
    let m = u32::from(b.address.netmask());
    let net = u32::from(b.address.addr) & m;
    let taken: Vec<Ipv4Addr> = std::iter::once(b.address.addr)
        .chain(
            p.guests
                .iter()
                .filter_map(|g| g.network.as_ref().map(|n| n.address.addr)),
        )
        .collect();
    (2..(!m))
        .map(|i| Ipv4Addr::from(net | i))
        .find(|a| !taken.contains(a))
        .map(|a| {
            Cidr {
                addr: a,
                prefix: b.address.prefix,
            }
            .to_string()
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn args(extra: &[&str]) -> GuestNewArgs {
        #[derive(Parser)]
        struct P {
            #[command(flatten)]
            a: GuestNewArgs,
        }
        let mut v = vec!["x"];
        v.extend_from_slice(extra);
        P::parse_from(v).a
    }

    fn book() -> Book {
        Book::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../book")).unwrap()
    }

    const PROFILE: &str = include_str!("../../../book/profiles/quick.toml");

    #[test]
    fn guest_new_appends_a_checked_guest() {
        let b = book();
        let path = b.root.join("profiles/quick.toml");
        let a = args(&[
            "web1",
            "--template",
            "static-web",
            "--type",
            "pv",
            "--set",
            "title=Welcome",
            "--dns",
            "10.0.0.1,9.9.9.9",
        ]);
        let new = add_guest(&b, &path, "quick", PROFILE, &a, &[]).unwrap();
        // The rest of the profile is kept, comments included, in order.
        let mut rest = new.lines();
        for line in PROFILE.lines() {
            assert!(rest.any(|l| l == line), "`{line}` lost:\n{new}");
        }
        assert!(
            new.contains("# `xlfs guest new web1`: template `static-web`\n[[guest]]\nname = \"web1\""),
            "{new}"
        );
        let mut p = xlfs_book::profile::parse_profile(&path, "quick", &new).0.unwrap();
        assert!(p.resolve_templates(&b).is_empty());
        let g = p.guests.iter().find(|g| g.name == "web1").unwrap();
        let n = g.network.as_ref().unwrap();
        assert_eq!(n.address.to_string(), "10.0.0.3/24", "the first free address");
        assert_eq!(n.mac, xlfs_book::profile::derive_mac("web1"));
        assert_eq!(n.dns.len(), 2);
        assert_eq!(g.settings["title"], SettingValue::String("Welcome".into()));
        assert_eq!(
            g.settings["lang"],
            SettingValue::String("en".into()),
            "defaults applied"
        );
        assert!(g.packages.contains(&"busybox".to_string()));
    }

    #[test]
    fn guest_new_refuses_bad_settings_with_the_fix() {
        let b = book();
        let path = b.root.join("profiles/quick.toml");
        for (set, want) in [
            ("theme=blue", "use one of: light, dark"),
            ("lang=english", "pattern [a-z]{2}"),
            ("titel=x", "did you mean `title`?"),
            ("title=<script>", "does not match"),
        ] {
            let a = args(&["web1", "--template", "static-web", "--set", set]);
            let e = format!(
                "{:#}",
                add_guest(&b, &path, "quick", PROFILE, &a, &[]).unwrap_err()
            );
            assert!(e.contains(want) && e.contains("nothing written"), "{set}: {e}");
        }
        let a = args(&["web1", "--template", "static-wb"]);
        let e = format!(
            "{:#}",
            add_guest(&b, &path, "quick", PROFILE, &a, &[]).unwrap_err()
        );
        assert!(e.contains("did you mean `static-web`?"), "{e}");
        let a = args(&["demo", "--template", "static-web"]);
        assert!(
            add_guest(&b, &path, "quick", PROFILE, &a, &[]).is_err(),
            "a second `demo`"
        );
        let a = args(&["web1", "--template", "static-web", "--ip", "192.168.1.5/24"]);
        let e = format!(
            "{:#}",
            add_guest(&b, &path, "quick", PROFILE, &a, &[]).unwrap_err()
        );
        assert!(e.contains("not in the bridge's network"), "{e}");
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size_mib("64"), Some(64));
        assert_eq!(parse_size_mib("64M"), Some(64));
        assert_eq!(parse_size_mib("2G"), Some(2048));
        assert_eq!(parse_size_mib("2T"), None);
        assert_eq!(parse_size_mib("x"), None);
    }
}
