//! What a test expects of a run, the comparison with what happened, and the report a developer needs when
//! they differ.
//!
//! A test lists every step it runs with its expected outcome; the same list gives the guest's
//! `vmmdev.steps=` parameter ([`Expectations::step_names`]). A step that does not report is a failure, as
//! is one that reports although nobody asked, one that reports twice, a run without `@@INIT` or `@@DONE`, a
//! VM that did not exit cleanly, and a device server that died during the run.

use std::fmt;
use std::path::Path;

use crate::console::StepOutcome;
use crate::runner::{BootRun, RunEnd};

/// Lines of each log shown in a failure report.
const LOG_TAIL_LINES: usize = 40;

/// The outcome a test expects of a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expected {
    /// The step passes.
    Pass,
    /// The step fails with a reason containing this text.
    Fail(String),
    /// The step is skipped with a reason containing this text.
    Skip(String),
}

impl Expected {
    fn matches(&self, outcome: &StepOutcome) -> bool {
        match (self, outcome) {
            (Self::Pass, StepOutcome::Pass) => true,
            (Self::Fail(text), StepOutcome::Fail(reason)) => reason.contains(text.as_str()),
            (Self::Skip(text), StepOutcome::Skip(reason)) => reason.contains(text.as_str()),
            _ => false,
        }
    }
}

impl fmt::Display for Expected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Pass => write!(f, "PASS"),
            Self::Fail(text) => write!(f, "FAIL containing {text:?}"),
            Self::Skip(text) => write!(f, "SKIP containing {text:?}"),
        }
    }
}

/// The steps a test runs, in order, with their expected outcomes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expectations {
    steps: Vec<(String, Expected)>,
}

impl Expectations {
    /// No steps yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds steps that must pass.
    pub fn pass(mut self, names: &[&str]) -> Self {
        for name in names {
            self.steps.push(((*name).to_owned(), Expected::Pass));
        }
        self
    }

    /// Adds a step that must fail with a reason containing `reason`.
    pub fn fail(mut self, name: &str, reason: &str) -> Self {
        self.steps
            .push((name.to_owned(), Expected::Fail(reason.to_owned())));
        self
    }

    /// Adds steps that must be skipped with a reason containing `reason`.
    pub fn skip(mut self, names: &[&str], reason: &str) -> Self {
        for name in names {
            self.steps
                .push(((*name).to_owned(), Expected::Skip(reason.to_owned())));
        }
        self
    }

    /// The step names in order, for the guest's `vmmdev.steps=` parameter.
    pub fn step_names(&self) -> Vec<&str> {
        self.steps.iter().map(|(name, _)| name.as_str()).collect()
    }
}

/// One way a run differed from the expectations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// `/init` never reported.
    NoInit,
    /// An expected step never reported.
    Missing(String),
    /// A step reported something else than expected.
    Unexpected {
        /// The step.
        step: String,
        /// What the test expected.
        expected: Expected,
        /// What the guest reported.
        got: StepOutcome,
    },
    /// A step reported although the test did not ask for it.
    Extra(String),
    /// A step reported more than once.
    Repeated(String),
    /// The guest never reported `@@DONE`.
    NotDone,
    /// The guest's own counts disagree with the step lines received (a line was lost or garbled).
    CountsDisagree {
        /// Passed/failed/skipped according to `@@DONE`.
        guest: (u32, u32, u32),
        /// The same counted from the step lines.
        lines: (u32, u32, u32),
    },
    /// The VM did not end cleanly.
    BadEnd(RunEnd),
    /// A helper (the device server) ended during the run.
    HelperDied(String),
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoInit => write!(f, "the guest's /init never reported (@@INIT missing)"),
            Self::Missing(step) => write!(f, "step {step}: no report"),
            Self::Unexpected {
                step,
                expected,
                got,
            } => {
                write!(f, "step {step}: expected {expected}, got {got}")
            }
            Self::Extra(step) => write!(f, "step {step}: reported but not expected"),
            Self::Repeated(step) => write!(f, "step {step}: reported more than once"),
            Self::NotDone => write!(f, "the guest never reported @@DONE"),
            Self::CountsDisagree { guest, lines } => write!(
                f,
                "the guest counted {guest:?} passed/failed/skipped, the step lines say {lines:?}"
            ),
            Self::BadEnd(RunEnd::Exited(status)) => write!(f, "the VM exited with {status}"),
            Self::BadEnd(RunEnd::TimedOut(limit)) => {
                write!(f, "timed out after {limit:?}; everything was killed")
            }
            Self::BadEnd(RunEnd::NoExitAfterDone(grace)) => {
                write!(
                    f,
                    "the VM did not exit within {grace:?} after @@DONE; it was killed"
                )
            }
            Self::HelperDied(what) => write!(f, "{what}"),
        }
    }
}

/// A run that did not meet its expectations: the problems and everything needed to debug them.
#[derive(Debug, Clone)]
pub struct Mismatch {
    /// What differed.
    pub problems: Vec<Problem>,
    /// The full report (failing steps, their blocks, timings, log tails).
    pub diagnostics: String,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.diagnostics)
    }
}

impl std::error::Error for Mismatch {}

impl BootRun {
    /// Everything that differs from `expectations`; empty when the run is as expected.
    pub fn problems(&self, expectations: &Expectations) -> Vec<Problem> {
        let report = &self.report;
        let mut problems = Vec::new();
        if report.init.is_none() {
            problems.push(Problem::NoInit);
        }
        for (name, expected) in &expectations.steps {
            let mut reports = report.steps.iter().filter(|step| &step.name == name);
            match (reports.next(), reports.next()) {
                (None, _) => problems.push(Problem::Missing(name.clone())),
                (Some(_), Some(_)) => problems.push(Problem::Repeated(name.clone())),
                (Some(step), None) if !expected.matches(&step.outcome) => {
                    problems.push(Problem::Unexpected {
                        step: name.clone(),
                        expected: expected.clone(),
                        got: step.outcome.clone(),
                    })
                }
                (Some(_), None) => {}
            }
        }
        for step in &report.steps {
            if !expectations
                .steps
                .iter()
                .any(|(name, _)| name == &step.name)
            {
                problems.push(Problem::Extra(step.name.clone()));
            }
        }
        match report.done {
            None => problems.push(Problem::NotDone),
            Some(done) => {
                let count = |wanted: fn(&StepOutcome) -> bool| {
                    let n = report
                        .steps
                        .iter()
                        .filter(|step| wanted(&step.outcome))
                        .count();
                    u32::try_from(n).unwrap_or(u32::MAX)
                };
                let lines = (
                    count(|o| matches!(o, StepOutcome::Pass)),
                    count(|o| matches!(o, StepOutcome::Fail(_))),
                    count(|o| matches!(o, StepOutcome::Skip(_))),
                );
                let guest = (done.passed, done.failed, done.skipped);
                if guest != lines {
                    problems.push(Problem::CountsDisagree { guest, lines });
                }
            }
        }
        match self.end {
            RunEnd::Exited(status) if status.success() => {}
            end => problems.push(Problem::BadEnd(end)),
        }
        for exit in &self.helper_exits {
            problems.push(Problem::HelperDied(format!(
                "{} exited ({}) {:.2} s into the run, while the VM was running",
                exit.name,
                exit.status,
                exit.at.as_secs_f64()
            )));
        }
        problems
    }

    /// `Ok` when the run met `expectations`, else the problems with a full diagnostic report.
    pub fn verify(&self, expectations: &Expectations) -> Result<(), Mismatch> {
        let problems = self.problems(expectations);
        if problems.is_empty() {
            return Ok(());
        }
        let diagnostics = self.diagnostics(&problems);
        Err(Mismatch {
            problems,
            diagnostics,
        })
    }

    /// One line: backend, end, step counts and timings.
    pub fn summary(&self) -> String {
        let done = self.report.done.map_or("no @@DONE".to_owned(), |d| {
            format!(
                "{} passed, {} failed, {} skipped",
                d.passed, d.failed, d.skipped
            )
        });
        format!("{}: {done}; {:?}; {}", self.backend, self.end, self.timings)
    }

    fn diagnostics(&self, problems: &[Problem]) -> String {
        let mut text = format!(
            "=== end-to-end run via {} did not go as expected ({} problems) ===\n",
            self.backend,
            problems.len()
        );
        for problem in problems {
            text.push_str(&format!("  - {problem}\n"));
        }
        text.push_str(&format!("timings: {}\n", self.timings));
        text.push_str(&format!("run files: {}\n", self.dir.path().display()));
        let failing = self.report.steps.iter().filter(|step| {
            problems
                .iter()
                .any(|p| matches!(p, Problem::Unexpected { step: s, .. } if *s == step.name))
        });
        for step in failing {
            text.push_str(&format!("\n--- step {}: {} ---\n", step.name, step.outcome));
            for note in &step.notes {
                text.push_str(&format!("note: {note}\n"));
            }
            for block in self.report.blocks_of(&step.name) {
                text.push_str(&format!("--- {} of {} ---\n", block.kind, step.name));
                for line in &block.lines {
                    text.push_str(line);
                    text.push('\n');
                }
                if block.dropped_lines > 0 {
                    text.push_str(&format!("[{} more lines dropped]\n", block.dropped_lines));
                }
            }
        }
        if !self.report.warnings.is_empty() {
            text.push_str("\n--- malformed report lines ---\n");
            for warning in &self.report.warnings {
                text.push_str(warning);
                text.push('\n');
            }
        }
        for (title, path) in [
            ("serial console", self.dir.serial_log()),
            ("VM stderr", self.dir.vm_stderr_log()),
            ("device server log", self.dir.server_log()),
        ] {
            if let Some(tail) = log_tail(&path) {
                text.push_str(&format!(
                    "\n--- last lines of the {title} ({}) ---\n{tail}",
                    path.display()
                ));
            }
        }
        text
    }
}

/// The last [`LOG_TAIL_LINES`] lines of a log file, or `None` if it is missing or empty.
fn log_tail(path: &Path) -> Option<String> {
    let bytes = std::fs::read(path).ok()?;
    if bytes.is_empty() {
        return None;
    }
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(LOG_TAIL_LINES);
    let mut tail = lines.get(start..).unwrap_or_default().join("\n");
    tail.push('\n');
    Some(tail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::RunDir;
    use crate::console::ConsoleParser;
    use crate::runner::BootTimings;
    use std::os::unix::process::ExitStatusExt;
    use std::process::ExitStatus;
    use std::time::Duration;

    fn run(lines: &[&str], end: RunEnd) -> BootRun {
        let mut parser = ConsoleParser::new();
        for line in lines {
            parser.feed_line(line, Duration::ZERO);
        }
        BootRun {
            backend: "test".into(),
            report: parser.finish(),
            end,
            timings: BootTimings {
                first_output: None,
                init: None,
                first_step: None,
                done: None,
                total: Duration::ZERO,
                guest_uptime_at_init: None,
            },
            helper_exits: Vec::new(),
            dir: RunDir::new(Path::new("/nonexistent/vmmdev-e2e-run")),
            vm_pid: 0,
        }
    }

    fn clean_exit() -> RunEnd {
        RunEnd::Exited(ExitStatus::from_raw(0))
    }

    fn expectations() -> Expectations {
        Expectations::new()
            .pass(&["init"])
            .fail("pci-identity", "no PCI function")
            .skip(&["vboxguest-probe"], "no PCI function")
    }

    const AS_EXPECTED: [&str; 5] = [
        "@@INIT mode=test kernel=k uptime=1.0",
        "@@STEP init PASS",
        "@@STEP pci-identity FAIL no PCI function 80ee:cafe",
        "@@STEP vboxguest-probe SKIP no PCI function 80ee:cafe",
        "@@DONE 1 1 1",
    ];

    #[test]
    fn run_as_expected_has_no_problems() {
        assert_eq!(
            run(&AS_EXPECTED, clean_exit()).problems(&expectations()),
            []
        );
    }

    #[test]
    fn expected_failure_that_passed_is_a_problem() {
        let mut lines = AS_EXPECTED;
        lines[2] = "@@STEP pci-identity PASS";
        lines[4] = "@@DONE 2 0 1";
        let problems = run(&lines, clean_exit()).problems(&expectations());
        assert!(
            matches!(&problems[..], [Problem::Unexpected { step, .. }] if step == "pci-identity")
        );
    }

    #[test]
    fn failure_with_another_reason_is_a_problem() {
        let mut lines = AS_EXPECTED;
        lines[2] = "@@STEP pci-identity FAIL timed out after 60 s";
        let problems = run(&lines, clean_exit()).problems(&expectations());
        assert_eq!(problems.len(), 1);
    }

    #[test]
    fn missing_step_and_missing_done_are_problems() {
        let problems = run(&AS_EXPECTED[..3], clean_exit()).problems(&expectations());
        assert_eq!(
            problems,
            [Problem::Missing("vboxguest-probe".into()), Problem::NotDone]
        );
    }

    #[test]
    fn step_nobody_asked_for_is_a_problem() {
        let mut lines = AS_EXPECTED.to_vec();
        lines.insert(4, "@@STEP surprise PASS");
        lines[5] = "@@DONE 2 1 1";
        let problems = run(&lines, clean_exit()).problems(&expectations());
        assert_eq!(problems, [Problem::Extra("surprise".into())]);
    }

    #[test]
    fn step_reported_twice_is_a_problem() {
        let mut lines = AS_EXPECTED.to_vec();
        lines.insert(2, "@@STEP init PASS");
        lines[5] = "@@DONE 2 1 1";
        let problems = run(&lines, clean_exit()).problems(&expectations());
        assert_eq!(problems, [Problem::Repeated("init".into())]);
    }

    #[test]
    fn guest_counts_that_disagree_with_the_lines_are_a_problem() {
        let mut lines = AS_EXPECTED;
        lines[4] = "@@DONE 2 1 1";
        let problems = run(&lines, clean_exit()).problems(&expectations());
        assert!(matches!(&problems[..], [Problem::CountsDisagree { .. }]));
    }

    #[test]
    fn timeout_is_a_problem_even_when_all_steps_reported() {
        let problems =
            run(&AS_EXPECTED, RunEnd::TimedOut(Duration::from_secs(1))).problems(&expectations());
        assert_eq!(
            problems,
            [Problem::BadEnd(RunEnd::TimedOut(Duration::from_secs(1)))]
        );
    }

    #[test]
    fn vm_exit_with_failure_status_is_a_problem() {
        let end = RunEnd::Exited(ExitStatus::from_raw(1 << 8));
        assert_eq!(
            run(&AS_EXPECTED, end).problems(&expectations()),
            [Problem::BadEnd(end)]
        );
    }

    #[test]
    fn missing_init_is_a_problem() {
        let problems = run(&AS_EXPECTED[1..], clean_exit()).problems(&expectations());
        assert_eq!(problems, [Problem::NoInit]);
    }

    #[test]
    fn diagnostics_show_the_failing_step_and_its_dmesg_block() {
        let lines = [
            "@@INIT mode=test kernel=k uptime=1.0",
            "@@STEP init FAIL PID 1 is 'sh', not init",
            "@@BEGIN dmesg init",
            "[    0.1] the kernel line that explains it",
            "@@END dmesg init",
            "@@DONE 0 1 0",
        ];
        let mismatch = run(&lines, clean_exit())
            .verify(&Expectations::new().pass(&["init"]))
            .unwrap_err();
        assert!(
            mismatch
                .diagnostics
                .contains("step init: expected PASS, got FAIL PID 1 is 'sh', not init")
        );
        assert!(
            mismatch
                .diagnostics
                .contains("--- dmesg of init ---\n[    0.1] the kernel line that explains it\n")
        );
    }

    #[test]
    fn step_names_follow_the_order_of_the_expectations() {
        assert_eq!(
            expectations().step_names(),
            ["init", "pci-identity", "vboxguest-probe"]
        );
    }
}
