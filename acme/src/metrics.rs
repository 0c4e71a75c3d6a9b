//! `foobar_acme_*`: each ACME certificate's expiry, planned renewal, issuer and orders, read
//! from the manager's status at scrape time.

use std::sync::Arc;

use foobar_metrics::{Collector, DescriptorEncoder, Unit, counters, gauges};

use crate::Status;

/// The collector of the ACME client's status.
#[derive(Debug)]
pub struct AcmeCollector(pub Arc<Status>);

impl Collector for AcmeCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let all = self.0.certificates();
        let names = |c: &crate::CertificateStatus| c.names.join(",");
        gauges(
            &mut encoder,
            "foobar_acme_certificate_expiry_timestamp",
            "When each ACME certificate served expires (Unix time); absent until one is issued.",
            Some(&Unit::Seconds),
            all.iter()
                .filter_map(|c| Some(([("names", names(c))], c.not_after? as i64))),
        )?;
        gauges(
            &mut encoder,
            "foobar_acme_certificate_renewal_timestamp",
            "When each ACME certificate is due for renewal (Unix time): the CA's renewal \
             information, else two thirds of its lifetime.",
            Some(&Unit::Seconds),
            all.iter()
                .filter_map(|c| Some(([("names", names(c))], c.renew_at? as i64))),
        )?;
        gauges(
            &mut encoder,
            "foobar_acme_certificate_info",
            "The issuer of each ACME certificate served (always 1).",
            None,
            all.iter()
                .filter_map(|c| Some(([("names", names(c)), ("issuer", c.issuer.clone()?)], 1i64))),
        )?;
        gauges(
            &mut encoder,
            "foobar_acme_last_order_success",
            "Whether the last order of each certificate succeeded (1) or failed (0); absent \
             before the first.",
            None,
            all.iter().filter_map(|c| {
                let ok = c.last_result.as_deref()? == "ok";
                Some(([("names", names(c))], i64::from(ok)))
            }),
        )?;
        counters(
            &mut encoder,
            "foobar_acme_orders",
            "Orders of each certificate by this node, by result.",
            all.iter().flat_map(|c| {
                [
                    (
                        [("names", names(c)), ("result", "ok".to_string())],
                        c.issued,
                    ),
                    (
                        [("names", names(c)), ("result", "failed".to_string())],
                        c.orders.saturating_sub(c.issued),
                    ),
                ]
            }),
        )
    }
}
