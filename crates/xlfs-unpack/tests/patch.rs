//! Integration tests for `xlfs_unpack::apply_patch` (uses the real `diff`
//! and `patch` tools).

use std::fs;
use std::path::Path;
use std::process::Command;

use xlfs_unpack::{apply_patch, apply_patch_inside, UnpackError};

const ORIG: &str = "line 1\nline 2\nline 3\nline 4\nline 5\n";
const NEW: &str = "line 1\nline 2 changed\nline 3\nline 4\nline 5\nline 6\n";

/// Writes `pkg.orig/src/file.c` and `pkg/src/file.c` under `top`, and
/// returns a unified diff between them made with `diff -u` (run in `top`,
/// so paths carry one leading component to strip).
fn make_patch(top: &Path) -> Vec<u8> {
    for (dir, text) in [("pkg.orig", ORIG), ("pkg", NEW)] {
        fs::create_dir_all(top.join(dir).join("src")).unwrap();
        fs::write(top.join(dir).join("src/file.c"), text).unwrap();
    }
    let out = Command::new("diff")
        .args(["-Naur", "pkg.orig", "pkg"])
        .current_dir(top)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "diff found differences");
    assert!(!out.stdout.is_empty());
    out.stdout
}

/// A fresh tree with the original content, to apply patches to.
fn fresh_tree(top: &Path) -> std::path::PathBuf {
    let tree = top.join("tree");
    fs::create_dir_all(tree.join("src")).unwrap();
    fs::write(tree.join("src/file.c"), ORIG).unwrap();
    tree
}

#[test]
fn applies_a_unified_diff() {
    let tmp = tempfile::tempdir().unwrap();
    let patch = tmp.path().join("fix.patch");
    fs::write(&patch, make_patch(tmp.path())).unwrap();
    let tree = fresh_tree(tmp.path());

    apply_patch(&tree, &patch, 1).unwrap();
    assert_eq!(fs::read_to_string(tree.join("src/file.c")).unwrap(), NEW);
    // --no-backup-if-mismatch: no .orig files.
    let names: Vec<_> = fs::read_dir(tree.join("src"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec!["file.c"]);
}

#[test]
fn relative_patch_path_is_resolved_against_the_current_directory() {
    // `patch` runs in `dir`, so a relative patch path must not be passed
    // through as is. Use a path relative to the process's working dir.
    let cwd = std::env::current_dir().unwrap();
    let tmp = tempfile::tempdir_in(&cwd).unwrap();
    let patch = tmp.path().join("fix.patch");
    fs::write(&patch, make_patch(tmp.path())).unwrap();
    let tree = fresh_tree(tmp.path());
    let rel = patch.strip_prefix(&cwd).unwrap();
    assert!(rel.is_relative());
    apply_patch(&tree, rel, 1).unwrap();
    assert_eq!(fs::read_to_string(tree.join("src/file.c")).unwrap(), NEW);
}

#[test]
fn already_applied_patch_fails_with_output() {
    let tmp = tempfile::tempdir().unwrap();
    let patch = tmp.path().join("fix.patch");
    fs::write(&patch, make_patch(tmp.path())).unwrap();
    let tree = fresh_tree(tmp.path());
    apply_patch(&tree, &patch, 1).unwrap();

    match apply_patch(&tree, &patch, 1) {
        Err(UnpackError::Patch {
            patch: p,
            dir,
            output,
        }) => {
            assert_eq!(p, patch);
            assert_eq!(dir, tree);
            assert!(output.contains("previously applied"), "{output}");
        }
        other => panic!("expected Patch, got {other:?}"),
    }
    assert_eq!(fs::read_to_string(tree.join("src/file.c")).unwrap(), NEW);
}

#[test]
fn patch_that_does_not_apply_fails_with_output() {
    let tmp = tempfile::tempdir().unwrap();
    let patch = tmp.path().join("fix.patch");
    fs::write(&patch, make_patch(tmp.path())).unwrap();
    let tree = tmp.path().join("other");
    fs::create_dir_all(tree.join("src")).unwrap();
    fs::write(tree.join("src/file.c"), "completely\ndifferent\ncontent\n").unwrap();

    let err = apply_patch(&tree, &patch, 1).unwrap_err();
    match &err {
        UnpackError::Patch { output, .. } => {
            assert!(output.contains("FAILED"), "{output}");
            assert!(output.contains("src/file.c"), "{output}");
        }
        other => panic!("expected Patch, got {other:?}"),
    }
    assert!(err.to_string().contains("FAILED"));
}

#[test]
fn wrong_strip_level_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let patch = tmp.path().join("fix.patch");
    fs::write(&patch, make_patch(tmp.path())).unwrap();
    let tree = fresh_tree(tmp.path());
    // -p0 looks for pkg/src/file.c, which does not exist in the tree.
    let err = apply_patch(&tree, &patch, 0).unwrap_err();
    assert!(matches!(err, UnpackError::Patch { .. }), "{err:?}");
    assert_eq!(fs::read_to_string(tree.join("src/file.c")).unwrap(), ORIG);
}

#[test]
fn missing_patch_or_dir_is_io_error() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = fresh_tree(tmp.path());
    let missing = tmp.path().join("nope.patch");
    assert!(matches!(
        apply_patch(&tree, &missing, 1),
        Err(UnpackError::Io { path, .. }) if path == missing
    ));
    let patch = tmp.path().join("fix.patch");
    fs::write(&patch, make_patch(tmp.path())).unwrap();
    let nodir = tmp.path().join("nodir");
    assert!(matches!(
        apply_patch(&nodir, &patch, 1),
        Err(UnpackError::Io { path, .. }) if path == nodir
    ));
}

#[test]
fn patches_only_inside_the_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let patch = tmp.path().join("fix.patch");
    fs::write(&patch, make_patch(tmp.path())).unwrap();
    // `src` is the unpacked sources; `victim` stands for the build machine's files.
    let src = tmp.path().join("src");
    let tree = fresh_tree(tmp.path());
    fs::create_dir_all(&src).unwrap();
    fs::rename(&tree, src.join("pkg")).unwrap();
    let victim = fresh_tree(&tmp.path().join("outside"));
    std::os::unix::fs::symlink(&victim, src.join("link")).unwrap();

    for rel in ["link", "../outside/tree", "/"] {
        let err = apply_patch_inside(&src, rel, &patch, 1).unwrap_err();
        assert!(matches!(err, UnpackError::Outside { .. }), "{rel}: {err}");
        assert!(err.to_string().contains("outside"), "{err}");
    }
    assert_eq!(fs::read_to_string(victim.join("src/file.c")).unwrap(), ORIG);

    apply_patch_inside(&src, "pkg", &patch, 1).unwrap();
    assert_eq!(fs::read_to_string(src.join("pkg/src/file.c")).unwrap(), NEW);
}
