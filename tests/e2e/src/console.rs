//! The guest's report on its serial console, parsed.
//!
//! The guest's `/init` (see `tests/e2e/guest/lib.sh`) prints one line per event, each starting with `@@`:
//!
//! ```text
//! @@INIT mode=test kernel=6.1.0-48-amd64 uptime=2.91
//! @@NOTE pci-resources bar0=... irq=11
//! @@STEP pci-resources PASS
//! @@STEP pci-identity FAIL no PCI function 80ee:cafe (present: 0x8086:0x1237 ...)
//! @@BEGIN dmesg pci-identity
//! ...kernel log lines...
//! @@END dmesg pci-identity
//! @@STEP vboxguest-probe SKIP no PCI function 80ee:cafe
//! @@DONE 5 1 1
//! ```
//!
//! Everything else on the console (kernel messages, shell output) is ignored. A marker may follow other
//! text on the same line (a kernel message without its newline), so it is searched for, not only matched at
//! the start. Guest output is untrusted: lines are bounded, malformed markers become warnings, never errors.

use std::fmt;
use std::time::Duration;

/// Lines of a block kept at most; the rest is counted, not stored.
const MAX_BLOCK_LINES: usize = 400;
/// Warnings kept at most.
const MAX_WARNINGS: usize = 100;

/// The outcome of one step, as the guest reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepOutcome {
    /// The step passed.
    Pass,
    /// The step failed, with the guest's reason.
    Fail(String),
    /// The step did not run its check, with the guest's reason.
    Skip(String),
}

impl fmt::Display for StepOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Pass => write!(f, "PASS"),
            Self::Fail(reason) => write!(f, "FAIL {reason}"),
            Self::Skip(reason) => write!(f, "SKIP {reason}"),
        }
    }
}

/// One `@@STEP` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepReport {
    /// The step's name.
    pub name: String,
    /// What happened.
    pub outcome: StepOutcome,
    /// `@@NOTE` lines the step left, in order.
    pub notes: Vec<String>,
    /// When the line arrived, counted from the VM's start.
    pub at: Duration,
}

/// The `@@INIT` line: the guest's `/init` runs.
#[derive(Debug, Clone, PartialEq)]
pub struct InitReport {
    /// `test` or `demo`.
    pub mode: String,
    /// The guest kernel's release.
    pub kernel: String,
    /// The guest's uptime in seconds when `/init` started (guest time, not host time).
    pub guest_uptime: Option<f64>,
    /// When the line arrived, counted from the VM's start.
    pub at: Duration,
}

/// The `@@DONE` line: all requested steps ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DoneReport {
    /// Steps that passed, as counted by the guest.
    pub passed: u32,
    /// Steps that failed.
    pub failed: u32,
    /// Steps that were skipped.
    pub skipped: u32,
    /// When the line arrived, counted from the VM's start.
    pub at: Duration,
}

/// A delimited block of text the guest printed after a failure (`output` of the step, `dmesg` tail).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// What the block holds (`output`, `dmesg`).
    pub kind: String,
    /// The step it belongs to.
    pub step: String,
    /// Its lines (at most [`MAX_BLOCK_LINES`]).
    pub lines: Vec<String>,
    /// Lines beyond the limit that were dropped.
    pub dropped_lines: usize,
    /// Whether the closing `@@END` line arrived.
    pub complete: bool,
}

/// Everything the guest reported.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GuestReport {
    /// The `@@INIT` line, once it arrived.
    pub init: Option<InitReport>,
    /// The `@@STEP` lines in arrival order.
    pub steps: Vec<StepReport>,
    /// The blocks printed after failures.
    pub blocks: Vec<Block>,
    /// The `@@DONE` line, once it arrived.
    pub done: Option<DoneReport>,
    /// The `@@READY` hint of demo mode, once it arrived.
    pub ready: Option<String>,
    /// Marker lines that could not be understood.
    pub warnings: Vec<String>,
    /// When the first line of any kind arrived on the console.
    pub first_output_at: Option<Duration>,
}

impl GuestReport {
    /// The first report of the step `name`.
    pub fn step(&self, name: &str) -> Option<&StepReport> {
        self.steps.iter().find(|step| step.name == name)
    }

    /// The blocks printed for the step `name`.
    pub fn blocks_of<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Block> + 'a {
        self.blocks.iter().filter(move |block| block.step == name)
    }
}

/// What a fed line meant for the run as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsoleEvent {
    /// Nothing that changes how the run goes on.
    Progress,
    /// `@@DONE`: the guest is about to leave.
    Done,
    /// `@@READY`: the demo shell is starting.
    Ready,
}

/// Builds a [`GuestReport`] from console lines fed one by one.
#[derive(Debug, Default)]
pub struct ConsoleParser {
    report: GuestReport,
    pending_notes: Vec<(String, String)>,
    open_block: Option<Block>,
}

impl ConsoleParser {
    /// A parser that has seen nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The report so far.
    pub fn report(&self) -> &GuestReport {
        &self.report
    }

    /// Consumes one console line (without its line ending) that arrived `at` after the VM's start.
    pub fn feed_line(&mut self, line: &str, at: Duration) -> ConsoleEvent {
        self.report.first_output_at.get_or_insert(at);
        let line = line.trim_end_matches(['\r', '\n']);
        // The last marker counts: text before it is a kernel message that got in first, or the prefix of a
        // report line whose write a signal cut short and that the guest then printed again.
        let Some(start) = line.rfind("@@") else {
            self.block_line(line);
            return ConsoleEvent::Progress;
        };
        let marker = &line[start + 2..];
        let (keyword, rest) = marker.split_once(' ').unwrap_or((marker, ""));
        match keyword {
            "INIT" => self.init(rest, at),
            "NOTE" => self.note(rest),
            "STEP" => self.step(rest, at),
            "BEGIN" => self.begin(rest),
            "END" => self.end(rest),
            "DONE" => return self.done(rest, at),
            "READY" => {
                self.report.ready = Some(rest.to_owned());
                return ConsoleEvent::Ready;
            }
            _ if self.open_block.is_some() => self.block_line(line),
            _ => self.warn(line),
        }
        ConsoleEvent::Progress
    }

    /// Ends parsing; a block still open is kept as incomplete.
    pub fn finish(mut self) -> GuestReport {
        if let Some(block) = self.open_block.take() {
            self.report.blocks.push(block);
        }
        self.report
    }

    fn warn(&mut self, line: &str) {
        if self.report.warnings.len() < MAX_WARNINGS {
            self.report.warnings.push(line.to_owned());
        }
    }

    fn block_line(&mut self, line: &str) {
        if let Some(block) = &mut self.open_block {
            if block.lines.len() < MAX_BLOCK_LINES {
                block.lines.push(line.to_owned());
            } else {
                block.dropped_lines += 1;
            }
        }
    }

    fn init(&mut self, rest: &str, at: Duration) {
        let field = |key: &str| {
            rest.split(' ')
                .find_map(|pair| pair.strip_prefix(key)?.strip_prefix('='))
                .map(str::to_owned)
        };
        self.report.init = Some(InitReport {
            mode: field("mode").unwrap_or_default(),
            kernel: field("kernel").unwrap_or_default(),
            guest_uptime: field("uptime").and_then(|v| v.parse().ok()),
            at,
        });
    }

    fn note(&mut self, rest: &str) {
        match rest.split_once(' ') {
            Some((step, text)) if !step.is_empty() => {
                self.pending_notes.push((step.to_owned(), text.to_owned()));
            }
            _ => self.warn(&format!("@@NOTE {rest}")),
        }
    }

    fn step(&mut self, rest: &str, at: Duration) {
        let mut parts = rest.splitn(3, ' ');
        let (Some(name), Some(verdict)) = (parts.next(), parts.next()) else {
            self.warn(&format!("@@STEP {rest}"));
            return;
        };
        let reason = parts.next().unwrap_or("").to_owned();
        let outcome = match verdict {
            "PASS" => StepOutcome::Pass,
            "FAIL" => StepOutcome::Fail(reason),
            "SKIP" => StepOutcome::Skip(reason),
            _ => {
                self.warn(&format!("@@STEP {rest}"));
                return;
            }
        };
        let (notes, others): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending_notes)
            .into_iter()
            .partition(|(step, _)| step == name);
        self.pending_notes = others;
        self.report.steps.push(StepReport {
            name: name.to_owned(),
            outcome,
            notes: notes.into_iter().map(|(_, text)| text).collect(),
            at,
        });
    }

    fn begin(&mut self, rest: &str) {
        if let Some(block) = self.open_block.take() {
            self.report.blocks.push(block);
        }
        let (kind, step) = rest.split_once(' ').unwrap_or((rest, ""));
        self.open_block = Some(Block {
            kind: kind.to_owned(),
            step: step.to_owned(),
            lines: Vec::new(),
            dropped_lines: 0,
            complete: false,
        });
    }

    fn end(&mut self, rest: &str) {
        let (kind, step) = rest.split_once(' ').unwrap_or((rest, ""));
        match self.open_block.take() {
            Some(mut block) if block.kind == kind && block.step == step => {
                block.complete = true;
                self.report.blocks.push(block);
            }
            other => {
                self.open_block = other;
                self.warn(&format!("@@END {rest}"));
            }
        }
    }

    fn done(&mut self, rest: &str, at: Duration) -> ConsoleEvent {
        let counts: Vec<u32> = rest.split(' ').filter_map(|v| v.parse().ok()).collect();
        let [passed, failed, skipped] = counts[..] else {
            self.warn(&format!("@@DONE {rest}"));
            return ConsoleEvent::Progress;
        };
        self.report.done = Some(DoneReport {
            passed,
            failed,
            skipped,
            at,
        });
        ConsoleEvent::Done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(lines: &[&str]) -> GuestReport {
        let mut parser = ConsoleParser::new();
        for (index, line) in lines.iter().enumerate() {
            parser.feed_line(line, Duration::from_secs(index as u64));
        }
        parser.finish()
    }

    #[test]
    fn step_lines_become_outcomes_with_reasons() {
        let report = parse(&[
            "@@STEP init PASS",
            "@@STEP pci-identity FAIL no PCI function 80ee:cafe",
            "@@STEP vboxguest-probe SKIP no PCI function 80ee:cafe",
        ]);
        assert_eq!(report.step("init").unwrap().outcome, StepOutcome::Pass);
        assert_eq!(
            report.step("pci-identity").unwrap().outcome,
            StepOutcome::Fail("no PCI function 80ee:cafe".into())
        );
        assert_eq!(
            report.step("vboxguest-probe").unwrap().outcome,
            StepOutcome::Skip("no PCI function 80ee:cafe".into())
        );
    }

    #[test]
    fn step_records_its_arrival_time() {
        let report = parse(&["kernel noise", "@@STEP init PASS"]);
        assert_eq!(report.step("init").unwrap().at, Duration::from_secs(1));
        assert_eq!(report.first_output_at, Some(Duration::ZERO));
    }

    #[test]
    fn init_line_gives_mode_kernel_and_guest_uptime() {
        let report = parse(&["@@INIT mode=test kernel=6.1.0-48-amd64 uptime=2.91"]);
        let init = report.init.unwrap();
        assert_eq!(init.mode, "test");
        assert_eq!(init.kernel, "6.1.0-48-amd64");
        assert_eq!(init.guest_uptime, Some(2.91));
    }

    #[test]
    fn done_line_is_reported_as_an_event_with_counts() {
        let mut parser = ConsoleParser::new();
        assert_eq!(
            parser.feed_line("@@DONE 5 1 2", Duration::from_secs(9)),
            ConsoleEvent::Done
        );
        let done = parser.finish().done.unwrap();
        assert_eq!((done.passed, done.failed, done.skipped), (5, 1, 2));
    }

    #[test]
    fn malformed_done_line_is_a_warning_not_done() {
        let mut parser = ConsoleParser::new();
        assert_eq!(
            parser.feed_line("@@DONE five", Duration::ZERO),
            ConsoleEvent::Progress
        );
        let report = parser.finish();
        assert!(report.done.is_none());
        assert_eq!(report.warnings, ["@@DONE five"]);
    }

    #[test]
    fn notes_attach_to_the_step_that_follows() {
        let report = parse(&[
            "@@NOTE hgcm-null-calls 1000 calls in 812 us",
            "@@STEP hgcm-null-calls PASS",
        ]);
        assert_eq!(
            report.step("hgcm-null-calls").unwrap().notes,
            ["1000 calls in 812 us"]
        );
    }

    #[test]
    fn block_collects_lines_until_its_end() {
        let report = parse(&[
            "@@STEP x FAIL broken",
            "@@BEGIN dmesg x",
            "[    1.0] line one",
            "[    1.1] line two",
            "@@END dmesg x",
            "after the block",
        ]);
        let block = report.blocks_of("x").next().unwrap();
        assert_eq!(block.kind, "dmesg");
        assert_eq!(block.lines, ["[    1.0] line one", "[    1.1] line two"]);
        assert!(block.complete);
    }

    #[test]
    fn unterminated_block_is_kept_as_incomplete() {
        let report = parse(&["@@BEGIN output x", "partial"]);
        assert_eq!(report.blocks.len(), 1);
        assert!(!report.blocks[0].complete);
    }

    #[test]
    fn block_stops_storing_lines_at_its_limit() {
        let mut parser = ConsoleParser::new();
        parser.feed_line("@@BEGIN dmesg x", Duration::ZERO);
        for _ in 0..MAX_BLOCK_LINES + 5 {
            parser.feed_line("noise", Duration::ZERO);
        }
        let report = parser.finish();
        assert_eq!(report.blocks[0].lines.len(), MAX_BLOCK_LINES);
        assert_eq!(report.blocks[0].dropped_lines, 5);
    }

    #[test]
    fn marker_after_other_text_on_the_same_line_is_found() {
        let report = parse(&["[    3.2] random: crng init done@@STEP init PASS\r"]);
        assert_eq!(report.step("init").unwrap().outcome, StepOutcome::Pass);
    }

    #[test]
    fn report_line_printed_again_after_an_interrupted_prefix_is_read_whole() {
        let report = parse(&["@@STEP pci-res@@STEP pci-resources SKIP no PCI function 80ee:cafe"]);
        let step = report.step("pci-resources").unwrap();
        assert_eq!(
            step.outcome,
            StepOutcome::Skip("no PCI function 80ee:cafe".into())
        );
        assert!(report.step("pci-res@@STEP").is_none());
        assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    }

    #[test]
    fn unknown_verdict_is_a_warning() {
        let report = parse(&["@@STEP init MAYBE"]);
        assert!(report.steps.is_empty());
        assert_eq!(report.warnings, ["@@STEP init MAYBE"]);
    }

    #[test]
    fn ready_line_is_reported_as_an_event() {
        let mut parser = ConsoleParser::new();
        assert_eq!(
            parser.feed_line("@@READY demo shell", Duration::ZERO),
            ConsoleEvent::Ready
        );
        assert_eq!(parser.finish().ready.as_deref(), Some("demo shell"));
    }
}
