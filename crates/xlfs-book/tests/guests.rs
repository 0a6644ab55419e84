//! Guest templates: parsing, validation with file:line errors, settings, rendering.

use std::collections::BTreeMap;
use std::path::Path;
use xlfs_book::guest::{parse_guest_template, CheckOn, Ready, SettingValue};

const STATIC_WEB: &str = include_str!("../../../book/guests/static-web.toml");

fn errors(text: &str) -> String {
    let (t, d) = parse_guest_template(Path::new("guests/t.toml"), "t", text);
    assert!(t.is_none(), "expected problems");
    d.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("\n")
}

#[test]
fn the_static_web_template_parses_and_renders() {
    let (t, d) = parse_guest_template(Path::new("guests/static-web.toml"), "static-web", STATIC_WEB);
    assert!(d.is_empty(), "{d:?}");
    let t = t.unwrap();
    assert_eq!(t.packages, ["filesystem", "busybox"]);
    assert_eq!(t.services[0].ready, Ready::Tcp(8080));
    assert_eq!(t.ids("www"), Some((80, 80)));
    let given = BTreeMap::from([("title".to_string(), SettingValue::String("Hi there".into()))]);
    let s = t.resolve_settings(&given).unwrap();
    assert_eq!(s["theme"], SettingValue::String("light".into()));
    let mut ctx = t.sample_context();
    ctx["settings"] = serde_json::to_value(&s).unwrap();
    let r = t.render(&ctx).unwrap();
    let page = r.files.iter().find(|f| f.path == "srv/www/index.html").unwrap();
    assert!(page.content.contains("<h1>Hi there</h1>"), "{}", page.content);
    assert!(page.content.contains("lang=\"en\""));
    let checks = t.render_checks(&ctx, &|p| format!("127.0.0.1:4{p}")).unwrap();
    assert_eq!(checks[0].run, "curl -fsS --max-time 10 http://127.0.0.1:48080/");
    assert_eq!(checks[0].expect, "<h1>Hi there</h1>");
}

#[test]
fn settings_are_validated_with_the_fix() {
    let (t, _) = parse_guest_template(Path::new("guests/static-web.toml"), "static-web", STATIC_WEB);
    let t = t.unwrap();
    let s = |k: &str, v: SettingValue| BTreeMap::from([(k.to_string(), v)]);
    let err = |given| {
        t.resolve_settings(&given)
            .unwrap_err()
            .into_iter()
            .map(|(k, m, h)| format!("{k}: {m} ({h})"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let e = err(s("theme", SettingValue::String("drak".into())));
    assert!(
        e.contains("did you mean \"dark\"?") && e.contains("light, dark"),
        "{e}"
    );
    let e = err(s("lang", SettingValue::String("eng".into())));
    assert!(e.contains("does not match") && e.contains("[a-z]{2}"), "{e}");
    let e = err(s("lang", SettingValue::Integer(3)));
    assert!(e.contains("is a string, not a integer"), "{e}");
    let e = err(s("titel", SettingValue::String("x".into())));
    assert!(e.contains("did you mean `title`?"), "{e}");
    // --set text is typed by the declaration.
    let theme = t.setting("theme").unwrap();
    assert_eq!(
        theme.parse_text("dark").unwrap(),
        SettingValue::String("dark".into())
    );
    assert!(theme.parse_text("blue").is_err());
}

#[test]
fn required_settings_must_be_given() {
    let (t, d) = parse_guest_template(
        Path::new("guests/t.toml"),
        "t",
        "[template]\npackages = [\"busybox\"]\n[settings.zone]\ntype = \"list\"\nrequired = true\nregex = \"[a-z.]+\"\n\
         [settings.port]\ntype = \"integer\"\ndefault = 53\nmin = 1\nmax = 65535\n",
    );
    assert!(d.is_empty(), "{d:?}");
    let t = t.unwrap();
    let e = t.resolve_settings(&BTreeMap::new()).unwrap_err();
    assert_eq!(e[0].0, "zone");
    assert!(e[0].1.contains("needs setting `zone`"));
    let ok = BTreeMap::from([("zone".to_string(), SettingValue::List(vec!["example.org".into()]))]);
    assert_eq!(
        t.resolve_settings(&ok).unwrap()["port"],
        SettingValue::Integer(53)
    );
    let bad = BTreeMap::from([
        ("zone".to_string(), SettingValue::List(vec!["Ex ample".into()])),
        ("port".to_string(), SettingValue::Integer(70000)),
    ]);
    let e = t.resolve_settings(&bad).unwrap_err();
    assert_eq!(e.len(), 2, "{e:?}");
    assert_eq!(
        t.setting("zone").unwrap().parse_text("a.org, b.org").unwrap(),
        SettingValue::List(vec!["a.org".into(), "b.org".into()])
    );
}

#[test]
fn template_problems_name_file_line_field_and_fix() {
    let text = r#"[template]
packages = ["busybox"]
colour = "red"

[settings.mode]
type = "text"

[settings.name]
type = "string"
regex = "([a-z"

[[user]]
name = "root"
uid = 0
group = "www"

[[file]]
path = "/etc/../shadow"
content = "x"

[[file]]
path = "/etc/app.conf"
owner = "wwww"
content = '''
line one
{{ settings.nmae }}
'''

[[service]]
name = "a"
command = "a"
after = ["b"]

[[service]]
name = "b"
command = "b {% if %}"
after = ["a"]

[[first-boot]]
name = "keys"
run = "make-key > /etc/key"
secrets = ["/etc/key", "relative"]

[[file]]
path = "/etc/key"
content = "baked"

[[check]]
name = "web"
run = "curl http://{{ address }}/"
expect = "x"
"#;
    let e = errors(text);
    for want in [
        "guests/t.toml:3:1: template.colour: unknown key `colour`",
        "guests/t.toml:6:8: settings.mode.type: unknown setting type `text`",
        "guests/t.toml:10:9: settings.name.regex: invalid regular expression",
        "guests/t.toml:13:8: user[0].name: `root` is a user of the base system",
        "guests/t.toml:15:9: user[0].group: no group `www` in this template",
        "guests/t.toml:18:8: file[0].path: `/etc/../shadow` is not a normal path inside the guest",
        "guests/t.toml:23:9: file[1].owner: no user `wwww` in this template",
        "services wait for each other in a cycle: a, b",
        "guests/t.toml:36:",
        "service.b.command: invalid template syntax",
        "guests/t.toml:42:24: first-boot[0].secrets: `relative` is not an absolute path",
        "guests/t.toml:45:8: file[2].path: /etc/key is a secret made by a first-boot step",
        "check[0].port: the command uses `address` but the check names no port",
    ] {
        assert!(e.contains(want), "missing `{want}` in:\n{e}");
    }
}

#[test]
fn an_unknown_variable_is_found_at_its_line() {
    let text = "[template]\npackages = [\"busybox\"]\n[settings.name]\ntype = \"string\"\ndefault = \"x\"\n\
                [[file]]\npath = \"/etc/app.conf\"\ncontent = '''\nline one\nname = {{ settings.nmae }}\n'''\n";
    let e = errors(text);
    assert!(
        e.contains("guests/t.toml:10:0") || e.contains("guests/t.toml:10:"),
        "{e}"
    );
    assert!(e.contains("file[0].content") && e.contains("undefined"), "{e}");
}

#[test]
fn profile_settings_errors_point_at_the_profile_line() {
    let book = xlfs_book::Book::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../book")).unwrap();
    let quick = include_str!("../../../book/profiles/quick.toml");
    let text = format!(
        "{quick}\n[[guest]]\nname = \"web\"\ntemplate = \"static-web\"\nnetwork = {{ bridge = \"xenbr0\", address = \"10.0.0.9/24\" }}\nsettings = {{ theme = \"blue\", size = 3 }}\n"
    );
    let line = text.lines().position(|l| l.starts_with("settings =")).unwrap() + 1;
    let path = book.root.join("profiles/t.toml");
    let (p, d) = xlfs_book::profile::parse_profile(&path, "t", &text);
    assert!(d.is_empty(), "{d:?}");
    let mut p = p.unwrap();
    let d: Vec<String> = p.resolve_templates(&book).iter().map(|d| d.to_string()).collect();
    let all = d.join("\n");
    assert!(
        all.contains(&format!(
            "t.toml:{line}:22: guest.web.settings.theme: \"blue\" is not one of"
        )),
        "{all}"
    );
    assert!(
        all.contains("guest.web.settings.size: template `static-web` has no setting `size`"),
        "{all}"
    );
    // An unknown template.
    let text = text.replace("template = \"static-web\"", "template = \"static-wbe\"");
    let (p, _) = xlfs_book::profile::parse_profile(&path, "t", &text);
    let all: Vec<String> = p
        .unwrap()
        .resolve_templates(&book)
        .iter()
        .map(|d| d.to_string())
        .collect();
    assert!(all.join("\n").contains("did you mean `static-web`?"), "{all:?}");
}

#[test]
fn checks_on_the_guest_and_saved_outputs_are_validated() {
    let text = r#"[template]
packages = ["busybox"]

[[check]]
name = "on the guest, with a port"
on = "guest"
port = 80
run = "true"
expect = ""

[[check]]
name = "nowhere"
on = "elsewhere"
run = "true"
expect = ""

[[check]]
name = "a build-machine check cannot save"
port = 80
run = "curl {{ address }}"
expect = ""
save = "page"

[[check]]
name = "a bad name"
on = "guest"
run = "cat /etc/key.pub"
expect = ""
save = "1key"
"#;
    let e = errors(text);
    for want in [
        "guests/t.toml:6:6: check[0].on: a check on the guest reaches no forwarded port, but this one names port 80",
        "guests/t.toml:13:6: check[1].on: `elsewhere` is not where a check can run",
        "guests/t.toml:22:8: check[2].save: only a check on the guest saves its output",
        "guests/t.toml:29:8: check[3].save: `1key` is not a valid name",
    ] {
        assert!(e.contains(want), "missing `{want}` in:\n{e}");
    }
    let e = errors(
        "[template]\npackages = [\"busybox\"]\n\n[[check]]\nname = \"x\"\nport = 80\nrun = \"curl {{ address }}/{{ saved.nothing }}\"\nexpect = \"\"\n",
    );
    assert!(
        e.contains("guests/t.toml:7:") && e.contains("check[0].run: undefined value"),
        "{e}"
    );
    // A template that saves on the guest and reads it on the build machine renders both.
    let good = r#"[template]
packages = ["busybox"]

[[check]]
name = "the key"
on = "guest"
run = "cat /etc/key.pub"
expect = "ssh-"
save = "key"

[[check]]
name = "the key is served"
port = 80
run = "curl -s {{ address }}/key.pub"
expect = "{{ saved.key }}"
"#;
    let (t, d) = parse_guest_template(Path::new("guests/t.toml"), "t", good);
    assert!(d.is_empty(), "{d:?}");
    let t = t.unwrap();
    assert_eq!(t.saved_names(), ["key"]);
    let mut ctx = t.sample_context();
    ctx["saved"]["key"] = serde_json::json!("ssh-ed25519 AAAA");
    let build = t
        .render_checks_on(&ctx, &|p| format!("127.0.0.1:1{p}"), CheckOn::Build)
        .unwrap();
    assert_eq!(build.len(), 1);
    assert_eq!(build[0].expect, "ssh-ed25519 AAAA");
    let guest = t
        .render_checks_on(&ctx, &|p| format!("127.0.0.1:1{p}"), CheckOn::Guest)
        .unwrap();
    assert_eq!((guest[0].save.as_deref(), guest[0].port), (Some("key"), None));
}
