// Scratch (not committed): write a profile guest's generated files under a directory.
use std::path::Path;
fn main() {
    let a: Vec<String> = std::env::args().collect();
    let (profile, guest, out) = (&a[1], &a[2], Path::new(&a[3]));
    let b = xlfs_book::Book::load(Path::new("book")).unwrap();
    let path = b.root.join(format!("profiles/{profile}.toml"));
    let text = std::fs::read_to_string(&path).unwrap();
    let (p, d) = xlfs_book::profile::parse_profile(&path, profile, &text);
    assert!(d.is_empty(), "{d:?}");
    let mut p = p.unwrap();
    assert!(p.resolve_templates(&b).is_empty());
    let g = p.guests.iter().find(|g| &g.name == guest).unwrap();
    for f in xlfs_system::guest_files(&p, g).unwrap() {
        let dst = out.join(&f.path);
        std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
        std::fs::write(&dst, &f.content).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(f.mode)).unwrap();
        std::os::unix::fs::chown(&dst, Some(f.uid), Some(f.gid)).unwrap();
    }
    let a = xlfs_system::accounts(p.template_of(g).unwrap());
    print!("{}\n{}\n{}", a.passwd, a.group, a.shadow);
}
