//! `cargo xtask test`: the one command that runs every test.
//!
//! Before the suite it provisions what the suite needs from the system: `redis-server` and
//! `redis-cli` (the pool-redis tests start their own servers on loopback ports: plain, TLS —
//! Debian's build has TLS — and a six-node cluster that `redis-cli --cluster create` joins)
//! and moto's S3 server (s3-client's tests start their own; see `moto.rs`). On Debian-like
//! systems, as root or with password-less sudo, it installs Debian's packages; otherwise it
//! stops and says how.
//! After the suite it builds the API docs with rustdoc's warnings as errors (a link to a
//! private or missing item is a dead link on docs.rs) and runs the engine's model check with its bounded budget (a few seconds
//! per scheduler; `cargo xtask model-check --deep` is the long run).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use clap::Args;

use crate::cargo;

/// Options of `cargo xtask test`.
#[derive(Debug, Args)]
pub(crate) struct TestArgs {
    /// Extra arguments passed to `cargo test` (after `--`), e.g. a test name filter.
    #[arg(last = true)]
    pub(crate) rest: Vec<String>,
}

pub(crate) fn run(args: &TestArgs) -> Result<(), String> {
    ensure_redis_server()?;
    crate::moto::ensure_moto_server(&crate::target_dir())?;
    // Every feature: the second runtime (smol), the policies, the aws-sdk bucket admin, the
    // metrics facade… each has tests that only run when it is on.
    let mut workspace = vec!["test", "--workspace", "--all-features"];
    if !args.rest.is_empty() {
        workspace.push("--");
        workspace.extend(args.rest.iter().map(String::as_str));
    }
    cargo(&workspace)?;
    // A test-name filter narrows the suite; the model check and the compile-error check run
    // only with the whole suite.
    if args.rest.is_empty() {
        crate::feature_hints::check()?;
        check_docs()?;
        crate::model_check::run(&crate::model_check::ModelCheckArgs::bounded())?;
    }
    Ok(())
}

/// The API docs as docs.rs builds them (every feature), with every rustdoc warning an error:
/// a link to a private item or a broken one is a page a user cannot follow.
fn check_docs() -> Result<(), String> {
    crate::cargo_with_env(
        &["doc", "--workspace", "--all-features", "--no-deps"],
        &[("RUSTDOCFLAGS".into(), "-D warnings".into())],
    )
}

/// What to tell people who must install `redis-server` themselves.
const INSTALL_HINT: &str = "install it and run `cargo xtask test` again: \
     Debian/Ubuntu `sudo apt-get install redis-server`, Fedora `sudo dnf install redis`, \
     macOS `brew install redis` (the tests start their own server; no service is needed)";

/// The programs the pool-redis tests run.
const REDIS_PROGRAMS: [&str; 2] = ["redis-server", "redis-cli"];

/// Makes sure `redis-server` and `redis-cli` are on PATH, installing Debian's packages when
/// allowed.
fn ensure_redis_server() -> Result<(), String> {
    if REDIS_PROGRAMS.iter().all(|p| find_on_path(p).is_some()) {
        return Ok(());
    }
    if !Path::new("/etc/debian_version").exists() || find_on_path("apt-get").is_none() {
        return Err(format!(
            "redis-server or redis-cli is not on PATH and this is not a Debian-like system; \
             {INSTALL_HINT}"
        ));
    }
    let privilege = if is_root() {
        Privilege::Root
    } else if find_on_path("sudo").is_some() && succeeds(Command::new("sudo").args(["-n", "true"]))
    {
        Privilege::Sudo
    } else {
        return Err(format!(
            "redis-server or redis-cli is not on PATH and installing them needs root (or \
             password-less sudo); {INSTALL_HINT}"
        ));
    };
    eprintln!("xtask: redis-server or redis-cli is missing; installing Debian's packages");
    if !has_install_candidate("redis-server") {
        apt_get(privilege, &["update"])?;
    }
    apt_get(
        privilege,
        &[
            "install",
            "-y",
            "--no-install-recommends",
            "redis-server",
            "redis-tools",
        ],
    )?;
    stop_system_service(privilege);
    if let Some(missing) = REDIS_PROGRAMS.iter().find(|p| find_on_path(p).is_none()) {
        return Err(format!(
            "installed Debian's redis packages, but {missing} is still not on PATH; {INSTALL_HINT}"
        ));
    }
    Ok(())
}

#[derive(Debug, Clone, Copy)]
enum Privilege {
    Root,
    Sudo,
}

impl Privilege {
    /// `program args…` run as root, non-interactively.
    fn command(self, program: &str, args: &[&str]) -> Command {
        let mut command = match self {
            Privilege::Root => Command::new(program),
            Privilege::Sudo => {
                let mut sudo = Command::new("sudo");
                // sudo resets the environment: pass the one variable apt needs through env(1).
                sudo.args(["-n", "env", "DEBIAN_FRONTEND=noninteractive", program]);
                sudo
            }
        };
        command.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        command
    }
}

fn apt_get(privilege: Privilege, args: &[&str]) -> Result<(), String> {
    eprintln!("xtask: running apt-get {}", args.join(" "));
    let status = privilege
        .command("apt-get", args)
        .stdin(Stdio::null())
        .status()
        .map_err(|e| format!("could not start apt-get: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "`apt-get {}` failed ({status}); {INSTALL_HINT}",
            args.join(" ")
        ))
    }
}

/// The package starts a system Redis on port 6379 where services run; the tests start their
/// own, so stop it and keep it from starting at boot (best effort: containers have none).
fn stop_system_service(privilege: Privilege) {
    let quiet = |mut command: Command| {
        let _ = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    };
    if Path::new("/run/systemd/system").exists() {
        quiet(privilege.command("systemctl", &["disable", "--now", "redis-server"]));
    } else if find_on_path("service").is_some() {
        quiet(privilege.command("service", &["redis-server", "stop"]));
    }
}

/// True if apt already knows a version of `package` (no `apt-get update` needed).
fn has_install_candidate(package: &str) -> bool {
    Command::new("apt-cache")
        .args(["policy", package])
        .stderr(Stdio::null())
        .output()
        .map(|output| {
            String::from_utf8_lossy(&output.stdout)
                .lines()
                .filter_map(|line| line.trim().strip_prefix("Candidate:"))
                .any(|candidate| candidate.trim() != "(none)")
        })
        .unwrap_or(false)
}

/// The target directory cargo builds into (the moto virtualenv lives there too).
pub(crate) fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|output| String::from_utf8_lossy(&output.stdout).trim() == "0")
        .unwrap_or(false)
}

fn succeeds(command: &mut Command) -> bool {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

fn find_on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}
