//! `xlfs`: Xen & Linux from Scratch. See `xlfs --help` and the README.

mod app;
mod args;
mod cache;
mod commands;
mod doctor;
mod guest;
mod host;
mod rebuild;
mod signals;
mod system;

use clap::Parser;

fn main() {
    // The sandbox helper must run before anything starts a thread.
    xlfs_sandbox::dispatch();
    xlfs_build::packer::dispatch();
    let cli = args::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("XLFS_LOG"))
        .with_writer(std::io::stderr)
        .without_time()
        .init();
    let code = match commands::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    };
    std::process::exit(code);
}
