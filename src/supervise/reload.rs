//! Reloads: the configuration read again and applied in place where it can be, else by an
//! upgrade to the same binary.

use anyhow::Context;
use tracing::info;

use super::{Supervisor, lock};
use crate::{Config, Loaded, health, load};

impl Supervisor {
    /// Reads the configuration file again. What can change in place does; a change that needs
    /// new sockets is made by an upgrade to the same binary. A file that does not load changes
    /// nothing.
    pub(crate) async fn reload(&self) -> anyhow::Result<String> {
        let _busy = self
            .inner
            .busy
            .try_lock()
            .map_err(|_| anyhow::anyhow!("an upgrade or reload is already in progress"))?;
        let config = crate::config(self.inner.launch.config_path.as_deref())?;
        let current = lock(&self.inner.config).clone();
        if needs_new_sockets(&current, &config) {
            info!("reload: listen addresses or state_dir changed; a new process takes over");
            return self
                .upgrade_now(None)
                .await
                .map(|pid| format!("reloaded by a new process, pid {pid}"));
        }
        if config != current {
            // Everything is loaded anew (zones, certificate, database, site) and only then put
            // in place of what serves: a part that fails to load changes nothing.
            let file = self
                .inner
                .launch
                .config_path
                .as_deref()
                .map_or_else(String::new, |path| format!("{}: ", path.display()));
            let Loaded {
                dns,
                edge,
                app,
                store,
            } = load(&config, &self.inner.draining)
                .await
                .map_err(|e| anyhow::anyhow!("{file}{e:#}"))?;
            self.inner
                .edge
                .adopt(&edge, &app)
                .map_err(|e| anyhow::anyhow!("{file}{e:#}"))?;
            self.inner.dns.adopt(dns);
            {
                // The health checks start over with the new settings.
                let mut checks = lock(&self.inner.checks);
                checks.stop.cancel();
                checks.stop = self.inner.shutdown.child_token();
                let (stop, port) = (checks.stop.clone(), checks.port);
                health::spawn(
                    &config.dns.health,
                    port,
                    &self.inner.dns,
                    &self.inner.health,
                    &stop,
                );
                crate::dnssec::spawn(&config, &self.inner.dns, &store, &stop);
            }
            let before = lock(&self.inner.config).clone();
            if before.acme != config.acme || before.app != config.app {
                // Another CA or account, or another database to share through: the client
                // starts over with them.
                let mut stop = lock(&self.inner.acme);
                stop.cancel();
                *stop = self.inner.shutdown.child_token();
                if let Some(acme) = &config.acme {
                    crate::acme::spawn(
                        acme,
                        &config.state_dir,
                        (&self.inner.dns, &self.inner.edge, &store),
                        &self.inner.acme_status,
                        &stop,
                    );
                }
            }
            *lock(&self.inner.config) = config;
            info!("reload: the new configuration serves");
            return Ok("reloaded in place".to_string());
        }
        let report = self.inner.dns.reload().await;
        info!(
            loaded = report.loaded,
            removed = report.removed,
            failed = report.failed,
            "zones reloaded"
        );
        self.inner
            .edge
            .reload_certificate()
            .context("certificate")?;
        info!("certificate reloaded");
        Ok("reloaded in place".to_string())
    }
}

/// Whether going from `current` to `new` takes sockets that this process does not have.
fn needs_new_sockets(current: &Config, new: &Config) -> bool {
    current.state_dir != new.state_dir
        || current.dns.listen != new.dns.listen
        || current.dns.tls_listen != new.dns.tls_listen
        || current.dns.quic_listen != new.dns.quic_listen
        // XDP sockets and the program are attached once per process, as sockets are bound.
        || current.dns.xdp != new.dns.xdp
        || current.edge.http != new.edge.http
        || current.edge.https != new.edge.https
        || current.admin.listen != new.admin.listen
        // The log's format is set once per process.
        || current.log.format != new.log.format
}
