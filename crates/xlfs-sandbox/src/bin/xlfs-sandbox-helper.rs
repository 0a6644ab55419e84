//! `xlfs-sandbox-helper __sandbox SPEC.json` (or `__remove IDS DIR`): the sandbox helper alone,
//! for the test suite (the `xlfs` binary dispatches the same way).
fn main() {
    xlfs_sandbox::dispatch();
    eprintln!("usage: xlfs-sandbox-helper __sandbox SPEC.json | __remove IDS DIR");
    std::process::exit(2);
}
