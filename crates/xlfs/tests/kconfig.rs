//! The kernel recipe's fragment check (`book/kernel/kconfig-check.sh`): an option that did not
//! stick after `olddefconfig` must fail the build, naming the option.

use std::process::Command;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../book/kernel/kconfig-check.sh");

fn check(fragment: &str, config: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let (f, c) = (dir.path().join("frag.config"), dir.path().join(".config"));
    std::fs::write(&f, fragment).unwrap();
    std::fs::write(&c, config).unwrap();
    let out = Command::new("sh").arg(SCRIPT).arg(&f).arg(&c).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn options_that_stuck_pass() {
    let (ok, text) = check(
        "# comment\nCONFIG_XEN=y\nCONFIG_XEN_DOM0=y\n# CONFIG_DRM is not set\n",
        "CONFIG_XEN=y\nCONFIG_XEN_DOM0=y\n# CONFIG_DRM is not set\n",
    );
    assert!(ok, "{text}");
    assert!(text.contains("all options stuck"), "{text}");
    // An option turned off by being absent from .config also counts as "not set".
    let (ok, text) = check("# CONFIG_SOUND is not set\n", "CONFIG_XEN=y\n");
    assert!(ok, "{text}");
}

#[test]
fn an_option_that_did_not_stick_fails_and_is_named() {
    let (ok, text) = check(
        "CONFIG_XEN=y\nCONFIG_XEN_BACKEND=y\nCONFIG_HVC_XEN=y\n# CONFIG_DRM is not set\n",
        "CONFIG_XEN=y\n# CONFIG_XEN_BACKEND is not set\nCONFIG_DRM=y\n",
    );
    assert!(!ok);
    assert!(
        text.contains("wanted 'CONFIG_XEN_BACKEND=y', got '# CONFIG_XEN_BACKEND is not set'"),
        "{text}"
    );
    assert!(text.contains("wanted 'CONFIG_HVC_XEN=y', got 'absent'"), "{text}");
    assert!(
        text.contains("wanted '# CONFIG_DRM is not set', got 'CONFIG_DRM=y'"),
        "{text}"
    );
}

#[test]
fn the_books_fragments_only_set_xen_essentials_as_built_in() {
    // Every Xen driver the quick host needs is built in (no modules in the images).
    let frag = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../book/kernel/xen-kernel.config"
    ))
    .unwrap();
    for opt in [
        "CONFIG_XEN_DOM0=y",
        "CONFIG_XEN_PV=y",
        "CONFIG_XEN_PVH=y",
        "CONFIG_HVC_XEN=y",
        "CONFIG_XEN_BLKDEV_BACKEND=y",
        "CONFIG_XEN_NETDEV_BACKEND=y",
        "CONFIG_XEN_BLKDEV_FRONTEND=y",
        "CONFIG_XEN_NETDEV_FRONTEND=y",
        "CONFIG_XENFS=y",
        "CONFIG_XEN_GNTDEV=y",
        "CONFIG_XEN_DEV_EVTCHN=y",
        "CONFIG_XEN_PRIVCMD=y",
        "CONFIG_BRIDGE=y",
        "CONFIG_TUN=y",
        "CONFIG_VIRTIO_PCI=y",
    ] {
        assert!(frag.lines().any(|l| l == opt), "{opt} missing from the fragment");
    }
}
