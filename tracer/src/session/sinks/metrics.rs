//! `--metrics ADDR`: the Prometheus page, re-rendered after batches.
use anyhow::Result;

use crate::{
    ledger::Ledger,
    live::metrics::Metrics,
    session::sink::{End, Sink, Status},
};

pub struct MetricsSink {
    metrics: Metrics,
}

impl MetricsSink {
    /// Binds `spec` and serves from the current tokio runtime.
    pub fn serve(spec: &str) -> Result<Self> {
        let metrics = Metrics::serve(spec)?;
        eprintln!("tracer: metrics at http://{}/metrics", metrics.addr);
        Ok(Self { metrics })
    }
}

impl Sink for MetricsSink {
    fn batch(&mut self, ledger: &Ledger, status: &Status, now: bool) -> Result<bool> {
        self.metrics.publish(ledger, || status.lost, now);
        Ok(false)
    }

    fn finish(&mut self, ledger: &Ledger, status: &Status, _: &End) {
        self.metrics.publish(ledger, || status.lost, true);
    }
}
