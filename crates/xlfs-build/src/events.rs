//! What the scheduler tells the outside world while it runs: [`Event`]s, consumed by a
//! [`Reporter`] (the terminal display, a log, a test). The scheduler knows nothing of how they
//! are shown.

use crate::package::BuildFailure;
use crate::state::BuildRecord;
use xlfs_plan::Step;

/// One thing that happened during a run.
#[derive(Debug)]
pub enum Event<'a> {
    /// A package's build started.
    Started { step: &'a Step },
    /// A running package entered a phase (unpacking, building, packing…).
    Phase { name: &'a str, phase: &'a str },
    /// A package was built and recorded.
    Finished { record: &'a BuildRecord },
    /// A package failed (or was stopped: [`BuildFailure::interrupted`]).
    Failed { failure: &'a BuildFailure },
    /// The run is over: nothing else follows.
    End,
}

/// Consumes a run's events. Called from the scheduler's thread and, for [`Event::Phase`], from
/// the packages' build threads.
pub trait Reporter: Send + Sync {
    fn event(&self, event: Event<'_>);
}
