//! The sandbox's fault switches (`scripts/sandbox.sh cut`, `rekey`, `sshd-stop`, ...), with
//! guards that always undo them, also when the test fails.

use crate::locks::{Lock, FAULTS};
use crate::sandbox::Sandbox;

/// Undoes one fault switch when dropped (or on [`FaultUndo::undo`]).
pub struct FaultUndo<'a> {
    sb: &'a Sandbox,
    undo: Option<(&'static str, String)>,
}

impl<'a> FaultUndo<'a> {
    /// Applies `verb host` now; `undo host` runs when the guard drops.
    pub fn apply(sb: &'a Sandbox, verb: &str, undo: &'static str, host: &str) -> FaultUndo<'a> {
        let guard = FaultUndo {
            sb,
            undo: Some((undo, host.to_string())),
        };
        sb.switch(verb, host);
        guard
    }

    /// Undoes the fault now.
    pub fn undo(mut self) {
        self.undo_now();
    }

    fn undo_now(&mut self) {
        if let Some((verb, host)) = self.undo.take() {
            self.sb.switch(verb, &host);
        }
    }
}

impl Drop for FaultUndo<'_> {
    fn drop(&mut self) {
        self.undo_now();
    }
}

/// Holds [`FAULTS`] exclusively (two tests cutting and restoring the same host would confuse
/// each other) and undoes every fault applied through it, latest first, when dropped.
pub struct FaultGuard<'a> {
    sandbox: &'a Sandbox,
    applied: Vec<FaultUndo<'a>>,
    _lock: Lock,
}

impl<'a> FaultGuard<'a> {
    pub fn new(sandbox: &'a Sandbox) -> FaultGuard<'a> {
        FaultGuard {
            sandbox,
            applied: vec![],
            _lock: Lock::exclusive(FAULTS),
        }
    }

    /// Applies `verb host` now and `undo host` when the guard drops.
    pub fn apply(&mut self, verb: &str, undo: &'static str, host: &str) {
        self.applied
            .push(FaultUndo::apply(self.sandbox, verb, undo, host));
    }
}

impl Drop for FaultGuard<'_> {
    fn drop(&mut self) {
        while let Some(fault) = self.applied.pop() {
            drop(fault);
        }
    }
}
