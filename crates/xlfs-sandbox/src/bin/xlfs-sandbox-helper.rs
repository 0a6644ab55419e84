//! `xlfs-sandbox-helper __sandbox SPEC.json`: the sandbox helper alone, for the test suite
//! (the `xlfs` binary dispatches `__sandbox` the same way).
fn main() {
    let argv: Vec<String> = std::env::args().collect();
    if argv.len() == 3 && argv[1] == "__sandbox" {
        xlfs_sandbox::enter(std::path::Path::new(&argv[2]));
    }
    eprintln!("usage: xlfs-sandbox-helper __sandbox SPEC.json");
    std::process::exit(2);
}
