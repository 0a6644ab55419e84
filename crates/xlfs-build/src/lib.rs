//! Building: from a plan to artifacts in the store.
//!
//! - [`home`]: where state lives (XDG);
//! - [`state`]: the SQLite state database;
//! - [`lock`]: one build per home at a time;
//! - [`envid`]: the build environments' identities (part of every key);
//! - [`toolchain`]: the pinned toolchain root of the `host` environment;
//! - [`jobs`]: the shared GNU make jobserver (and the remote slots of icecream);
//! - [`cctools`]: ccache and icecream in the sandbox (`--ccache`, `--icecc`);
//! - [`package`]: one package: unpack, patch, sandbox, pack, store, record;
//! - [`qa`]: the contamination check after every build;
//! - [`run`]: the parallel scheduler and its progress display;
//! - [`report`]: times, SBU and sizes.

pub mod archives;
pub mod cctools;
pub mod display;
pub mod envid;
pub mod events;
pub mod home;
pub mod jobs;
pub mod lock;
pub mod package;
pub mod packer;
pub mod qa;
pub mod report;
pub mod run;
pub mod state;
pub mod suites;
pub mod toolchain;
pub mod verify;

pub use home::Home;
pub use package::Ctx;
pub use state::{BuildRecord, StateDb};
