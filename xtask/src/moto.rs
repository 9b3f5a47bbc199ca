//! Provisioning moto's S3 server (PyPI `moto[server]`) for the test suite.
//!
//! s3-client's tests run the S3 part of the suite against moto as well as against the
//! in-process s3s-fs server (moto is stricter: conditional requests, "directory" keys). moto
//! goes into a virtualenv under the target directory, never into the system's Python; the
//! tests start their own `moto_server` on a loopback port from the path this module passes
//! them in `S3POOL_MOTO_SERVER`. When moto cannot be provisioned the command fails and says
//! why: the moto tests are never skipped.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// What the tests read to find `moto_server`.
pub(crate) const MOTO_ENV: &str = "S3POOL_MOTO_SERVER";

/// The moto release the suite is known to pass on (its skips are named per function), and
/// the libraries moto computes CRC64NVME (awscrt) and CRC32C (crc32c) checksums with: without
/// them it stores a CRC32 in their place, so the checksum tests would meet a 4-byte
/// "CRC64NVME" and a CRC32 named CRC32C.
const REQUIREMENTS: [(&str, &str); 3] = [
    ("moto[server]", "5.2.6"),
    ("awscrt", "0.38.0"),
    ("crc32c", "2.9.post0"),
];

const INSTALL_HINT: &str = "install Python 3 with its venv module (Debian/Ubuntu: \
     `apt-get install python3 python3-venv`) and run `cargo xtask test` again, or install \
     moto yourself (`pip install 'moto[server]==5.2.6' awscrt crc32c`) and set \
     S3POOL_MOTO_SERVER to its moto_server";

/// Makes sure a `moto_server` exists and exports its path in `S3POOL_MOTO_SERVER` for the
/// `cargo test` this process starts next.
pub(crate) fn ensure_moto_server(target_dir: &Path) -> Result<(), String> {
    if let Some(binary) = std::env::var_os(MOTO_ENV) {
        let binary = PathBuf::from(binary);
        if binary.is_file() {
            return Ok(());
        }
        return Err(format!(
            "{MOTO_ENV} names {}, which is not a file",
            binary.display()
        ));
    }
    let venv = target_dir.join("moto-venv");
    let server = venv.join("bin").join("moto_server");
    if !(server.is_file() && installed(&venv)) {
        install(&venv)?;
    }
    if !server.is_file() {
        return Err(format!(
            "installed moto[server] into {}, but it has no bin/moto_server; {INSTALL_HINT}",
            venv.display()
        ));
    }
    // Rust 2021: setting a variable of this single-threaded process before it spawns cargo.
    std::env::set_var(MOTO_ENV, &server);
    Ok(())
}

/// True if `venv` holds every requirement at its version.
fn installed(venv: &Path) -> bool {
    let names: Vec<String> = REQUIREMENTS
        .iter()
        .map(|(name, _)| format!("'{}'", name.split('[').next().unwrap_or(name)))
        .collect();
    let script = format!(
        "import importlib.metadata as m; print(' '.join(m.version(n) for n in [{}]))",
        names.join(", ")
    );
    let wanted: Vec<&str> = REQUIREMENTS.iter().map(|(_, version)| *version).collect();
    Command::new(venv.join("bin").join("python"))
        .args(["-c", &script])
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|output| {
            output.status.success()
                && String::from_utf8_lossy(&output.stdout).trim() == wanted.join(" ")
        })
}

fn install(venv: &Path) -> Result<(), String> {
    ensure_python_venv()?;
    let requirements: Vec<String> = REQUIREMENTS
        .iter()
        .map(|(name, version)| format!("{name}=={version}"))
        .collect();
    eprintln!(
        "xtask: installing {} into {} (once)",
        requirements.join(" "),
        venv.display()
    );
    run(
        Command::new("python3")
            .args(["-m", "venv", "--clear"])
            .arg(venv),
        "python3 -m venv",
    )?;
    run(
        Command::new(venv.join("bin").join("pip"))
            .args(["install", "--quiet", "--disable-pip-version-check"])
            .args(&requirements),
        "pip install moto[server] awscrt crc32c",
    )
}

/// `python3 -m venv` must work; on Debian as root, install what it needs.
fn ensure_python_venv() -> Result<(), String> {
    let venv_works = || {
        Command::new("python3")
            .args(["-c", "import venv, ensurepip"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    };
    if venv_works() {
        return Ok(());
    }
    if !Path::new("/etc/debian_version").exists() || !crate::test::is_root() {
        return Err(format!(
            "python3 with its venv module is needed for moto; {INSTALL_HINT}"
        ));
    }
    eprintln!("xtask: python3's venv is missing; installing Debian's python3-venv");
    run(
        Command::new("apt-get")
            .args(["update"])
            .env("DEBIAN_FRONTEND", "noninteractive"),
        "apt-get update",
    )?;
    run(
        Command::new("apt-get")
            .args([
                "install",
                "-y",
                "--no-install-recommends",
                "python3",
                "python3-venv",
            ])
            .env("DEBIAN_FRONTEND", "noninteractive"),
        "apt-get install python3-venv",
    )?;
    if venv_works() {
        Ok(())
    } else {
        Err(format!(
            "installed python3-venv, but `python3 -m venv` still cannot work; {INSTALL_HINT}"
        ))
    }
}

fn run(command: &mut Command, what: &str) -> Result<(), String> {
    let status = command
        .stdin(Stdio::null())
        .status()
        .map_err(|e| format!("could not start {what}: {e}; {INSTALL_HINT}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{what}` failed ({status}); {INSTALL_HINT}"))
    }
}
