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
    /// Judge the test results of a kept build tree against the package's `[build.tests] allow`
    /// again (after editing the allowlist, without running the suite again). Exit status 1 if a
    /// failure is still not allowed
    Tests {
        package: String,
        /// The build tree [default: the tree this home kept when the package's last build failed]
        #[arg(long)]
        tree: Option<std::path::PathBuf>,
        /// Print the allowlist these results measure, as TOML for `[build.tests]`: the recipe's
        /// `allow`, then an exact entry for each failure it does not name (entries that match no
        /// failure here are said on stderr, and kept)
        #[arg(long)]
        allow_toml: bool,
    },
    /// Remove artifacts and build trees the book no longer needs
    Gc {
        /// Only say what would be removed
        #[arg(long)]
        dry_run: bool,
    },
    /// Re-hash every stored artifact against its manifest and the state database; remove the
    /// corrupt ones (the next build makes them again). Exit status 1 if any was corrupt.
    Verify,
    /// Times, SBU and sizes of the last builds, per package and per chapter
    Report {
        #[arg(long)]
        json: bool,
        /// Also write an HTML page with the build's timeline, CPU use and sizes
        #[arg(long, value_name = "FILE")]
        html: Option<std::path::PathBuf>,
    },
    /// Rebuild cached packages in a scratch home against the same dependencies and compare the
    /// artifacts bit for bit
    Rebuild {
        /// Compare the rebuilt artifacts with the stored ones (the only mode)
        #[arg(long, required = true)]
        compare: bool,
        /// Packages to rebuild
        #[arg(required = true)]
        packages: Vec<String>,
        /// Total parallel jobs [default: number of cores]
        #[arg(long, short)]
        jobs: Option<usize>,
        /// Keep the scratch home even when everything is identical
        #[arg(long)]
        keep: bool,
        /// Also run the recipes' check steps (test suites) in the rebuild, judged against their
        /// `[build.tests] allow` lists: a cached package's test suite, without touching the home
        #[arg(long)]
        check: bool,
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
    /// Guests: create one from a template, check one
    Guest {
        #[command(subcommand)]
        command: GuestCommand,
    },
    /// The main job: doctor, fetch, build, images and boot check of a profile (default: host,
    /// the LFS system; `quick` is the 40-minute proof on a BusyBox dom0)
    Up {
        #[arg(default_value = "host")]
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
pub enum GuestCommand {
    /// Add a guest made from a template (book/guests/T.toml) to a profile, after checking it
    New(Box<GuestNewArgs>),
    /// Boot the profile's images under QEMU and check one guest: it starts, and its template's
    /// checks pass from this machine (run `xlfs image PROFILE` first)
    Check {
        name: String,
        /// The profile that has the guest [default: the one profile that has it]
        #[arg(long)]
        profile: Option<String>,
        /// Accelerator: auto, kvm or tcg [default: the profile's]
        #[arg(long)]
        accel: Option<String>,
    },
}

#[derive(Args, Debug, Clone)]
pub struct GuestNewArgs {
    /// The guest's name (also its hostname unless --hostname)
    pub name: String,
    /// The template: a file of book/guests/ without `.toml`
    #[arg(long, short)]
    pub template: String,
    /// The profile to add the guest to (default: host, the default of `xlfs up`)
    #[arg(long, default_value = "host")]
    pub profile: String,
    #[arg(long)]
    pub hostname: Option<String>,
    /// Memory in MiB
    #[arg(long)]
    pub memory: Option<u32>,
    #[arg(long)]
    pub vcpus: Option<u32>,
    /// Disk size: MiB, or with a unit (M, G), e.g. 64M, 1G
    #[arg(long)]
    pub disk: Option<String>,
    /// Address on the bridge, ADDR/PREFIX [default: the first free one of the host's bridge]
    #[arg(long)]
    pub ip: Option<String>,
    #[arg(long)]
    pub gateway: Option<String>,
    /// DNS servers (repeatable, or comma-separated)
    #[arg(long, value_delimiter = ',')]
    pub dns: Vec<String>,
    /// The bridge [default: the host's]
    #[arg(long)]
    pub bridge: Option<String>,
    /// The MAC address [default: derived from the name]
    #[arg(long)]
    pub mac: Option<String>,
    /// A public key file for root's authorized_keys (repeatable)
    #[arg(long = "ssh-key")]
    pub ssh_key: Vec<std::path::PathBuf>,
    /// pvh (default) or pv
    #[arg(long = "type")]
    pub kind: Option<String>,
    /// Keep the disk on a logical volume of this volume group on the host
    #[arg(long)]
    pub lvm: Option<String>,
    /// Start the guest when the host boots (/etc/xen/auto)
    #[arg(long)]
    pub autostart: bool,
    /// A template setting, KEY=VALUE (repeatable; lists are comma-separated)
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
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
    /// Run the check steps (test suites) of every package built, or with `--check=PKG,...` of
    /// those only (added to the profile's `[profile] tests`); judged by `[build.tests]`
    #[arg(long, num_args = 0..=1, require_equals = true, value_delimiter = ',', value_name = "PKG,...")]
    pub check: Option<Vec<String>>,
    /// Refuse instead of waiting when another build holds the lock
    #[arg(long)]
    pub no_wait: bool,
    /// Build the targets and what building them needs, not their runtime dependencies
    #[arg(long)]
    pub no_runtime: bool,
    /// Upload the plan's artifacts to every configured cache (not only those with `push = true`)
    #[arg(long)]
    pub push: bool,
    #[command(flatten)]
    pub cc: CcArgs,
}

/// Faster rebuilds: ccache and icecream in the sandbox (never part of a key).
#[derive(Args, Debug, Clone, Default)]
pub struct CcArgs {
    /// Compile through ccache, one cache per package name in HOME/ccache/NAME
    #[arg(long, env = "XLFS_CCACHE")]
    pub ccache: bool,
    /// Spread compile jobs over an icecream network through the local iceccd (builds run
    /// locally when no scheduler answers)
    #[arg(long, env = "XLFS_ICECC")]
    pub icecc: bool,
    /// The icecream scheduler asked for its job slots [default: $ICECC_SCHEDULER, else localhost]
    #[arg(long, value_name = "HOST[:PORT]")]
    pub icecc_scheduler: Option<String>,
    /// The local iceccd's node name (iceccd -N), whose slots are not remote [default: the host name]
    #[arg(long, value_name = "NAME")]
    pub icecc_node: Option<String>,
    /// The local iceccd's socket [default: /var/run/icecc/iceccd.socket]
    #[arg(long, value_name = "PATH")]
    pub icecc_socket: Option<PathBuf>,
}
