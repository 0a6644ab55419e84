//! Command-line arguments.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "xlfs",
    version,
    about = "Xen & Linux from Scratch: build a Xen host from pinned sources, then boot it"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct Global {
    /// The book of recipes [default: ./book, else the book of this xlfs checkout]
    #[arg(long, global = true, env = "XLFS_BOOK")]
    pub book: Option<PathBuf>,
    /// Where state, artifacts and builds live [default: $XDG_DATA_HOME/xlfs]
    #[arg(long, global = true, env = "XLFS_HOME")]
    pub home: Option<PathBuf>,
    /// Download cache [default: $XDG_CACHE_HOME/xlfs/sources, or HOME/sources with --home]
    #[arg(long, global = true, env = "XLFS_SOURCES")]
    pub sources: Option<PathBuf>,
    /// Where the pinned toolchain roots of the `host` environment live [default: HOME/toolchains]
    #[arg(long, global = true, env = "XLFS_TOOLCHAINS")]
    pub toolchains: Option<PathBuf>,
    /// Debian archive base URL for .orig tarballs and the toolchain root [default: read from /etc/apt]
    #[arg(long, global = true, env = "XLFS_DEBIAN_MIRROR")]
    pub debian_mirror: Option<String>,
    /// A local directory holding source files, tried last (repeatable)
    #[arg(
        long = "mirror-dir",
        global = true,
        env = "XLFS_MIRROR_DIR",
        value_delimiter = ':'
    )]
    pub mirror_dirs: Vec<PathBuf>,
    /// Use only the download cache, never the network
    #[arg(long, global = true)]
    pub offline: bool,
    /// Print only failures and summaries
    #[arg(long, short, global = true)]
    pub quiet: bool,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Work with the book of recipes
    Book {
        #[command(subcommand)]
        command: BookCommand,
    },
    /// Print the build order and what is cached or must build, and why
    Plan {
        targets: Vec<String>,
        /// Plan everything a profile needs (with the targets)
        #[arg(long)]
        profile: Option<String>,
        /// Print the plan as JSON
        #[arg(long)]
        json: bool,
    },
    /// Download and verify every source the plan needs
    Fetch {
        targets: Vec<String>,
        /// Parallel downloads
        #[arg(long, default_value_t = 4)]
        parallel: usize,
        /// Only what building the targets needs, not their runtime dependencies
        #[arg(long)]
        no_runtime: bool,
    },
    /// Build what the plan says
    Build(BuildArgs),
    /// What is built, outdated, failed
    Status,
    /// Show a package's last build log
    Log {
        package: String,
        /// Only the last N lines
        #[arg(long, short = 'n')]
        tail: Option<usize>,
    },
    /// List a package's files (its artifact manifest)
    Files {
        package: String,
        #[arg(long)]
        json: bool,
    },
    /// Why a package would rebuild
    Why { package: String },
    /// Remove artifacts and build trees the book no longer needs
    Gc {
        /// Only say what would be removed
        #[arg(long)]
        dry_run: bool,
    },
    /// Re-hash every stored artifact against its manifest and the state database; remove the
    /// corrupt ones (the next build makes them again). Exit status 1 if any was corrupt.
    Verify,
    /// Times, SBU and sizes of the last builds
    Report {
        #[arg(long)]
        json: bool,
    },
    /// Assemble a profile's images (dom0 initramfs and ext4, guest disks, xl.cfg)
    Image { profile: String },
    /// Boot a profile's images under QEMU: interactive, or scripted checks with --check
    Boot {
        profile: String,
        /// Run the scripted checks and exit non-zero on the first failure
        #[arg(long)]
        check: bool,
        /// Accelerator: auto (KVM only if it really works), kvm or tcg [default: the profile's]
        #[arg(long)]
        accel: Option<String>,
    },
    /// The main job: doctor, fetch, build, images and boot check of a profile
    Up {
        #[arg(default_value = "quick")]
        profile: String,
        #[arg(long, short)]
        jobs: Option<usize>,
    },
    /// Create the pinned toolchain root of the `host` environment if missing; print its identity
    Toolchain {
        /// List its installed packages
        #[arg(long)]
        packages: bool,
    },
    /// Shared artifact caches on S3-compatible object stores
    Cache {
        #[command(subcommand)]
        command: CacheCommand,
    },
    /// The signing key of this home and the keys it trusts
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Check that this machine can build and boot; list what is missing
    Doctor {
        /// Install what is missing (apt)
        #[arg(long)]
        fix: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum BookCommand {
    /// Validate the whole book and report every problem
    Check,
    /// List the packages of the book
    List,
}

#[derive(Subcommand, Debug)]
pub enum CacheCommand {
    /// Add a shared cache: `xlfs cache add NAME s3://BUCKET/PREFIX --endpoint URL [--push]`
    Add {
        name: String,
        /// s3://BUCKET/PREFIX
        url: String,
        /// The S3-compatible endpoint [default: AWS]
        #[arg(long)]
        endpoint: Option<String>,
        /// The bucket's region
        #[arg(long)]
        region: Option<String>,
        /// Upload what `xlfs build` builds (signed with this home's key)
        #[arg(long)]
        push: bool,
        /// Seconds the cache may take to answer [default: the home's `timeout`, else 5]
        #[arg(long)]
        timeout: Option<u64>,
    },
    /// List the configured caches, the trusted keys and this home's signing key
    List,
    /// Remove a cache from this home's configuration (the cache itself is left alone)
    Remove { name: String },
    /// Re-check every artifact of a cache: signature, sha256, manifest and contents
    Verify { name: String },
}

#[derive(Subcommand, Debug)]
pub enum KeyCommand {
    /// Create this home's signing key (HOME/keys/signing.secret, mode 0600); print its public
    /// key as NAME:BASE64 and trust it
    Generate {
        /// The key's name, written into every signature [default: the host name]
        #[arg(long)]
        name: Option<String>,
        /// Replace an existing key
        #[arg(long)]
        force: bool,
    },
    /// Trust signatures made with a public key (NAME:BASE64)
    Trust { key: String },
    /// Stop trusting the public key named NAME
    Untrust { name: String },
    /// Print this home's public key
    Show,
}

#[derive(Args, Debug, Clone)]
pub struct BuildArgs {
    pub targets: Vec<String>,
    /// Build everything a profile needs (with its targets)
    #[arg(long)]
    pub profile: Option<String>,
    /// Total parallel jobs across all builds [default: number of cores]
    #[arg(long, short)]
    pub jobs: Option<usize>,
    /// Keep building what does not depend on a failed package
    #[arg(long, short)]
    pub keep_going: bool,
    /// Run the recipes' check steps (test suites)
    #[arg(long)]
    pub check: bool,
    /// Refuse instead of waiting when another build holds the lock
    #[arg(long)]
    pub no_wait: bool,
    /// Build the targets and what building them needs, not their runtime dependencies
    #[arg(long)]
    pub no_runtime: bool,
    /// Upload the plan's artifacts to every configured cache (not only those with `push = true`)
    #[arg(long)]
    pub push: bool,
}
