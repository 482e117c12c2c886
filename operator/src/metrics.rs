//! The operator's own Prometheus metrics: reconciles, their duration, errors by kind, chains by condition.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Metrics of one operator process.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// Reconciles, by outcome (`ok`, `error`).
    pub reconciles: IntCounterVec,
    /// Reconcile duration in seconds.
    pub duration: HistogramVec,
    /// Reconcile errors by kind.
    pub errors: IntCounterVec,
    /// 1 when a chain's condition is True, per chain and condition type.
    pub conditions: IntGaugeVec,
}

impl Metrics {
    /// Creates and registers the metrics.
    pub fn new() -> prometheus::Result<Self> {
        let registry = Registry::new();
        let reconciles = IntCounterVec::new(
            Opts::new(
                "buildvnf_operator_reconciles_total",
                "Reconciles of VNFChains by outcome",
            ),
            &["outcome"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "buildvnf_operator_reconcile_duration_seconds",
                "Duration of one reconcile",
            )
            .buckets(vec![
                0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &[],
        )?;
        let errors = IntCounterVec::new(
            Opts::new(
                "buildvnf_operator_reconcile_errors_total",
                "Reconcile errors by kind",
            ),
            &["kind"],
        )?;
        let conditions = IntGaugeVec::new(
            Opts::new(
                "buildvnf_chain_condition",
                "1 when the condition of a chain is True",
            ),
            &["namespace", "chain", "condition"],
        )?;
        registry.register(Box::new(reconciles.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(errors.clone()))?;
        registry.register(Box::new(conditions.clone()))?;
        Ok(Self {
            registry,
            reconciles,
            duration,
            errors,
            conditions,
        })
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding into a Vec cannot fail for the text format.
        if TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .is_err()
        {
            return String::new();
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}
