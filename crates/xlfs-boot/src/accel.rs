//! Choosing between KVM and TCG by booting a probe guest.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::machine::{default_qemu, find_qemu};
use crate::sectors::{kvm_probe_sector, PROBE_DONE, PROBE_STARTED};
use crate::{Accel, AccelPref, Console, Drive, Machine};

/// Time kept aside from the probe's budget to kill QEMU and clean up.
const KILL_MARGIN: Duration = Duration::from_millis(200);
/// What QEMU prints when KVM cannot run (or emulate) guest code.
const KVM_FAILURES: [&str; 2] = ["KVM internal error", "emulation failure"];

/// Decides at run time which accelerator to use, with a human reason.
///
/// [`AccelPref::Tcg`] gives TCG without probing. Otherwise the answer is KVM
/// only if a real KVM guest runs: [`probe_kvm`] boots a 512-byte probe
/// sector under `-accel kvm` that must reach 64-bit mode, run a busy loop
/// natively and print a marker on COM1 within `timeout`; anything else
/// (no `/dev/kvm`, no QEMU, an emulation failure, a timeout) gives TCG. The
/// existence of `/dev/kvm` alone decides nothing. Returns within `timeout`
/// (plus a few milliseconds).
///
/// Uses the QEMU from [`default_qemu`]; see [`choose_accel_with`].
pub fn choose_accel(prefer: AccelPref, timeout: Duration) -> (Accel, String) {
    choose_accel_with(&default_qemu(), prefer, timeout)
}

/// [`choose_accel`] with a given QEMU binary.
pub fn choose_accel_with(qemu: &Path, prefer: AccelPref, timeout: Duration) -> (Accel, String) {
    let (accel, reason) = match prefer {
        AccelPref::Tcg => (Accel::Tcg, "TCG requested".to_string()),
        AccelPref::Auto | AccelPref::Kvm => match probe_kvm(qemu, timeout) {
            Ok(took) => (
                Accel::Kvm,
                format!(
                    "KVM works (the probe guest ran natively and answered in {:.2}s)",
                    took.as_secs_f64()
                ),
            ),
            Err(why) if prefer == AccelPref::Kvm => (
                Accel::Tcg,
                format!("KVM requested but not usable, using TCG: {why}"),
            ),
            Err(why) => (Accel::Tcg, why),
        },
    };
    tracing::info!(%accel, %reason, "accelerator chosen");
    (accel, reason)
}

/// Boots the KVM probe sector under `-accel kvm` and waits up to `timeout`
/// for it to finish. `Ok(time it took)` if KVM really runs guest code, else
/// `Err(why not)`, e.g. `"/dev/kvm missing"` or `"KVM probe timed out after
/// 5s"`.
pub fn probe_kvm(qemu: &Path, timeout: Duration) -> Result<Duration, String> {
    probe_kvm_cpu(qemu, Accel::Kvm.default_cpu(), timeout)
}

/// [`probe_kvm`] with a given `-cpu` model (the probe should use the model
/// the real machine will use: [`Accel::default_cpu`] by default).
pub fn probe_kvm_cpu(qemu: &Path, cpu: &str, timeout: Duration) -> Result<Duration, String> {
    let begun = Instant::now();
    let deadline = begun + timeout.saturating_sub(KILL_MARGIN);
    let dev = Path::new("/dev/kvm");
    if !dev.exists() {
        return Err("/dev/kvm missing".into());
    }
    if let Err(e) = std::fs::OpenOptions::new().read(true).write(true).open(dev) {
        return Err(format!("/dev/kvm cannot be opened: {e}"));
    }
    let qemu = find_qemu(qemu).map_err(|_| format!("{} not found", qemu.display()))?;
    let dir = tempfile::Builder::new()
        .prefix("xlfs-kvm-probe")
        .tempdir()
        .map_err(|e| format!("KVM probe: cannot make a temporary directory: {e}"))?;
    let img = dir.path().join("probe.img");
    std::fs::write(&img, kvm_probe_sector())
        .map_err(|e| format!("KVM probe: cannot write {}: {e}", img.display()))?;
    let mut m = Machine::new(Accel::Kvm);
    m.qemu = qemu;
    m.memory_mib = 16;
    m.cpu = cpu.into();
    m.drives.push(Drive::raw(&img, "ide"));
    m.extra = vec!["-boot".into(), "c".into()];
    let mut c = Console::spawn(&m, &dir.path().join("console.log")).map_err(|e| format!("KVM probe: {e}"))?;
    let secs = |d: Duration| format!("{:.1}s", d.as_secs_f64());
    let result = loop {
        let out = c.output();
        let err = c.qemu_stderr();
        if out.contains(PROBE_DONE) {
            break Ok(c.elapsed());
        }
        if KVM_FAILURES.iter().any(|f| out.contains(f) || err.contains(f)) {
            break Err(format!(
                "KVM probe failed after {}: KVM internal error (emulation failure): this KVM cannot run the guest natively",
                secs(c.elapsed())
            ));
        }
        if let Some(status) = c.exit_status() {
            let said = err
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty() && !l.contains("warning:"))
                .unwrap_or("")
                .to_string();
            break Err(format!(
                "KVM probe failed: QEMU exited ({status}){}",
                if said.is_empty() {
                    String::new()
                } else {
                    format!(": {said}")
                }
            ));
        }
        if Instant::now() >= deadline {
            let why = if out.contains(PROBE_STARTED) {
                " (the guest started but did not finish its 64-bit busy loop: KVM is emulating, not running it)"
            } else {
                ""
            };
            break Err(format!("KVM probe timed out after {}{why}", fmt_secs(timeout)));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    c.terminate(Duration::ZERO);
    tracing::debug!(?result, took = ?begun.elapsed(), "KVM probe");
    result
}

/// `5s` for whole seconds, `2.5s` otherwise.
fn fmt_secs(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcg_is_chosen_without_probing() {
        let t = Instant::now();
        let (a, why) = choose_accel_with(
            Path::new("/nonexistent/qemu"),
            AccelPref::Tcg,
            Duration::from_secs(5),
        );
        assert_eq!(a, Accel::Tcg);
        assert_eq!(why, "TCG requested");
        assert!(t.elapsed() < Duration::from_millis(100));
    }

    #[test]
    fn missing_qemu_means_tcg_with_a_reason() {
        let (a, why) = choose_accel_with(
            Path::new("/nonexistent/qemu"),
            AccelPref::Auto,
            Duration::from_secs(5),
        );
        assert_eq!(a, Accel::Tcg);
        assert!(
            why.contains("/dev/kvm") || why.contains("/nonexistent/qemu not found"),
            "{why}"
        );
    }

    #[test]
    fn secs_format() {
        assert_eq!(fmt_secs(Duration::from_secs(5)), "5s");
        assert_eq!(fmt_secs(Duration::from_millis(2500)), "2.5s");
    }
}
