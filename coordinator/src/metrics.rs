//! Reconcile metrics: `stoker_reconcile_runs_total`, `stoker_reconcile_failures_total`
//! by error category, `stoker_reconcile_duration_seconds`, all by controller.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, Opts, Registry};

/// The metrics of one controller.
#[derive(Debug, Clone)]
pub struct ControllerMetrics {
    runs: IntCounter,
    failures: IntCounterVec,
    duration: Histogram,
}

impl ControllerMetrics {
    /// Registers the metrics of `controller` in `registry`.
    pub fn new(registry: &Registry, controller: &str) -> Self {
        let constant = |o: Opts| o.const_label("controller", controller);
        let runs = IntCounter::with_opts(constant(Opts::new(
            "stoker_reconcile_runs_total",
            "Reconciles started.",
        )))
        .expect("valid metric");
        let failures = IntCounterVec::new(
            constant(Opts::new(
                "stoker_reconcile_failures_total",
                "Reconciles that failed, by error category.",
            )),
            &["category"],
        )
        .expect("valid metric");
        let duration = Histogram::with_opts(
            HistogramOpts::new(
                "stoker_reconcile_duration_seconds",
                "How long reconciles take.",
            )
            .const_label("controller", controller)
            .buckets(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
        )
        .expect("valid metric");
        registry
            .register(Box::new(runs.clone()))
            .expect("registers once");
        registry
            .register(Box::new(failures.clone()))
            .expect("registers once");
        registry
            .register(Box::new(duration.clone()))
            .expect("registers once");
        Self {
            runs,
            failures,
            duration,
        }
    }

    /// Counts a run; the returned guard records its duration when dropped.
    pub fn reconcile_started(&self) -> prometheus::HistogramTimer {
        self.runs.inc();
        self.duration.start_timer()
    }

    /// Reconciles started so far.
    pub fn runs(&self) -> u64 {
        self.runs.get()
    }

    /// Counts a failure of `category`.
    pub fn reconcile_failed(&self, category: &str) {
        self.failures.with_label_values(&[category]).inc();
    }
}
