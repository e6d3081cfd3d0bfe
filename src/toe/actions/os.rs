//! UpdateOS and Reboot.

use super::exec::run_process;
use super::{fail, ActionContext, ActionError, ActionOutcome, Inputs, RebootRequest};

/// A package manager UpdateOS knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PackageManager {
    /// Debian, Ubuntu.
    Apt,
    /// Fedora, RHEL 8+, Amazon Linux 2023.
    Dnf,
    /// RHEL 7, Amazon Linux 2.
    Yum,
    /// SUSE.
    Zypper,
}

/// Detects the target's package manager.
pub async fn detect(ctx: &ActionContext<'_>) -> Result<PackageManager, ActionError> {
    let probe = "for p in apt-get dnf yum zypper; do if command -v $p >/dev/null 2>&1; then echo $p; exit 0; fi; done; exit 1";
    let args = ["-c".to_string(), probe.to_string()];
    let out = ctx.target.capture("sh", &args).await?;
    match String::from_utf8_lossy(&out.stdout).trim() {
        "apt-get" => Ok(PackageManager::Apt),
        "dnf" => Ok(PackageManager::Dnf),
        "yum" => Ok(PackageManager::Yum),
        "zypper" => Ok(PackageManager::Zypper),
        _ => fail(format!(
            "UpdateOS: none of apt-get, dnf, yum or zypper is on {}",
            ctx.target.describe()
        )),
    }
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The shell script that updates packages: everything (minus `exclude`),
/// or only `include` minus `exclude`.
pub fn update_script(pm: PackageManager, include: &[String], exclude: &[String]) -> String {
    let wanted: Vec<String> = include
        .iter()
        .filter(|p| !exclude.contains(p))
        .map(|p| quote(p))
        .collect();
    let excluded: Vec<String> = exclude.iter().map(|p| quote(p)).collect();
    let (w, x) = (wanted.join(" "), excluded.join(" "));
    if !include.is_empty() && wanted.is_empty() {
        return "echo 'UpdateOS: every included package is also excluded; nothing to do'".into();
    }
    match pm {
        PackageManager::Apt => {
            let mut s =
                String::from("set -e\nexport DEBIAN_FRONTEND=noninteractive\napt-get update\n");
            let opts = "-y -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold";
            if !wanted.is_empty() {
                s.push_str(&format!("apt-get install {opts} --only-upgrade {w}\n"));
            } else if !excluded.is_empty() {
                s.push_str(&format!("held=$(apt-mark showhold)\napt-mark hold {x} >/dev/null 2>&1 || true\ntrap 'apt-mark unhold {x} >/dev/null 2>&1 || true; [ -z \"$held\" ] || apt-mark hold $held >/dev/null' EXIT\napt-get upgrade {opts}\n"));
            } else {
                s.push_str(&format!("apt-get upgrade {opts}\n"));
            }
            s
        }
        PackageManager::Dnf | PackageManager::Yum => {
            let bin = if pm == PackageManager::Dnf {
                "dnf"
            } else {
                "yum"
            };
            let ex: String = exclude
                .iter()
                .map(|p| format!(" --exclude={}", quote(p)))
                .collect();
            format!("set -e\n{bin} -y upgrade{ex} {w}\n")
        }
        PackageManager::Zypper => {
            let mut s = String::from("set -e\nzypper --non-interactive refresh\n");
            if !excluded.is_empty() {
                s.push_str(&format!("zypper --non-interactive addlock {x}\ntrap 'zypper --non-interactive removelock {x}' EXIT\n"));
            }
            s.push_str(&format!("zypper --non-interactive update {w}\n"));
            s
        }
    }
}

/// Runs UpdateOS or Reboot.
pub async fn run(
    action: &str,
    inputs: &Inputs,
    ctx: &ActionContext<'_>,
) -> Result<ActionOutcome, ActionError> {
    if action == "Reboot" {
        let delay = inputs.int("delaySeconds", 0)?;
        if delay < 0 {
            return fail(format!(
                "Reboot: delaySeconds must not be negative, found {delay}"
            ));
        }
        return Ok(ActionOutcome {
            outputs: Default::default(),
            reboot: Some(RebootRequest::NextStep {
                delay_seconds: delay as u64,
            }),
        });
    }
    let pm = detect(ctx).await?;
    ctx.log(&format!("UpdateOS: using {pm:?}"));
    let script = update_script(pm, &inputs.list("include"), &inputs.list("exclude"));
    let mut out = run_process("sh", &["-c".to_string(), script], ctx).await?;
    out.outputs.clear();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn include_minus_exclude() {
        let s = update_script(
            PackageManager::Apt,
            &["a".into(), "b".into()],
            &["b".into()],
        );
        assert!(s.contains("--only-upgrade 'a'\n"), "{s}");
        let s = update_script(PackageManager::Dnf, &[], &["kernel".into()]);
        assert!(s.contains("dnf -y upgrade --exclude='kernel'"), "{s}");
        let s = update_script(PackageManager::Apt, &["a".into()], &["a".into()]);
        assert!(s.contains("nothing to do"));
    }
}
