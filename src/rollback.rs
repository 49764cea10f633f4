//! Undo for ADD: after each side effect, push the step that reverses it; `commit()` when the
//! whole ADD succeeded. If the guard is dropped uncommitted (any `?` on the way), the steps run
//! in reverse order, so a failed ADD leaves nothing behind. Failures while undoing are logged
//! to stderr and do not hide the original error.

/// One undo step.
type Step<'a> = Box<dyn FnOnce() -> anyhow::Result<()> + 'a>;

/// Reverses an ADD's side effects unless committed.
#[derive(Default)]
pub struct Rollback<'a> {
    steps: Vec<(String, Step<'a>)>,
}

impl<'a> Rollback<'a> {
    /// An empty guard.
    pub fn new() -> Self {
        Rollback { steps: Vec::new() }
    }

    /// Records how to undo the step just taken; `what` names it in logs.
    pub fn push(
        &mut self,
        what: impl Into<String>,
        undo: impl FnOnce() -> anyhow::Result<()> + 'a,
    ) {
        crate::fault::step();
        self.steps.push((what.into(), Box::new(undo)));
    }

    /// The ADD succeeded: forget the undo steps.
    pub fn commit(mut self) {
        self.steps.clear();
    }
}

impl Drop for Rollback<'_> {
    fn drop(&mut self) {
        while let Some((what, undo)) = self.steps.pop() {
            if let Err(e) = undo() {
                eprintln!("rollback: undoing {what} failed: {e:#}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    #[test]
    fn drop_undoes_in_reverse_and_commit_forgets() {
        let log = RefCell::new(Vec::new());
        {
            let mut rb = Rollback::new();
            rb.push("a", || {
                log.borrow_mut().push("a");
                Ok(())
            });
            rb.push("b", || anyhow::bail!("b failed"));
            rb.push("c", || {
                log.borrow_mut().push("c");
                Ok(())
            });
        }
        assert_eq!(
            *log.borrow(),
            vec!["c", "a"],
            "every step runs, even after one fails"
        );
        let mut rb = Rollback::new();
        rb.push("x", || {
            log.borrow_mut().push("x");
            Ok(())
        });
        rb.commit();
        assert_eq!(log.borrow().len(), 2);
    }
}
