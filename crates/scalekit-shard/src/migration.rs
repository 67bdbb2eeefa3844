//! An online migration between two routing tables, step by step, with
//! rollback from any step before clean-up.

use std::error::Error;
use std::fmt;
use std::sync::Arc;

use parking_lot::RwLock;

use crate::error::{PlanError, RouteError};
use crate::plan::{plan, Plan};
use crate::query::{Op, Query};
use crate::router::{Route, Router, Target};

/// A step of a [`Migration`].
///
/// | phase | reads go to | writes go to (`targets`) | and are mirrored to (`mirrors`) |
/// |---|---|---|---|
/// | `Copy` | old | old | - |
/// | `DualWrite` | old | old | new |
/// | `Verify` | old | old | new |
/// | `SwitchReads` | new | old | new |
/// | `SwitchWrites` | new | new | old |
/// | `CleanUp`, `Done` | new | new | - |
/// | `RolledBack` | old | old | - |
///
/// Until clean-up the old place receives every write, so a rollback loses
/// nothing; from `SwitchWrites` on the new place is authoritative.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Phase {
    /// Copying the moving rows to their new place (a snapshot plus a catch-up
    /// of the writes made meanwhile). Everything is still routed the old way.
    Copy,
    /// Writes go to both places, the old one first.
    DualWrite,
    /// Comparing the two copies; reads and writes as in `DualWrite`.
    Verify,
    /// Reads come from the new place; writes still go to both.
    SwitchReads,
    /// Writes go to the new place first and are mirrored to the old one.
    SwitchWrites,
    /// The old copies of moved rows are being deleted: no way back.
    CleanUp,
    /// Finished: the new routing table is the only one.
    Done,
    /// Abandoned: the old routing table is the only one.
    RolledBack,
}

impl Phase {
    /// The step after this one, if any.
    ///
    /// ```
    /// use scalekit_shard::Phase;
    /// assert_eq!(Phase::Verify.next(), Some(Phase::SwitchReads));
    /// assert_eq!(Phase::Done.next(), None);
    /// assert!(Phase::SwitchWrites.can_roll_back());
    /// assert!(!Phase::CleanUp.can_roll_back());
    /// ```
    pub fn next(self) -> Option<Phase> {
        match self {
            Phase::Copy => Some(Phase::DualWrite),
            Phase::DualWrite => Some(Phase::Verify),
            Phase::Verify => Some(Phase::SwitchReads),
            Phase::SwitchReads => Some(Phase::SwitchWrites),
            Phase::SwitchWrites => Some(Phase::CleanUp),
            Phase::CleanUp => Some(Phase::Done),
            Phase::Done | Phase::RolledBack => None,
        }
    }

    /// Whether a rollback is still possible (every step before clean-up).
    pub fn can_roll_back(self) -> bool {
        matches!(
            self,
            Phase::Copy
                | Phase::DualWrite
                | Phase::Verify
                | Phase::SwitchReads
                | Phase::SwitchWrites
        )
    }

    fn reads_new(self) -> bool {
        matches!(
            self,
            Phase::SwitchReads | Phase::SwitchWrites | Phase::CleanUp | Phase::Done
        )
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Phase::Copy => "copy",
            Phase::DualWrite => "dual write",
            Phase::Verify => "verify",
            Phase::SwitchReads => "switch reads",
            Phase::SwitchWrites => "switch writes",
            Phase::CleanUp => "clean up",
            Phase::Done => "done",
            Phase::RolledBack => "rolled back",
        })
    }
}

/// A step a migration refused.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MigrationError {
    /// The step is not possible from the current phase.
    Transition {
        /// The current phase.
        phase: Phase,
        /// What was asked: `"advance"`, `"roll back"`, `"verify"`.
        action: &'static str,
    },
    /// Leaving `Verify` needs a verification with no mismatch.
    NotVerified {
        /// Mismatches found by the last verification (`None`: none reported yet).
        mismatches: Option<u64>,
    },
    /// The two routing tables cannot be compared.
    Plan(PlanError),
}

impl fmt::Display for MigrationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MigrationError::Transition { phase, action } => {
                write!(f, "cannot {action} a migration in phase {phase}")
            }
            MigrationError::NotVerified { mismatches: None } => f.write_str(
                "the copies have not been verified: report a verification before switching reads",
            ),
            MigrationError::NotVerified {
                mismatches: Some(n),
            } => write!(
                f,
                "the last verification found {n} mismatches: repair and verify again, or roll back"
            ),
            MigrationError::Plan(_) => f.write_str("cannot plan the migration"),
        }
    }
}

impl Error for MigrationError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            MigrationError::Plan(e) => Some(e),
            _ => None,
        }
    }
}

impl From<PlanError> for MigrationError {
    fn from(e: PlanError) -> Self {
        MigrationError::Plan(e)
    }
}

type Hook = dyn Fn(Phase, Phase) + Send + Sync;

struct State {
    phase: Phase,
    mismatches: Option<u64>,
}

/// Moves data from one routing table to the next, online: copy, dual write,
/// verify, switch reads, switch writes, clean up; rollback from any step before
/// clean-up. In every phase [`route`](Self::route) says where reads and writes
/// go (see [`Phase`]). Share it (`Arc`) between the request path and the
/// operator driving the steps.
///
/// ```
/// use scalekit_shard::{Engines, Migration, Op, Phase, Query, RouterConfig};
///
/// let build = |epoch: u64, db: &str| RouterConfig::from_toml(&format!(r#"
///     epoch = {epoch}
///     databases = ["old", "new"]
///     [tables.t]
///     database = "{db}"
/// "#)).unwrap().build(&Engines::new()).unwrap();
/// let m = Migration::new(build(1, "old"), build(2, "new"))?;
/// let q = Query::all();
/// m.advance()?; // copy done: dual write
/// let w = m.route("t", &q, Op::Write)?;
/// assert_eq!((&*w.targets[0].database, &*w.mirrors[0].database), ("old", "new"));
/// m.advance()?; // verify
/// m.verified(0)?;
/// m.advance()?; // switch reads
/// assert_eq!(&*m.route("t", &q, Op::Read)?.targets[0].database, "new");
/// m.rollback()?; // changed our mind: everything back on "old"
/// assert_eq!(m.phase(), Phase::RolledBack);
/// assert_eq!(&*m.route("t", &q, Op::Write)?.targets[0].database, "old");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Migration {
    old: Arc<Router>,
    new: Arc<Router>,
    plan: Plan,
    state: RwLock<State>,
    hook: Option<Box<Hook>>,
}

impl fmt::Debug for Migration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Migration")
            .field("from_epoch", &self.plan.from_epoch)
            .field("to_epoch", &self.plan.to_epoch)
            .field("phase", &self.phase())
            .finish_non_exhaustive()
    }
}

impl Migration {
    /// A migration from `old` to `new` (whose epoch must be greater), in phase
    /// [`Phase::Copy`]. Its [`plan`](Self::plan) lists what to copy.
    pub fn new(old: Router, new: Router) -> Result<Self, MigrationError> {
        Self::from_shared(Arc::new(old), Arc::new(new))
    }

    /// [`new`](Self::new) with routers you keep a handle on.
    pub fn from_shared(old: Arc<Router>, new: Arc<Router>) -> Result<Self, MigrationError> {
        let plan = plan(&old, &new)?;
        Ok(Self {
            old,
            new,
            plan,
            state: RwLock::new(State {
                phase: Phase::Copy,
                mismatches: None,
            }),
            hook: None,
        })
    }

    /// Calls `hook(from, to)` on every phase change, after the change and
    /// with the migration's lock released: the hook may read
    /// [`phase`](Self::phase) or [`route`](Self::route) (reach the migration
    /// through an `Arc` it captures). When several threads drive the same
    /// migration, their hooks may run concurrently and [`phase`](Self::phase)
    /// may already be past `to`.
    pub fn on_transition(mut self, hook: impl Fn(Phase, Phase) + Send + Sync + 'static) -> Self {
        self.hook = Some(Box::new(hook));
        self
    }

    /// What moves.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.state.read().phase
    }

    /// The old routing table.
    pub fn old(&self) -> &Arc<Router> {
        &self.old
    }

    /// The new routing table.
    pub fn new_router(&self) -> &Arc<Router> {
        &self.new
    }

    /// Changes the phase under the lock; returns the change for
    /// [`notify`](Self::notify), which runs once the lock is released.
    fn set(state: &mut State, to: Phase) -> (Phase, Phase) {
        let from = state.phase;
        state.phase = to;
        (from, to)
    }

    /// Calls the hook, with the state lock released so that it may call
    /// [`phase`](Self::phase) or [`route`](Self::route).
    fn notify(&self, (from, to): (Phase, Phase)) {
        if let Some(h) = &self.hook {
            h(from, to);
        }
    }

    /// Goes to the next phase. Leaving [`Phase::Verify`] needs a
    /// [`verified`](Self::verified) report with no mismatch.
    pub fn advance(&self) -> Result<Phase, MigrationError> {
        let mut s = self.state.write();
        let Some(next) = s.phase.next() else {
            return Err(MigrationError::Transition {
                phase: s.phase,
                action: "advance",
            });
        };
        if s.phase == Phase::Verify && s.mismatches != Some(0) {
            return Err(MigrationError::NotVerified {
                mismatches: s.mismatches,
            });
        }
        let change = Self::set(&mut s, next);
        drop(s);
        self.notify(change);
        Ok(next)
    }

    /// Reports a verification of the copies (in [`Phase::Verify`]): how many
    /// rows differ. Zero lets the migration advance.
    pub fn verified(&self, mismatches: u64) -> Result<(), MigrationError> {
        let mut s = self.state.write();
        if s.phase != Phase::Verify {
            return Err(MigrationError::Transition {
                phase: s.phase,
                action: "verify",
            });
        }
        s.mismatches = Some(mismatches);
        Ok(())
    }

    /// Abandons the migration: everything routes the old way again. Possible in
    /// every phase before [`Phase::CleanUp`]. The new copies may then be dropped.
    pub fn rollback(&self) -> Result<Phase, MigrationError> {
        let mut s = self.state.write();
        if !s.phase.can_roll_back() {
            return Err(MigrationError::Transition {
                phase: s.phase,
                action: "roll back",
            });
        }
        let change = Self::set(&mut s, Phase::RolledBack);
        drop(s);
        self.notify(change);
        Ok(Phase::RolledBack)
    }

    /// Where a statement goes in the current phase (see [`Phase`]).
    pub fn route(&self, table: &str, query: &Query<'_>, op: Op) -> Result<Route, RouteError> {
        let phase = self.phase();
        self.route_in(phase, table, query, op)
    }

    /// Where a statement goes in `phase`.
    pub fn route_in(
        &self,
        phase: Phase,
        table: &str,
        query: &Query<'_>,
        op: Op,
    ) -> Result<Route, RouteError> {
        let old = || self.old.route(table, query, op);
        let new = || self.new.route(table, query, op);
        match (phase, op) {
            (Phase::Copy | Phase::RolledBack, _) => old(),
            (Phase::CleanUp | Phase::Done, _) => new(),
            (_, Op::Read) if phase.reads_new() => new(),
            (_, Op::Read) => old(),
            (Phase::SwitchWrites, Op::Write) => Ok(with_mirrors(new()?, old()?)),
            (_, Op::Write) => Ok(with_mirrors(old()?, new()?)),
        }
    }
}

fn with_mirrors(mut primary: Route, other: Route) -> Route {
    let mirrors: Vec<Target> = other
        .targets
        .into_iter()
        .filter(|t| !primary.targets.contains(t))
        .collect();
    primary.mirrors = mirrors;
    primary
}
