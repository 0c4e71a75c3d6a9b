//! PHP-FPM from Debian, started by a test in a folder of its own: its configuration, its Unix
//! socket and its logs there, its own process group, killed with the test.
#![allow(dead_code, clippy::unwrap_used)]

use std::{
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// The PHP-FPM binary, if installed.
pub fn fpm() -> Option<&'static str> {
    ["php-fpm8.2", "php-fpm"].into_iter().find(|name| {
        Command::new(name)
            .arg("-v")
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// A running PHP-FPM pool.
pub struct Fpm {
    child: Child,
    pub socket: PathBuf,
    pub dir: PathBuf,
}

impl Drop for Fpm {
    fn drop(&mut self) {
        super::kill_group(self.child.id());
        let _ = self.child.wait();
    }
}

impl Fpm {
    /// Starts `binary` with a pool of `children` workers listening on `dir/fpm.sock`.
    pub fn start(binary: &str, dir: &Path, children: u32) -> Fpm {
        std::fs::create_dir_all(dir).unwrap();
        let socket = dir.join("fpm.sock");
        let config = dir.join("fpm.conf");
        std::fs::write(
            &config,
            format!(
                "[global]\nerror_log = {dir}/error.log\ndaemonize = no\n\
                 [www]\nlisten = {socket}\npm = static\npm.max_children = {children}\n\
                 catch_workers_output = yes\ndecorate_workers_output = no\n\
                 php_admin_value[upload_max_filesize] = 16M\n\
                 php_admin_value[post_max_size] = 16M\n",
                dir = dir.display(),
                socket = socket.display(),
            ),
        )
        .unwrap();
        // As root (tests in CI), FPM runs its workers as root only when told to (-R).
        let child = Command::new(binary)
            .args(["-F", "-R", "-y"])
            .arg(&config)
            .arg("-p")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap();
        let fpm = Fpm {
            child,
            socket,
            dir: dir.to_path_buf(),
        };
        let start = Instant::now();
        while std::os::unix::net::UnixStream::connect(&fpm.socket).is_err() {
            assert!(
                start.elapsed() < super::DEADLINE,
                "PHP-FPM did not listen: {}",
                std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        fpm
    }

    /// `unix:/path/to/fpm.sock`, as a route names it.
    pub fn address(&self) -> String {
        format!("unix:{}", self.socket.display())
    }
}
