//! The audit made fatal: a profile with `[host.budget]` gets no image while its root file
//! system breaks it. Each problem names the file, what is wrong and the fix. Pure.

use xlfs_book::profile::{Budget, Keep};
use xlfs_image::audit::Audit;
use xlfs_image::RootFs;

const MIB: u64 = 1024 * 1024;

/// The problems of `audit` against `budget`, each a line naming the file (and the package it
/// comes from, when `fs` knows it) and the fix; empty when the image keeps the budget.
pub fn violations(audit: &Audit, budget: &Budget, keep: &[Keep], fs: &RootFs) -> Vec<String> {
    let from = |path: &str| {
        fs.owner(path)
            .map(|o| format!(" (from package `{o}`)"))
            .unwrap_or_default()
    };
    let mut v = Vec::new();
    for u in &audit.unresolved {
        let path = u.split(':').next().unwrap_or(u);
        v.push(format!(
            "/{u}{}; fix: add the package that installs it to host.packages or to the recipe's [depends] run",
            from(path)
        ));
    }
    for b in &audit.build_paths {
        let (path, s) = b.split_once(": ").unwrap_or((b, ""));
        v.push(format!(
            "/{path}{} holds the build-machine path `{s}`; fix: rebuild the package so that it does not \
             (-ffile-prefix-map, no configure line in the binary), or leave the file out with an overlay",
            from(path)
        ));
    }
    if audit.setuid.len() > budget.setuid {
        let list: Vec<String> = audit.setuid.iter().map(|p| format!("/{p}{}", from(p))).collect();
        v.push(format!(
            "{} setuid/setgid files, the budget allows {}: {}; fix: drop the bit in the recipe's [[file]] mode, \
             leave the package out, or raise [host.budget] setuid",
            audit.setuid.len(),
            budget.setuid,
            list.join(", ")
        ));
    }
    if !budget.python {
        for p in &audit.python {
            v.push(format!(
                "/{p}{}: Python in dom0; fix: leave out the package that installs it (or the run dependency \
                 that brings it), or set [host.budget] python = true",
                from(p)
            ));
        }
    }
    if !budget.x11 {
        for p in &audit.x11 {
            v.push(format!(
                "/{p}{}: an X11 library in dom0; fix: build the package without X11, or set [host.budget] x11 = true",
                from(p)
            ));
        }
    }
    if !budget.compilers && !keep.contains(&Keep::Compilers) {
        for p in &audit.compilers {
            v.push(format!(
                "/{p}{}: a compiler or linker in dom0; fix: leave out the package, or add \"compilers\" to host.keep",
                from(p)
            ));
        }
    }
    let limit = budget.root_size_mib * MIB;
    if audit.bytes > limit {
        // The biggest packages, to say where the bytes are.
        let mut by_pkg: std::collections::BTreeMap<&str, u64> = std::collections::BTreeMap::new();
        for (path, node) in fs.iter() {
            if let xlfs_image::NodeKind::File { source } = &node.kind {
                let size = match source {
                    xlfs_image::FileSource::Bytes(b) => b.len() as u64,
                    xlfs_image::FileSource::Path(p) => std::fs::metadata(p).map(|m| m.len()).unwrap_or(0),
                };
                *by_pkg.entry(fs.owner(path).unwrap_or("generated")).or_default() += size;
            }
        }
        let mut top: Vec<(&str, u64)> = by_pkg.into_iter().collect();
        top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let top: Vec<String> = top
            .iter()
            .take(8)
            .map(|(p, b)| format!("{p} {:.1} MiB", *b as f64 / MIB as f64))
            .collect();
        v.push(format!(
            "the root file system holds {:.1} MiB of files, the budget is {} MiB (largest: {}); fix: leave \
             packages out of host.packages, or raise [host.budget] root-size",
            audit.bytes as f64 / MIB as f64,
            budget.root_size_mib,
            top.join(", ")
        ));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fs() -> RootFs {
        let mut fs = RootFs::new();
        fs.add_file("usr/bin/su", vec![0; 10], 0o4755, 0, 0).unwrap();
        fs.add_file("usr/bin/passwd", vec![0; 10], 0o4755, 0, 0).unwrap();
        fs
    }

    #[test]
    fn within_budget_is_quiet() {
        let fs = fs();
        let a = xlfs_image::audit::audit(&fs, &["/build/src/"]);
        assert_eq!(violations(&a, &Budget::default(), &[], &fs), Vec::<String>::new());
    }

    #[test]
    fn each_breach_names_the_file_and_the_fix() {
        let mut fs = fs();
        fs.add_file("usr/bin/sudo", vec![0; 10], 0o4755, 0, 0).unwrap();
        fs.add_file("usr/bin/mount", vec![0; 10], 0o4755, 0, 0).unwrap();
        fs.add_file("usr/bin/python3", vec![0; 10], 0o755, 0, 0).unwrap();
        fs.add_file("usr/lib/libX11.so.6", vec![0; 10], 0o644, 0, 0)
            .unwrap();
        fs.add_file("usr/bin/gcc", vec![0; 10], 0o755, 0, 0).unwrap();
        fs.add_file("usr/lib/libfoo.so", b"cc -I/build/src/foo".to_vec(), 0o644, 0, 0)
            .unwrap();
        fs.add_file("usr/share/big", vec![0; 3 * MIB as usize], 0o644, 0, 0)
            .unwrap();
        let a = xlfs_image::audit::audit(&fs, &["/build/src/"]);
        let budget = Budget {
            root_size_mib: 2,
            ..Budget::default()
        };
        let v = violations(&a, &budget, &[], &fs);
        let has = |s: &str| assert!(v.iter().any(|l| l.contains(s)), "no `{s}` in {v:#?}");
        has("/usr/lib/libfoo.so holds the build-machine path `/build/src/`; fix:");
        has("4 setuid/setgid files, the budget allows 3: /usr/bin/mount, /usr/bin/passwd, /usr/bin/su, /usr/bin/sudo; fix:");
        has("/usr/bin/python3: Python in dom0; fix:");
        has("/usr/lib/libX11.so.6: an X11 library in dom0; fix:");
        has("/usr/bin/gcc: a compiler or linker in dom0; fix: leave out the package, or add \"compilers\" to host.keep");
        has("the root file system holds 3.0 MiB of files, the budget is 2 MiB (largest: generated 3.0 MiB); fix:");
        assert_eq!(v.len(), 6, "{v:#?}");
        // What the profile allows is not a breach.
        let lenient = Budget {
            root_size_mib: 150,
            setuid: 4,
            python: true,
            x11: true,
            compilers: false,
        };
        let v = violations(&a, &lenient, &[Keep::Compilers], &fs);
        assert_eq!(v.len(), 1, "{v:#?}");
    }
}
