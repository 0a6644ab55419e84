//! What the assembly tests share: recipes of synthetic packages, the trees they "installed",
//! and a store that holds each planned package's tree packed as its artifact.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use xlfs_book::profile::Profile;
use xlfs_book::{Book, BookFile};
use xlfs_store::{ArtifactStore, LocalStore, PackOptions};

const SHA: &str = "60dd315c07f616887caa029408308a018ace66e3d142726a97db164b3b8f69fb";

/// A recipe that installs nothing of its own, with its `run` dependencies and extra TOML
/// (`[[file]]` attributes).
pub fn recipe(name: &str, run: &[&str], files: &str) -> BookFile {
    let run: Vec<String> = run.iter().map(|d| format!("\"{d}\"")).collect();
    BookFile {
        path: format!("{name}.toml").into(),
        text: format!(
            "[package]\nname = \"{name}\"\nversion = \"1.0\"\nlicense = \"MIT\"\n[[source]]\nfile = \"{name}.tar\"\nsha256 = \"{SHA}\"\n[depends]\nrun = [{}]\n[build.steps]\ninstall = \"true\"\n{files}",
            run.join(", ")
        ),
    }
}

/// The tree `root/name` holding `files` (path, contents, mode).
pub fn mk(root: &Path, name: &str, files: &[(&str, &[u8], u32)]) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let d = root.join(name);
    for (p, body, mode) in files {
        let f = d.join(p);
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(&f, body).unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(*mode)).unwrap();
    }
    d
}

/// Plans the profile's targets and puts every planned package's tree into the store `dir/store`,
/// packed with its recipe's `[[file]]` attributes and the time `mtime`, as a build would. Returns
/// the store and each package's key.
pub fn store_plan(
    dir: &Path,
    book: &Book,
    profile: &Profile,
    trees: &BTreeMap<&'static str, PathBuf>,
    mtime: u64,
) -> (LocalStore, BTreeMap<String, String>) {
    let envs = xlfs_plan::EnvIds {
        host: "h".into(),
        chroot: "c".into(),
    };
    let plan = xlfs_plan::plan(book, &profile.targets(), &envs, &|_| None, &|_| false).unwrap();
    let store = LocalStore::open(dir.join("store")).unwrap();
    let mut keys = BTreeMap::new();
    for step in &plan.steps {
        let attrs = book.recipes[&step.name]
            .files
            .iter()
            .map(|f| xlfs_store::Attr {
                path: f.path.clone(),
                uid: f.uid,
                gid: f.gid,
                mode: f.mode,
            })
            .collect();
        let out = dir.join(format!("{}.tar.zst", step.name));
        let options = PackOptions {
            mtime,
            zstd_level: 3,
            attrs,
            ids: None,
        };
        let packed = xlfs_store::pack(&trees[step.name.as_str()], &out, &options).unwrap();
        store.put(&step.key, &out, &packed).unwrap();
        keys.insert(step.name.clone(), step.key.clone());
    }
    (store, keys)
}
