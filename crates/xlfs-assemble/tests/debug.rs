//! The debug split on a real ELF file: compiled with -g, its debug information goes to the
//! tarball, the image's copy is stripped, linked to it, and still runs.

use std::process::Command;
use xlfs_assemble::debug::{has_debug_info, split, Binutils};
use xlfs_image::{FileSource, NodeKind, RootFs};

fn compile(dir: &std::path::Path, flags: &[&str]) -> Vec<u8> {
    let src = dir.join("hello.c");
    std::fs::write(
        &src,
        "#include <stdio.h>\nint main(void) { puts(\"hello from xlfs\"); return 0; }\n",
    )
    .unwrap();
    let out = dir.join("hello");
    let st = Command::new("cc")
        .args(flags)
        .arg("-o")
        .arg(&out)
        .arg(&src)
        .status()
        .expect("cc (build-essential) runs");
    assert!(st.success());
    std::fs::read(&out).unwrap()
}

#[test]
fn debug_information_goes_to_the_tarball_and_the_stripped_file_runs() {
    let t = tempfile::tempdir().unwrap();
    let with = compile(t.path(), &["-g", "-O1"]);
    assert!(has_debug_info(&with));
    let without = compile(t.path(), &["-O1"]);
    assert!(!has_debug_info(&without));
    let mut fs = RootFs::new();
    fs.add_file("usr/bin/hello", with.clone(), 0o755, 0, 0).unwrap();
    fs.add_file("usr/bin/plain", without.clone(), 0o4755, 0, 0)
        .unwrap();
    fs.add_file("etc/motd", b"not ELF".to_vec(), 0o644, 0, 0).unwrap();
    // The test's root is the build machine's (build-essential); `xlfs image` gives the
    // toolchain root: the same loader-and-library-path mechanics.
    let bin = Binutils::from_root(std::path::Path::new("/")).unwrap();
    let work = t.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let tarball = t.path().join("debug.tar.zst");
    let r = split(&mut fs, &bin, &work, &tarball, 1704067200).unwrap();
    assert_eq!(r.files, ["usr/bin/hello"]);
    assert!(r.saved > 0);
    let node = fs.get("usr/bin/hello").unwrap();
    assert_eq!(node.mode, 0o755);
    let NodeKind::File {
        source: FileSource::Bytes(stripped),
    } = &node.kind
    else {
        panic!("the stripped file is in the image")
    };
    assert!(!has_debug_info(stripped));
    assert!(stripped.len() < with.len());
    let elf = goblin::elf::Elf::parse(stripped).unwrap();
    assert!(elf
        .section_headers
        .iter()
        .any(|s| elf.shdr_strtab.get_at(s.sh_name) == Some(".gnu_debuglink")));
    // Untouched: the file without debug information (and its setuid bit), the text file.
    let plain = fs.get("usr/bin/plain").unwrap();
    assert_eq!(plain.mode, 0o4755);
    assert!(matches!(&plain.kind, NodeKind::File { source: FileSource::Bytes(b) } if *b == without));
    // The stripped program runs.
    let run = t.path().join("stripped");
    std::fs::write(&run, stripped).unwrap();
    std::fs::set_permissions(&run, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = Command::new(&run).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello from xlfs\n");
    // The tarball holds the debug file, with the DWARF sections.
    let f = std::fs::File::open(&tarball).unwrap();
    let mut a = tar::Archive::new(zstd::Decoder::new(f).unwrap());
    let mut names = Vec::new();
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        names.push(e.path().unwrap().to_string_lossy().into_owned());
        assert_eq!(e.header().mtime().unwrap(), 1704067200);
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).unwrap();
        assert!(has_debug_info(&data));
    }
    assert_eq!(names, ["usr/lib/debug/usr/bin/hello.debug"]);
}

#[test]
fn a_root_without_binutils_is_refused_with_the_fix() {
    let t = tempfile::tempdir().unwrap();
    let e = Binutils::from_root(t.path()).unwrap_err().to_string();
    assert!(
        e.contains("no dynamic loader") && e.contains("xlfs toolchain"),
        "{e}"
    );
}
