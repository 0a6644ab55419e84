use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use xlfs_book::{Book, BookFile};

const AUTOTOOLS: &str = include_str!("../../../book/templates/autotools.toml");
const SHA: &str = "60dd315c07f616887caa029408308a018ace66e3d142726a97db164b3b8f69fb";

fn files(list: &[(&str, &str)]) -> Vec<BookFile> {
    let mut v = vec![BookFile {
        path: "templates/autotools.toml".into(),
        text: AUTOTOOLS.into(),
    }];
    v.extend(list.iter().map(|(p, t)| BookFile {
        path: PathBuf::from(p),
        text: t.to_string(),
    }));
    v
}

fn load(list: &[(&str, &str)], extra: &[(&str, &[u8])]) -> Result<Book, String> {
    let extra: BTreeMap<PathBuf, Vec<u8>> = extra
        .iter()
        .map(|(p, b)| (PathBuf::from(p), b.to_vec()))
        .collect();
    let read = move |p: &Path| {
        extra
            .get(p)
            .cloned()
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory"))
    };
    Book::from_files(Path::new("book"), files(list), &read).map_err(|e| e.to_string())
}

fn recipe(name: &str, build: &[&str], extra: &str) -> String {
    let deps: Vec<String> = build.iter().map(|d| format!("\"{d}\"")).collect();
    format!(
        r#"[package]
name = "{name}"
version = "1.0"
license = "MIT"

[[source]]
file = "{name}-1.0.tar.gz"
sha256 = "{SHA}"

[depends]
build = [{}]

[build]
template = "autotools"
{extra}"#,
        deps.join(", ")
    )
}

#[test]
fn a_good_book_loads_and_renders_templates() {
    let zlib = recipe("zlib", &[], "configure = [\"--prefix=/usr\", \"--shared\"]\n");
    let book = load(&[("base/zlib.toml", &zlib)], &[]).unwrap();
    let r = book.get("zlib").unwrap();
    assert_eq!(r.steps["configure"], "./configure --prefix=/usr --shared");
    assert_eq!(r.steps["install"], "make DESTDIR=\"$DESTDIR\" install");
    assert_eq!(r.sources[0].sha256, SHA);
}

#[test]
fn every_problem_is_reported_at_once() {
    let a = recipe("a", &["zlbi", "b"], "configur = \"--x\"\n");
    let b = recipe("b", &["c"], "");
    let c = recipe("c", &["a"], "");
    let bad_hash = r#"[package]
name = "d"
version = "1.0"
license = "MIT"
colour = "blue"

[[source]]
file = "d.tar.gz"
sha256 = "ef268c6fda8701834db2d8322b0ccf4e"

[[patch]]
file = "missing.patch"
sha256 = "60dd315c07f616887caa029408308a018ace66e3d142726a97db164b3b8f69fb"

[build]
template = "autotool"
"#;
    let dup = recipe("zlib", &[], "");
    let zlib = recipe("zlib", &[], "");
    let err = load(
        &[
            ("a.toml", &a),
            ("b.toml", &b),
            ("c.toml", &c),
            ("d.toml", bad_hash),
            ("base/zlib.toml", &zlib),
            ("extra/zlib.toml", &dup),
        ],
        &[],
    )
    .unwrap_err();
    insta::assert_snapshot!(err);
}

#[test]
fn syntax_and_type_errors_have_positions() {
    let broken = "[package]\nname = \"x\"\nversion = 1\nlicense = \"MIT\"\n[build\n";
    let err = load(&[("x.toml", broken)], &[]).unwrap_err();
    insta::assert_snapshot!("syntax", err);
    let typed = "[package]\nname = \"x\"\nversion = 1\nlicense = \"MIT\"\n[depends]\nbuild = \"zlib\"\nrun = [1]\n[build.steps]\ninstall = \"true\"\n[[file]]\npath = \"usr/bin/x\"\nmode = 755\n";
    let err = load(&[("x.toml", typed)], &[]).unwrap_err();
    insta::assert_snapshot!("types", err);
}

#[test]
fn patches_are_verified_against_their_hash() {
    let body = b"--- a/x\n+++ b/x\n";
    let sha = xlfs_book::sha256_hex(body);
    let text = format!(
        "{}[[patch]]\nfile = \"fix.patch\"\nsha256 = \"{sha}\"\n",
        recipe("p", &[], "")
    );
    // The patch table must come before [build] for TOML; put it in a fresh recipe instead.
    let text =
        text.replace("[build]\ntemplate = \"autotools\"\n", "") + "[build]\ntemplate = \"autotools\"\n";
    assert!(load(&[("base/p.toml", &text)], &[("base/fix.patch", body)]).is_ok());
    let err = load(&[("base/p.toml", &text)], &[("base/fix.patch", b"changed")]).unwrap_err();
    assert!(err.contains("patch[0].sha256"), "{err}");
    assert!(err.contains("base/p.toml:"), "{err}");
}

#[test]
fn patch_and_input_paths_stay_inside_the_book() {
    let text = recipe("p", &[], "inputs = [\"../../etc/shadow\", \"ok.config\"]\n")
        + &format!("[[patch]]\nfile = \"/etc/passwd\"\nsha256 = \"{SHA}\"\n");
    let err = load(&[("base/p.toml", &text)], &[("base/ok.config", b"x")]).unwrap_err();
    assert!(
        err.contains("build.inputs: `../../etc/shadow` is not a path inside the recipe's directory"),
        "{err}"
    );
    assert!(
        err.contains("patch[0].file: `/etc/passwd` is not a path inside the recipe's directory"),
        "{err}"
    );
    assert_eq!(err.matches("is not a path inside").count(), 2, "{err}");
}

#[test]
fn a_cost_hint_is_read_validated_and_not_part_of_the_recipe_hash() {
    let plain = recipe("z", &[], "");
    let hinted = recipe("z", &[], "cost = 40\n");
    let a = load(&[("base/z.toml", &plain)], &[]).unwrap();
    let b = load(&[("base/z.toml", &hinted)], &[]).unwrap();
    assert_eq!(a.get("z").unwrap().cost, None);
    assert_eq!(b.get("z").unwrap().cost, Some(40));
    assert_eq!(
        serde_json::to_string(a.get("z").unwrap()).unwrap(),
        serde_json::to_string(b.get("z").unwrap()).unwrap(),
        "a scheduling hint changes no artifact, so no key"
    );
    for bad in ["cost = 0\n", "cost = -3\n", "cost = 1000000\n"] {
        let err = load(&[("base/z.toml", &recipe("z", &[], bad))], &[]).unwrap_err();
        assert!(
            err.contains("build.cost") && err.contains("out of range"),
            "{err}"
        );
        assert!(err.contains("base/z.toml:"), "names file and line: {err}");
    }
    let err = load(&[("base/z.toml", &recipe("z", &[], "cost = \"big\"\n"))], &[]).unwrap_err();
    assert!(err.contains("cost"), "{err}");
}
