//! Run QEMU, drive the serial console, check a booted system.
//!
//! * [`choose_accel`] decides between KVM and TCG by booting a probe guest
//!   (a `/dev/kvm` that exists may still not work).
//! * [`Machine`] describes a QEMU x86-64 machine (Xen as a multiboot kernel
//!   with its modules, or a disk) and builds its command line.
//! * [`Console`] runs it with the serial console piped: [`Console::expect`]
//!   waits for output, [`Console::send`] types, [`Console::run`] runs a shell
//!   command and returns its exit code and output. Everything is logged.
//! * [`run_checks`] runs a list of named [`Check`]s, timing each from boot.
//! * [`interactive`] runs a machine on this terminal.
//!
//! ```no_run
//! use std::time::Duration;
//! use xlfs_boot::{choose_accel, AccelPref, Console, Machine};
//!
//! let (accel, why) = choose_accel(AccelPref::Auto, Duration::from_secs(5));
//! println!("using {accel}: {why}");
//! let mut m = Machine::new(accel);
//! m.kernel = "/build/xen".into();
//! m.append = "console=com1 com1=115200 dom0_mem=512M".into();
//! m.initrd = vec![
//!     ("/build/bzImage".into(), "console=hvc0 earlyprintk=xen".into()),
//!     ("/build/initramfs.cpio.gz".into(), String::new()),
//! ];
//! let mut c = Console::spawn(&m, "/tmp/boot.log".as_ref())?;
//! c.expect("login:", Duration::from_secs(600))?;
//! let (rc, out) = c.run("xl list", Duration::from_secs(30))?;
//! # Ok::<(), xlfs_boot::BootError>(())
//! ```

#![warn(missing_docs)]

mod accel;
mod checks;
mod console;
mod error;
mod machine;
pub mod sectors;
mod text;

pub use accel::{choose_accel, choose_accel_with, probe_kvm, probe_kvm_cpu};
pub use checks::{run_checks, run_on_build_machine, Check, CheckResult};
pub use console::{interactive, Console, TAIL_LINES};
pub use error::{BootError, ExpectReason, QEMU_INSTALL_HINT};
pub use machine::{default_qemu, escape_commas, find_qemu, Accel, AccelPref, Drive, Machine, QEMU_ENV};
pub use text::{strip_ansi, tail_lines};
