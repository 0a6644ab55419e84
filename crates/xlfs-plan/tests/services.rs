//! The real book's guest services (book/services): every recipe parses, every library a service
//! links is a recipe of its own in its build root, every source is pinned to the Debian pool, and
//! each guest template's runtime closure is exactly its services and their libraries.

use std::collections::BTreeSet;
use std::path::Path;
use xlfs_book::{Book, Recipe};
use xlfs_plan::{build_root, plan, runtime_closure, EnvIds, Reason, Status};

fn book() -> Book {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../book");
    Book::load(&root).unwrap_or_else(|e| panic!("the book loads: {e}"))
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

fn recipe<'a>(b: &'a Book, name: &str) -> &'a Recipe {
    b.get(name)
        .unwrap_or_else(|| panic!("{name}: no recipe in the book"))
}

/// What a package's build root holds beyond the packages the `guest` environment gives every
/// recipe (book.toml `[env.guest] build`), what the toolchain provides, and the filesystem
/// layout (glibc's run dependency, which stays in the closure when the toolchain provides glibc).
fn own_build_root(b: &Book, name: &str) -> BTreeSet<String> {
    let env_pkgs: BTreeSet<String> = b.config.envs["guest"].build.iter().cloned().collect();
    build_root(b, recipe(b, name))
        .into_iter()
        .filter(|d| !env_pkgs.contains(d) && !b.config.host_provides.contains(d) && d != "filesystem")
        .collect()
}

/// Each service and the libraries its build root must hold: exactly these.
const SERVICES: &[(&str, &[&str])] = &[
    // lapp
    ("apr", &[]),
    ("apr-util", &["apr", "expat", "libxcrypt-guest"]),
    ("httpd", &["apr", "apr-util", "pcre2", "expat", "libxcrypt-guest"]),
    ("postgresql", &["zlib-quick"]),
    ("php", &["postgresql", "zlib-quick", "oniguruma", "pcre2"]),
    // mail
    ("postfix", &["openssl-guest", "lmdb", "pcre2"]),
    ("dovecot", &["openssl-guest", "zlib-quick", "libxcrypt-guest"]),
    // libbsd: strlcpy/strlcat, which the toolchain root's glibc lacks; libmd comes with it.
    ("opendkim", &["openssl-guest", "libmilter", "libbsd", "libmd"]),
    ("libbsd", &["libmd"]),
    // dns
    ("bind", &["libuv", "openssl-guest", "liburcu", "libcap-guest"]),
];

/// Each template's packages and their runtime closure (without what every image has: glibc and
/// the filesystem layout).
const TEMPLATES: &[(&str, &[&str], &[&str])] = &[
    (
        "lapp",
        &["httpd", "postgresql", "php"],
        &[
            "httpd",
            "apr",
            // libgcc_s.so.1, which pthread_exit loads (apr's threads).
            "gcc-libs",
            "apr-util",
            "pcre2",
            "expat",
            "libxcrypt-guest",
            "postgresql",
            "zlib-quick",
            "php",
            "oniguruma",
        ],
    ),
    (
        "mail",
        &["postfix", "dovecot", "opendkim"],
        // libmilter is linked statically into opendkim: a build dependency only.
        &[
            "postfix",
            "openssl-guest",
            "lmdb",
            "pcre2",
            "dovecot",
            "zlib-quick",
            "libxcrypt-guest",
            "opendkim",
            "libbsd",
            "libmd",
        ],
    ),
    (
        "dns",
        &["bind"],
        &["bind", "libuv", "openssl-guest", "liburcu", "libcap-guest"],
    ),
];

#[test]
fn each_service_builds_with_its_libraries_as_recipes_of_their_own() {
    let b = book();
    for (name, libs) in SERVICES {
        let r = recipe(&b, name);
        assert_eq!(
            r.env_name.as_deref(),
            Some("guest"),
            "{name}: the services build in the guest environment"
        );
        assert_eq!(own_build_root(&b, name), set(libs), "{name}: build root");
        // What the build root holds at build time is also there at run time, except a static
        // library (libmilter) that is linked in.
        for lib in *libs {
            let static_only = recipe(&b, lib).run_deps.is_empty();
            assert!(
                static_only || runtime_closure(&b, &[name.to_string()]).contains(*lib),
                "{name}: links {lib} but does not list it in depends.run"
            );
        }
    }
}

#[test]
fn each_template_closure_is_its_services_and_their_libraries() {
    let b = book();
    let base = set(&["glibc-quick", "filesystem"]);
    for (template, pkgs, closure) in TEMPLATES {
        let pkgs: Vec<String> = pkgs.iter().map(|s| s.to_string()).collect();
        let got: BTreeSet<String> = runtime_closure(&b, &pkgs)
            .into_iter()
            .filter(|p| !base.contains(p))
            .collect();
        assert_eq!(got, set(closure), "template {template}: runtime closure");
    }
}

#[test]
fn every_service_package_is_pinned_to_the_debian_pool() {
    let b = book();
    let dir = Path::new("services");
    let in_services: Vec<&Recipe> = b.recipes.values().filter(|r| r.path.starts_with(dir)).collect();
    let listed: BTreeSet<String> = SERVICES
        .iter()
        .flat_map(|(n, libs)| std::iter::once(*n).chain(libs.iter().copied()))
        .map(String::from)
        .collect();
    for r in &in_services {
        assert!(
            listed.contains(&r.name),
            "{}: a service recipe no template uses",
            r.name
        );
        assert!(!r.sources.is_empty(), "{}: no source", r.name);
        // Shared objects are checked against what the guest has (guest-needed.sh); libmilter
        // installs only a static archive.
        let checked = r.inputs.contains_key("guest-needed.sh")
            && r.steps
                .get("post-install")
                .is_some_and(|s| s.contains("/book/guest-needed.sh"));
        assert!(
            checked || r.name == "libmilter",
            "{}: post-install does not run /book/guest-needed.sh",
            r.name
        );
        for s in &r.sources {
            let d = s.debian.as_ref().unwrap_or_else(|| {
                panic!(
                    "{}: {} has no debian = {{ package, file, sha256 }}",
                    r.name, s.file
                )
            });
            assert!(
                d.sha256.len() == 64 && d.sha256.bytes().all(|c| c.is_ascii_hexdigit()),
                "{}: {}",
                r.name,
                d.sha256
            );
            assert_eq!(
                s.used(),
                (d.file.as_str(), d.sha256.as_str()),
                "{}: builds the pool's copy",
                r.name
            );
        }
    }
    // Every library of the services is in book/services, or one of the base recipes.
    for name in &listed {
        let r = recipe(&b, name);
        assert!(
            r.path.starts_with(dir) || r.path.starts_with("base"),
            "{name}: {}",
            r.path.display()
        );
    }
}

#[test]
fn the_services_plan_from_an_empty_home_libraries_first() {
    let b = book();
    let targets: Vec<String> = TEMPLATES
        .iter()
        .flat_map(|(_, pkgs, _)| pkgs.iter().map(|s| s.to_string()))
        .collect();
    let envs = EnvIds {
        host: "host-1".into(),
        chroot: "chroot-1".into(),
    };
    let p = plan(&b, &targets, &envs, &|_| None, &|_| false).unwrap();
    let order: Vec<&str> = p.steps.iter().map(|s| s.name.as_str()).collect();
    let at = |n: &str| {
        order
            .iter()
            .position(|o| *o == n)
            .unwrap_or_else(|| panic!("{n} not planned: {order:?}"))
    };
    for (name, libs) in SERVICES {
        for lib in *libs {
            assert!(at(lib) < at(name), "{lib} before {name}: {order:?}");
        }
        assert_eq!(p.get(name).unwrap().status, Status::Build { why: Reason::New });
    }
}

/// The book's guest templates install the services this file expects of them (besides the base
/// system every guest has: the filesystem layout and BusyBox).
#[test]
fn the_guest_templates_install_their_services() {
    let b = book();
    for (template, pkgs, _) in TEMPLATES {
        let t = b
            .guests
            .get(*template)
            .unwrap_or_else(|| panic!("book/guests/{template}.toml is missing"));
        // Besides its services, mail installs the openssl command (first boot makes its keys).
        let got: BTreeSet<String> = t
            .packages
            .iter()
            .filter(|p| *p != "filesystem" && *p != "busybox" && *p != "openssl-guest")
            .cloned()
            .collect();
        assert_eq!(got, set(pkgs), "book/guests/{template}.toml: packages");
    }
}
