//! The book's service templates (dns, lapp, mail) rendered for the profiles that declare them:
//! configuration, services, first-boot steps, checks and xl.cfg, and instance settings refused
//! at their profile line.

use std::path::Path;
use std::process::Command;
use xlfs_book::guest::CheckOn;
use xlfs_book::profile::{parse_profile, Profile};
use xlfs_system::{guest_files, xl_cfg, GenFile};

fn book() -> xlfs_book::Book {
    xlfs_book::Book::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../book")).unwrap()
}

/// A profile of the real book, with its templates resolved; `edit` changes its text first.
fn profile_with(name: &str, edit: &dyn Fn(String) -> String) -> Result<Profile, String> {
    let b = book();
    let path = b.root.join(format!("profiles/{name}.toml"));
    let text = edit(std::fs::read_to_string(&path).unwrap());
    let (p, d) = parse_profile(&path, name, &text);
    let mut p = p.ok_or_else(|| d.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("\n"))?;
    let d = p.resolve_templates(&b);
    if !d.is_empty() {
        return Err(d.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("\n"));
    }
    Ok(p)
}

fn profile(name: &str) -> Profile {
    profile_with(name, &|t| t).unwrap()
}

fn get<'a>(files: &'a [GenFile], path: &str) -> &'a GenFile {
    files.iter().find(|f| f.path == path).unwrap_or_else(|| {
        panic!(
            "no {path} among {:?}",
            files.iter().map(|f| &f.path).collect::<Vec<_>>()
        )
    })
}

/// The text of each here-document `cat > FILE <<'EOF'` of a shell script, by file.
fn heredocs(script: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut lines = script.lines();
    while let Some(l) = lines.next() {
        if let Some(rest) = l.strip_prefix("cat > ") {
            let file = rest.split_whitespace().next().unwrap().to_string();
            let body: Vec<&str> = lines.by_ref().take_while(|l| *l != "EOF").collect();
            out.push((file, body.join("\n") + "\n"));
        }
    }
    out
}

#[test]
fn dns_renders_named_conf_zones_and_a_first_boot_rndc_key() {
    let p = profile("dns");
    let g = &p.guests[0];
    let files = guest_files(&p, g).unwrap();
    let conf = &get(&files, "etc/bind/named.conf").content;
    for want in [
        "zone \"example.test\" {\n    type primary;\n    file \"/var/bind/pri/example.test.zone\";",
        "zone \"lab.test\" {",
        "allow-recursion { 127.0.0.1; ::1; };",
        "inet 127.0.0.1 port 953 allow { 127.0.0.1; } keys { \"rndc-key\"; };",
        "include \"/etc/bind/rndc.key\";",
    ] {
        assert!(conf.contains(want), "named.conf lacks {want:?}:\n{conf}");
    }
    let script = &get(&files, "etc/bind/zones.sh").content;
    let zones = heredocs(script);
    assert_eq!(zones.len(), 2, "{script}");
    let (file, example) = &zones[0];
    assert_eq!(file, "/var/bind/pri/example.test.zone.new");
    assert!(example
        .contains("@ IN SOA ns1.example.test. hostmaster.example.test. ( 2026113001 3600 900 604800 300 )"));
    assert!(
        example.contains("ns1.example.test. IN A 10.0.0.53\n"),
        "{example}"
    );
    assert!(example.contains("example.test. MX 10 mail.example.test.\n"));
    assert!(example.contains("example.test. TXT \"v=spf1 mx -all\"\n"));
    // Each record goes to its own zone only.
    assert!(!example.contains("db.lab.test."), "{example}");
    let (_, lab) = &zones[1];
    assert!(
        lab.contains("db.lab.test. A 10.0.0.54\n") && !lab.contains("www."),
        "{lab}"
    );

    // named runs the zone script, then drops to its user; ready when rndc answers.
    let rcs = &get(&files, "etc/init.d/rcS").content;
    let first = rcs.find("/etc/xlfs/first-boot").unwrap();
    let named = rcs.find("/etc/xlfs/services/named start").unwrap();
    assert!(first < named, "{rcs}");
    let svc = &get(&files, "etc/xlfs/services/named").content;
    assert!(
        svc.contains("exec named -g -u named -c /etc/bind/named.conf"),
        "{svc}"
    );
    assert!(svc.contains("until ( rndc status ) >/dev/null 2>&1; do"), "{svc}");
    // The rndc key is made on the guest, its output never shown, and no image file is it.
    let fb = &get(&files, "etc/xlfs/first-boot").content;
    assert!(
        fb.contains("rndc-confgen -a -A hmac-sha256 -c /etc/bind/rndc.key"),
        "{fb}"
    );
    assert!(fb.contains(") </dev/null >/dev/null 2>&1; then"), "{fb}");
    assert!(files.iter().all(|f| f.path != "etc/bind/rndc.key"));
    let t = p.template_of(g).unwrap();
    assert_eq!(t.secret_paths(), ["etc/bind/rndc.key"]);

    let cfg = xl_cfg(&p, g, "vmlinuz-6.12.107");
    assert!(cfg.contains("memory = 256\n"), "{cfg}");
    assert!(cfg.contains("target=/var/lib/xen/images/ns1.img"), "{cfg}");
    assert!(cfg.contains("bridge=xenbr0"), "{cfg}");
}

/// The zone files the dns template writes are valid zones for BIND's own checker (the build
/// machine's named-checkzone, package bind9-utils).
#[test]
fn dns_zone_files_pass_named_checkzone() {
    let p = profile("dns");
    let files = guest_files(&p, &p.guests[0]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for (file, body) in heredocs(&get(&files, "etc/bind/zones.sh").content) {
        let zone = Path::new(&file)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .trim_end_matches(".zone.new")
            .to_string();
        let path = dir.path().join(&zone);
        std::fs::write(&path, &body).unwrap();
        let out = Command::new("named-checkzone")
            .arg(&zone)
            .arg(&path)
            .output()
            .expect("named-checkzone (Debian package bind9-utils, in scripts/host-packages.txt)");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("OK"),
            "{zone}: {text}\n{body}"
        );
    }
}

#[test]
fn dns_checks_run_dig_outside_and_rndc_inside() {
    let p = profile("dns");
    let g = &p.guests[0];
    let t = p.template_of(g).unwrap();
    let checks = t
        .render_checks(&g.context(&p), &|port| format!("127.0.0.1:{}", 40000 + port))
        .unwrap();
    let outside: Vec<_> = checks.iter().filter(|c| c.on == CheckOn::Build).collect();
    let inside: Vec<_> = checks.iter().filter(|c| c.on == CheckOn::Guest).collect();
    assert!(outside.iter().all(|c| c.port.is_some()));
    assert!(inside.iter().all(|c| c.port.is_none()));
    let soa = outside.iter().find(|c| c.run.contains(" SOA")).unwrap();
    assert_eq!(
        soa.run,
        "dig +tcp +norec +time=5 -p 40053 @127.0.0.1 example.test SOA"
    );
    assert!(soa
        .expect
        .contains("ns1.example.test. hostmaster.example.test. 2026113001"));
    let records = outside.iter().find(|c| c.name.contains("every record")).unwrap();
    assert!(
        records.run.contains("@127.0.0.1 example.test. MX)"),
        "{}",
        records.run
    );
    assert!(
        records.run.contains("want='10 mail.example.test.'"),
        "{}",
        records.run
    );
    assert_eq!(records.expect, "records: 5 of 5 answered");
    assert!(outside.iter().any(|c| c.expect == "status: REFUSED"));
    assert!(outside
        .iter()
        .any(|c| c.port == Some(953) && c.expect == "closed"));
    assert!(inside.iter().any(|c| c.run == "rndc status"));
    assert!(inside
        .iter()
        .any(|c| c.run.starts_with("rndc -s 10.0.0.53 status")));
}

#[test]
fn dns_settings_are_refused_at_their_profile_line() {
    let e = profile_with("dns", &|t| {
        t.replace("\"db.lab.test. A 10.0.0.54\"", "\"db.lab.test A 10.0.0.54\"")
            .replace("serial = 2026113001", "serial = 0")
    })
    .unwrap_err();
    assert!(e.contains("profiles/dns.toml:"), "{e}");
    assert!(
        e.contains("guest.ns1.settings.records: \"db.lab.test A 10.0.0.54\" does not match"),
        "{e}"
    );
    assert!(e.contains("guest.ns1.settings.serial: 0 is out of range"), "{e}");
    let e = profile_with("dns", &|t| {
        t.replace("\"example.test\", \"lab.test\"", "\"Example.test\"")
    })
    .unwrap_err();
    assert!(
        e.contains("\"Example.test\" does not match setting `zones`"),
        "{e}"
    );
}

#[test]
fn lapp_renders_httpd_php_fpm_postgresql_and_the_demo_database() {
    let p = profile("lapp");
    let g = &p.guests[0];
    let files = guest_files(&p, g).unwrap();
    let httpd = &get(&files, "etc/apache2/httpd.conf").content;
    assert!(httpd.contains("\nListen 80\n"), "{httpd}");
    assert!(httpd.contains("SetHandler \"proxy:unix:/run/php-fpm/php-fpm.sock|fcgi://localhost\""));
    assert!(httpd.contains("User www\nGroup www\n"));
    let fpm = &get(&files, "etc/php/php-fpm.conf").content;
    assert!(
        fpm.contains("listen = /run/php-fpm/php-fpm.sock\nlisten.owner = www"),
        "{fpm}"
    );
    assert!(fpm.contains("pm.max_children = 2\n"));
    let pg = &get(&files, "etc/postgresql/postgresql.conf").content;
    assert!(pg.contains("listen_addresses = ''\n"), "{pg}");
    let hba = &get(&files, "etc/postgresql/pg_hba.conf").content;
    assert!(!hba.contains("host"), "TCP in pg_hba.conf:\n{hba}");
    let page = get(&files, "srv/www/index.php");
    assert_eq!((page.uid, page.gid, page.mode), (25, 25, 0o644));
    assert!(page.content.contains("<h1>LAPP on Xen</h1>"));
    // The row is only in the database: the page has no copy of it.
    assert!(!page.content.contains("Hello from a row of PostgreSQL"));

    // Services in order, each ready before the next starts.
    let rcs = &get(&files, "etc/init.d/rcS").content;
    let at = |s: &str| rcs.find(s).unwrap_or_else(|| panic!("{s} not in rcS:\n{rcs}"));
    assert!(at("/etc/xlfs/first-boot") < at("/etc/xlfs/services/postgresql start"));
    assert!(at("services/postgresql start") < at("services/php-fpm start"));
    assert!(at("services/php-fpm start") < at("services/httpd start"));
    assert!(get(&files, "etc/xlfs/services/httpd")
        .content
        .contains("until netstat -ltn 2>/dev/null | grep -q ':80 '; do"));
    // First boot: the password is made on the guest, read by www only, never printed.
    let fb = &get(&files, "etc/xlfs/first-boot").content;
    assert!(
        fb.contains("head -c 18 /dev/urandom | base64 > /etc/lapp/db-password"),
        "{fb}"
    );
    assert!(fb.contains("chown root:www /etc/lapp/db-password"));
    assert!(fb.contains("INSERT INTO greeting (message) VALUES ('Hello from a row of PostgreSQL');"));
    assert!(fb.contains(") </dev/null >/dev/null 2>&1; then"));
    assert!(files.iter().all(|f| !f.path.starts_with("etc/lapp")));
    let t = p.template_of(g).unwrap();
    assert_eq!(t.secret_paths(), ["etc/lapp/db-password"]);
    assert!(xl_cfg(&p, g, "vmlinuz-6.12.107").contains("memory = 384\n"));
}

#[test]
fn lapp_checks_and_settings() {
    let p = profile("lapp");
    let g = &p.guests[0];
    let checks = p
        .template_of(g)
        .unwrap()
        .render_checks(&g.context(&p), &|port| format!("127.0.0.1:{}", 40000 + port))
        .unwrap();
    assert_eq!(checks[0].run, "curl -fsS --max-time 30 http://127.0.0.1:40080/");
    assert_eq!(checks[0].expect, ": Hello from a row of PostgreSQL</p>");
    assert!(checks
        .iter()
        .any(|c| c.port == Some(5432) && c.expect == "closed"));
    assert!(checks
        .iter()
        .any(|c| c.on == CheckOn::Guest && c.run.starts_with("pg_isready")));
    let e = profile_with("lapp", &|t| {
        t.replace(
            "greeting = \"Hello from a row of PostgreSQL\"",
            "greeting = \"x'); DROP TABLE y; --\"",
        )
        .replace("title = \"LAPP on Xen\"", "title = \"LAPP on Xen\", workers = 0")
    })
    .unwrap_err();
    assert!(e.contains("profiles/lapp.toml:"), "{e}");
    assert!(
        e.contains("guest.www1.settings.greeting: \"x'); DROP TABLE y; --\" does not match"),
        "{e}"
    );
    assert!(
        e.contains("guest.www1.settings.workers: 0 is out of range"),
        "{e}"
    );
}

/// The templates' "port not reachable" probe, run for real: a closed port is "closed", a port
/// where something listens is not (silent like rndc, or answering like PostgreSQL).
#[test]
fn the_port_probe_tells_closed_from_listening() {
    let probe = |template: &str, port: u16| -> String {
        let p = profile(template);
        let g = &p.guests[0];
        let c = p
            .template_of(g)
            .unwrap()
            .render_checks(&g.context(&p), &|_| format!("127.0.0.1:{port}"))
            .unwrap()
            .into_iter()
            .find(|c| c.expect == "closed")
            .unwrap();
        let out = Command::new("sh").arg("-c").arg(&c.run).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    assert_eq!(probe("dns", port), "closed");
    assert_eq!(probe("lapp", port), "closed");
    // A server that answers the first bytes, as PostgreSQL answers an SSLRequest with `N`.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let t = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let (mut s, _) = l.accept().unwrap();
        let mut b = [0u8; 8];
        s.read_exact(&mut b).unwrap();
        s.write_all(b"N").unwrap();
        std::thread::sleep(std::time::Duration::from_secs(1));
    });
    assert_eq!(probe("lapp", port), "open: it answered b'N'");
    t.join().unwrap();
}

#[test]
fn mail_renders_postfix_dovecot_opendkim_without_any_password() {
    let p = profile("mail");
    let g = &p.guests[0];
    let files = guest_files(&p, g).unwrap();
    let main = &get(&files, "etc/postfix/main.cf").content;
    for want in [
        "virtual_mailbox_domains = example.test\n",
        "virtual_transport = lmtp:unix:private/dovecot-lmtp\n",
        "smtpd_sasl_type = dovecot\n",
        "smtpd_tls_auth_only = yes\n",
        "smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination\n",
        "mynetworks = 127.0.0.0/8\n",
        "smtpd_milters = inet:127.0.0.1:8891\n",
    ] {
        assert!(main.contains(want), "main.cf lacks {want:?}:\n{main}");
    }
    let dovecot = &get(&files, "etc/dovecot/dovecot.conf").content;
    assert!(dovecot.starts_with("# dovecot.conf of mx1"), "{dovecot}");
    assert!(dovecot.contains("dovecot_config_version = 2.4.0\n"));
    assert!(dovecot.contains("ssl = required\n"));
    assert!(
        dovecot.contains("inet_listener imap {\n    port = 0\n  }"),
        "{dovecot}"
    );
    assert!(dovecot.contains("unix_listener /var/spool/postfix/private/auth {"));
    let dkim = &get(&files, "etc/opendkim.conf").content;
    assert!(dkim.contains("Domain                  example.test\n"), "{dkim}");
    assert!(dkim.contains("KeyFile                 /etc/opendkim/keys/dkim.private\n"));

    // The users file holds crypt hashes that the check password matches (checked with the build
    // machine's crypt), and the password itself is nowhere in the image.
    let users = get(&files, "etc/dovecot/users");
    assert_eq!((users.uid, users.mode), (74, 0o640));
    let lines: Vec<&str> = users.content.lines().collect();
    assert_eq!(lines.len(), 2, "{}", users.content);
    let hash = lines[0].strip_prefix("postmaster@example.test:{CRYPT}").unwrap();
    let out = Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import crypt, sys; print(crypt.crypt(sys.argv[1], sys.argv[2]) == sys.argv[2])",
        ])
        .args(["Xen mail check 1", hash])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "True", "{hash}");
    assert!(lines[1].starts_with("alice@example.test:{CRYPT}$6$xlfsalice$"));
    for f in &files {
        assert!(
            !f.content.contains("Xen mail check 1"),
            "{} holds the check password",
            f.path
        );
    }

    // Keys are made on the guest; services in order.
    let t = p.template_of(g).unwrap();
    assert_eq!(
        t.secret_paths(),
        ["etc/mail-tls/key.pem", "etc/opendkim/keys/dkim.private"]
    );
    let fb = &get(&files, "etc/xlfs/first-boot").content;
    assert!(fb.contains(
        "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out /etc/opendkim/keys/dkim.private"
    ));
    assert!(
        fb.contains("openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -config /etc/mail-tls/openssl.cnf")
    );
    let rcs = &get(&files, "etc/init.d/rcS").content;
    let at = |s: &str| rcs.find(s).unwrap_or_else(|| panic!("{s} not in rcS:\n{rcs}"));
    assert!(at("services/opendkim start") < at("services/dovecot start"));
    assert!(at("services/dovecot start") < at("services/postfix start"));
}

#[test]
fn mail_checks_log_in_with_the_check_password_and_verify_dkim_with_the_saved_key() {
    let p = profile("mail");
    let g = &p.guests[0];
    let t = p.template_of(g).unwrap();
    let guest = t
        .render_checks_on(&g.context(&p), &|_| unreachable!(), CheckOn::Guest)
        .unwrap();
    assert_eq!(guest[0].save.as_deref(), Some("dkim_pub64"));
    let mut ctx = g.context(&p);
    ctx["saved"] = serde_json::json!({ "dkim_pub64": "MIIBIjANBgkq\nhkiG9w0BAQEF" });
    let build = t
        .render_checks_on(
            &ctx,
            &|port| format!("127.0.0.1:{}", 40000 + port),
            CheckOn::Build,
        )
        .unwrap();
    let smtp = &build[0];
    assert!(
        smtp.run
            .starts_with("swaks --server 127.0.0.1 --port 40025 --tls"),
        "{}",
        smtp.run
    );
    assert!(smtp
        .run
        .contains("--auth-user postmaster@example.test --auth-password 'Xen mail check 1'"));
    assert_eq!(smtp.expect, "250 2.0.0 Ok: queued");
    let imap = &build[1];
    assert!(
        imap.run.contains("imaplib.IMAP4_SSL(\"127.0.0.1\", 40993"),
        "{}",
        imap.run
    );
    assert!(
        imap.run.contains("b\"\"\"MIIBIjANBgkq\nhkiG9w0BAQEF\"\"\""),
        "{}",
        imap.run
    );
    assert_eq!(imap.expect, "dkim: pass");
    assert!(build[2]
        .run
        .contains("--to someone@example.org --quit-after RCPT"));
    assert_eq!(build[2].expect, "Relay access denied");
    // A user that is not a crypt hash is refused at its profile line.
    let e = profile_with("mail", &|t| t.replace("\"alice:$6$", "\"alice:plain$6$")).unwrap_err();
    assert!(
        e.contains("profiles/mail.toml:") && e.contains("guest.mx1.settings.users:"),
        "{e}"
    );
}
