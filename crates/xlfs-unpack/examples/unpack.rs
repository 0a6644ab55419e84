//! Tiny driver for manual testing and timing:
//! `cargo run --release -p xlfs-unpack --example unpack -- ARCHIVE DEST`.

use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [archive, dest] = args.as_slice() else {
        eprintln!("usage: unpack ARCHIVE DEST");
        return ExitCode::from(2);
    };
    let start = Instant::now();
    match xlfs_unpack::unpack(Path::new(archive), Path::new(dest)) {
        Ok(s) => {
            println!(
                "{} files, {} bytes, top level {:?}, in {:.2?}",
                s.files,
                s.bytes,
                s.top_level,
                start.elapsed()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
