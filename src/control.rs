//! The control socket, `state_dir/control.sock`: how `foobar upgrade`, `foobar reload` and
//! scripts reach the running server. One line in (`upgrade`, `reload`, `pid`), one line out
//! (`ok ...` or `error ...`). Only the owner may connect (mode 0600).
//!
//! It also keeps two servers off one `state_dir`: a second `foobar serve` finds the socket
//! answering and refuses to start.

use std::{
    io::{BufRead, BufReader, Write},
    os::unix::{fs::PermissionsExt, net::UnixListener},
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, bail};

const SOCKET: &str = "control.sock";
/// The PID file: always names the serving process.
const PID_FILE: &str = "foobar.pid";

pub fn socket_path(state_dir: &Path) -> PathBuf {
    state_dir.join(SOCKET)
}

pub fn pid_path(state_dir: &Path) -> PathBuf {
    state_dir.join(PID_FILE)
}

/// Binds the control socket; a socket file left by a server that is gone is replaced.
pub fn bind(state_dir: &Path) -> anyhow::Result<UnixListener> {
    std::fs::create_dir_all(state_dir)
        .with_context(|| format!("creating {}", state_dir.display()))?;
    let path = socket_path(state_dir);
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(&path).is_ok() {
            let pid = std::fs::read_to_string(pid_path(state_dir)).unwrap_or_default();
            bail!(
                "foobar already runs on {} (pid {}); `foobar upgrade` replaces it without a gap",
                state_dir.display(),
                pid.trim()
            );
        }
        std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
    }
    let listener =
        UnixListener::bind(&path).with_context(|| format!("binding {}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("restricting {}", path.display()))?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Sends `command` to the server running on `state_dir` and returns its answer; waits at most
/// `wait` for it.
pub fn ask(state_dir: &Path, command: &str, wait: Duration) -> anyhow::Result<String> {
    let path = socket_path(state_dir);
    let mut stream = std::os::unix::net::UnixStream::connect(&path).with_context(|| {
        format!(
            "no foobar running on {} ({} does not answer)",
            state_dir.display(),
            path.display()
        )
    })?;
    stream.set_read_timeout(Some(wait))?;
    writeln!(stream, "{command}")?;
    let mut answer = String::new();
    BufReader::new(&stream)
        .read_line(&mut answer)
        .context("waiting for the server's answer")?;
    if answer.is_empty() {
        bail!("the server closed the control connection without an answer");
    }
    Ok(answer.trim_end().to_string())
}
