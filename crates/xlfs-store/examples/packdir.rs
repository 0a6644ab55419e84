//! Packs a directory and prints timing and a manifest summary:
//! `cargo run -p xlfs-store --example packdir -- DIR OUT.tar.zst`.

use std::path::PathBuf;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args_os().skip(1);
    let (Some(dir), Some(out)) = (args.next(), args.next()) else {
        eprintln!("usage: packdir DIR OUT.tar.zst");
        std::process::exit(2);
    };
    let (dir, out) = (PathBuf::from(dir), PathBuf::from(out));
    let t = Instant::now();
    let packed = xlfs_store::pack(&dir, &out, &xlfs_store::PackOptions::default())?;
    let m = &packed.manifest;
    println!(
        "{} entries, {} ELF, installed {} bytes -> artifact {} bytes, sha256 {}, in {:?}",
        m.entries.len(),
        m.elf_files().count(),
        m.installed_size(),
        packed.size,
        packed.sha256,
        t.elapsed()
    );
    for e in m.elf_files().take(5) {
        println!(
            "  {} [{}] needs {:?}",
            e.path,
            e.elf.as_deref().unwrap_or(""),
            e.needed
        );
    }
    Ok(())
}
