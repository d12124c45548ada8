//! `tracer top`: a live view of device memory per chip and per process, redrawn while the
//! session runs (a full-screen table), or printed as plain snapshots with `--batch`.
use std::{
    fmt::Write as _,
    io::Stdout,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use anyhow::{Context, Result};
use ratatui::{
    backend::{Backend, CrosstermBackend},
    crossterm::{
        event::{self, Event, KeyCode, KeyModifiers},
        execute,
        terminal::{disable_raw_mode, enable_raw_mode, EnterAlternateScreen, LeaveAlternateScreen},
    },
    layout::{Constraint, Layout},
    style::{Modifier, Style},
    text::Line,
    widgets::{Block, Borders, Paragraph, Row, Table},
    Terminal,
};

use crate::{
    ledger::{Amounts, BufferType, Ledger},
    report::human_bytes,
};

/// The buffer types shown as columns (SYSTEM_MEMORY is host memory, not on a chip).
const TYPES: [BufferType; 4] = [
    BufferType::Dram,
    BufferType::L1,
    BufferType::L1Small,
    BufferType::Trace,
];

/// What the header line says about the session.
#[derive(Clone, Debug, Default)]
pub struct Status {
    pub elapsed: Duration,
    pub events: u64,
    pub lost: u64,
    /// Processes with a ledger so far.
    pub processes: usize,
}

/// One chip, summed over the processes that hold memory on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChipRow {
    pub chip: i32,
    pub processes: usize,
    pub buffers: u64,
    pub reserved: Amounts,
    pub peak: Amounts,
    /// L1 the programs' circular buffers hold (summed over cores).
    pub circular_buffers: u64,
}

/// One process on one chip.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessRow {
    pub pid: u32,
    pub command: String,
    pub exited: bool,
    pub chip: i32,
    pub buffers: u64,
    pub reserved: Amounts,
    pub circular_buffers: u64,
}

pub fn chip_rows(ledger: &Ledger) -> Vec<ChipRow> {
    let mut rows: std::collections::BTreeMap<i32, ChipRow> = Default::default();
    for p in ledger.processes.values() {
        for (chip, d) in &p.devices {
            let r = rows.entry(*chip).or_insert(ChipRow {
                chip: *chip,
                processes: 0,
                buffers: 0,
                reserved: Amounts::default(),
                peak: Amounts::default(),
                circular_buffers: 0,
            });
            r.circular_buffers += d.circular_buffers.live_bytes;
            if d.live_buffers > 0 {
                r.processes += 1;
            }
            r.buffers += d.live_buffers;
            for t in BufferType::ALL {
                r.reserved.0[t.index()] += d.reserved.get(t);
                // Peaks of different processes need not coincide: the sum bounds the chip's.
                r.peak.0[t.index()] += d.peak_reserved.get(t);
            }
        }
    }
    rows.into_values().collect()
}

/// Processes by reserved bytes held (largest first), then pid and chip.
pub fn process_rows(ledger: &Ledger) -> Vec<ProcessRow> {
    let mut rows: Vec<ProcessRow> = ledger
        .processes
        .values()
        .flat_map(|p| {
            p.devices.iter().map(|(chip, d)| ProcessRow {
                pid: p.pid,
                command: p.command.clone(),
                exited: p.exited,
                chip: *chip,
                buffers: d.live_buffers,
                reserved: d.reserved,
                circular_buffers: d.circular_buffers.live_bytes,
            })
        })
        .collect();
    rows.sort_by_key(|r| {
        (
            std::cmp::Reverse(r.reserved.0.iter().sum::<u64>() + r.circular_buffers),
            r.pid,
            r.chip,
        )
    });
    rows
}

/// Live buffers of one process from one allocation site (its Python line).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SiteRow {
    pub pid: u32,
    /// `model.py:42 in forward (ttnn.matmul)`, or `unknown site` (no stack read).
    pub site: String,
    pub buffers: u64,
    /// Reserved bytes summed over the chips the buffers are on.
    pub reserved: u64,
}

/// Sites that hold the most reserved bytes now (largest first, at most `n`).
pub fn site_rows(ledger: &Ledger, n: usize) -> Vec<SiteRow> {
    let mut by: std::collections::BTreeMap<(u32, String), (u64, u64)> = Default::default();
    for p in ledger.processes.values() {
        for h in p.live() {
            let site = h
                .site
                .as_deref()
                .map_or_else(|| "unknown site".to_string(), |s| s.describe());
            let e = by.entry((p.pid, site)).or_default();
            e.0 += 1;
            e.1 += h.reserved * h.device.chips.len().max(1) as u64;
        }
    }
    let mut rows: Vec<SiteRow> = by
        .into_iter()
        .map(|((pid, site), (buffers, reserved))| SiteRow {
            pid,
            site,
            buffers,
            reserved,
        })
        .collect();
    rows.sort_by_key(|r| (std::cmp::Reverse(r.reserved), r.pid, r.site.clone()));
    rows.truncate(n);
    rows
}

/// Site rows shown.
const SITES: usize = 8;

fn header(status: &Status) -> String {
    format!(
        "tracer top: {} process(es) | {:.0} s | {} events | {} lost",
        status.processes,
        status.elapsed.as_secs_f64(),
        status.events,
        status.lost
    )
}

fn cells(a: &Amounts) -> impl Iterator<Item = String> + '_ {
    TYPES.iter().map(|t| human_bytes(a.get(*t)))
}

/// A plain-text snapshot (`--batch`): the same tables as the screen, in exact bytes (for logs
/// and scripts).
pub fn snapshot(ledger: &Ledger, status: &Status) -> String {
    let cells =
        |a: &Amounts| -> Vec<String> { TYPES.iter().map(|t| a.get(*t).to_string()).collect() };
    let mut s = String::new();
    let _ = writeln!(s, "{}", header(status));
    let _ = writeln!(
        s,
        "{:>5} {:>5} {:>7} {:>11} {:>11} {:>11} {:>11} {:>11} {:>11}",
        "CHIP", "PROCS", "BUFFERS", "DRAM", "L1", "L1_SMALL", "TRACE", "PEAK L1", "CB"
    );
    for r in chip_rows(ledger) {
        let c = cells(&r.reserved);
        let _ = writeln!(
            s,
            "{:>5} {:>5} {:>7} {:>11} {:>11} {:>11} {:>11} {:>11} {:>11}",
            r.chip,
            r.processes,
            r.buffers,
            c[0],
            c[1],
            c[2],
            c[3],
            r.peak.get(BufferType::L1),
            r.circular_buffers
        );
    }
    let _ = writeln!(
        s,
        "{:>8} {:>5} {:>7} {:>11} {:>11} {:>11} {:>11} {:>11}  COMMAND",
        "PID", "CHIP", "BUFFERS", "DRAM", "L1", "L1_SMALL", "TRACE", "CB"
    );
    for r in process_rows(ledger) {
        let c = cells(&r.reserved);
        let _ = writeln!(
            s,
            "{:>8} {:>5} {:>7} {:>11} {:>11} {:>11} {:>11} {:>11}  {}{}",
            r.pid,
            r.chip,
            r.buffers,
            c[0],
            c[1],
            c[2],
            c[3],
            r.circular_buffers,
            r.command,
            if r.exited { " (exited)" } else { "" }
        );
    }
    let _ = writeln!(s, "{:>8} {:>7} {:>13}  SITE", "PID", "BUFFERS", "RESERVED");
    for r in site_rows(ledger, SITES) {
        let _ = writeln!(
            s,
            "{:>8} {:>7} {:>13}  {}",
            r.pid, r.buffers, r.reserved, r.site
        );
    }
    s
}

/// Draws the screen onto any backend (the terminal, or a test buffer); `footer` goes on the
/// last line.
pub fn draw<B: Backend>(
    terminal: &mut Terminal<B>,
    ledger: &Ledger,
    status: &Status,
    footer: Option<&str>,
) -> Result<()> {
    let chips = chip_rows(ledger);
    let procs = process_rows(ledger);
    let sites = site_rows(ledger, SITES);
    terminal.draw(|f| {
        let [top, middle, bottom, by_site, last] = Layout::vertical([
            Constraint::Length(1),
            Constraint::Length(chips.len() as u16 + 3),
            Constraint::Min(3),
            Constraint::Length(sites.len() as u16 + 3),
            Constraint::Length(footer.is_some().into()),
        ])
        .areas(f.area());
        if let Some(footer) = footer {
            f.render_widget(Paragraph::new(Line::from(footer)), last);
        }
        f.render_widget(
            Paragraph::new(Line::from(format!("{}   (q: quit)", header(status)))),
            top,
        );
        let chip_table = table(
            "reserved per chip, all processes",
            [
                "CHIP", "PROCS", "BUFFERS", "DRAM", "L1", "L1_SMALL", "TRACE", "PEAK L1", "CB",
            ],
            [6, 6, 8, 12, 12, 12, 12, 12, 12],
            chips.iter().map(|r| {
                let mut v = vec![
                    r.chip.to_string(),
                    r.processes.to_string(),
                    r.buffers.to_string(),
                ];
                v.extend(cells(&r.reserved));
                v.push(human_bytes(r.peak.get(BufferType::L1)));
                v.push(human_bytes(r.circular_buffers));
                v
            }),
        );
        f.render_widget(chip_table, middle);
        let proc_table = table(
            "per process and chip, largest first",
            [
                "PID", "CHIP", "BUFFERS", "DRAM", "L1", "L1_SMALL", "TRACE", "CB", "COMMAND",
            ],
            [9, 6, 8, 12, 12, 12, 12, 12, 0],
            procs.iter().map(|r| {
                let mut v = vec![r.pid.to_string(), r.chip.to_string(), r.buffers.to_string()];
                v.extend(cells(&r.reserved));
                v.push(human_bytes(r.circular_buffers));
                v.push(format!(
                    "{}{}",
                    r.command,
                    if r.exited { " (exited)" } else { "" }
                ));
                v
            }),
        );
        f.render_widget(proc_table, bottom);
        let site_table = table(
            "largest holders by allocation site (reserved, summed over chips)",
            ["PID", "BUFFERS", "RESERVED", "SITE"],
            [9, 8, 12, 0],
            sites.iter().map(|r| {
                vec![
                    r.pid.to_string(),
                    r.buffers.to_string(),
                    human_bytes(r.reserved),
                    r.site.clone(),
                ]
            }),
        );
        f.render_widget(site_table, by_site);
    })?;
    Ok(())
}

/// A bordered table; a width of 0 takes the rest of the line.
fn table<'a, const N: usize>(
    title: &'a str,
    header: [&'a str; N],
    widths: [u16; N],
    rows: impl Iterator<Item = Vec<String>>,
) -> Table<'a> {
    let widths = widths.map(|w| {
        if w == 0 {
            Constraint::Min(10)
        } else {
            Constraint::Length(w)
        }
    });
    Table::new(rows.map(Row::new), widths)
        .header(Row::new(header).style(Style::default().add_modifier(Modifier::BOLD)))
        .block(Block::default().borders(Borders::ALL).title(title))
}

/// How `tracer top` shows the ledger.
#[derive(Clone, Debug)]
pub enum TopMode {
    /// Full-screen table, redrawn a few times a second; with the log that a command launched
    /// by `tracer top -- CMD` writes to instead of the screen.
    Screen(Option<ChildOutput>),
    /// Plain-text snapshots to stdout every interval.
    Batch(Duration),
}

impl TopMode {
    /// The log the launched command's stdout and stderr must go to, if any.
    pub fn child_output(&self) -> Option<&ChildOutput> {
        match self {
            TopMode::Screen(out) => out.as_ref(),
            TopMode::Batch(_) => None,
        }
    }
}

/// The file a command launched under the full-screen table writes its output to: anything it
/// printed on the terminal would land in the middle of the table.
#[derive(Clone, Debug)]
pub struct ChildOutput {
    pub command: Vec<String>,
    pub path: PathBuf,
    pub file: Arc<std::fs::File>,
}

impl ChildOutput {
    /// Creates `tracer-top-<tracer's pid>.log` in `dir` (`-N` added if taken). Never opens an
    /// existing file: the temp dir is shared, and tracer runs as root.
    pub fn create(dir: &Path, command: &[String]) -> Result<Self> {
        use std::os::unix::fs::OpenOptionsExt;
        let pid = std::process::id();
        for n in 0..100 {
            let name = match n {
                0 => format!("tracer-top-{pid}.log"),
                n => format!("tracer-top-{pid}-{n}.log"),
            };
            let path = dir.join(name);
            match std::fs::OpenOptions::new()
                .append(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
            {
                Ok(file) => {
                    return Ok(Self {
                        command: command.to_vec(),
                        path,
                        file: Arc::new(file),
                    })
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!("cannot create a log for the command in {}", dir.display())
                    })
                }
            }
        }
        anyhow::bail!(
            "cannot create a log for the command in {}: tracer-top-{pid}*.log all taken",
            dir.display()
        )
    }

    /// The footer line; arguments that are paths shortened to their file names, so the log's
    /// path fits on the line.
    fn footer(&self) -> String {
        let short: Vec<&str> = self
            .command
            .iter()
            .map(|a| a.rsplit('/').next().unwrap_or(a))
            .collect();
        format!("output of {}: {}", short.join(" "), self.path.display())
    }

    /// Tells the user where the command's output went, once the terminal is theirs again; a
    /// log the command never wrote to, because the session failed first, is removed instead.
    pub fn finish(&self, session_ok: bool) {
        if !session_ok && self.file.metadata().is_ok_and(|m| m.len() == 0) {
            let _ = std::fs::remove_file(&self.path);
            return;
        }
        eprintln!(
            "tracer: output of {}: {}",
            self.command.join(" "),
            self.path.display()
        );
    }
}

/// The `top` view of a running session: the screen or the snapshot printer, and its pace.
pub struct View {
    screen: Option<Screen>,
    every: Duration,
    last: Option<std::time::Instant>,
}

impl View {
    pub fn open(mode: TopMode) -> Result<Self> {
        let (screen, every) = match mode {
            TopMode::Screen(out) => (
                Some(Screen::open(out.as_ref().map(ChildOutput::footer))?),
                Duration::from_millis(250),
            ),
            TopMode::Batch(every) => (None, every),
        };
        Ok(Self {
            screen,
            every,
            last: None,
        })
    }

    pub fn is_batch(&self) -> bool {
        self.screen.is_none()
    }

    /// Draws (or prints) the ledger when due or `now`; true when the user asked to quit.
    pub fn refresh(
        &mut self,
        ledger: &Ledger,
        status: impl FnOnce() -> Status,
        out: &mut impl std::io::Write,
        now: bool,
    ) -> Result<bool> {
        if now || self.last.is_none_or(|t| t.elapsed() >= self.every) {
            let status = status();
            match &mut self.screen {
                Some(screen) => screen.draw(ledger, &status)?,
                None => {
                    writeln!(out, "{}", snapshot(ledger, &status))?;
                    out.flush()?;
                }
            }
            self.last = Some(std::time::Instant::now());
        }
        Ok(self.screen.as_mut().is_some_and(|s| s.quit_requested()))
    }
}

/// The full-screen terminal; restored on drop, whatever ends the session.
pub struct Screen {
    terminal: Terminal<CrosstermBackend<Stdout>>,
    footer: Option<String>,
}

impl Screen {
    pub fn open(footer: Option<String>) -> Result<Self> {
        enable_raw_mode().context("tracer top needs a terminal (use --batch otherwise)")?;
        let mut out = std::io::stdout();
        execute!(out, EnterAlternateScreen)?;
        let terminal = Terminal::new(CrosstermBackend::new(out))?;
        Ok(Self { terminal, footer })
    }

    pub fn draw(&mut self, ledger: &Ledger, status: &Status) -> Result<()> {
        draw(&mut self.terminal, ledger, status, self.footer.as_deref())
    }

    /// True once the user pressed q, Esc or Ctrl-C (raw mode turns Ctrl-C into a key).
    pub fn quit_requested(&mut self) -> bool {
        while event::poll(Duration::ZERO).unwrap_or(false) {
            if let Ok(Event::Key(k)) = event::read() {
                let ctrl_c =
                    k.code == KeyCode::Char('c') && k.modifiers.contains(KeyModifiers::CONTROL);
                if ctrl_c || matches!(k.code, KeyCode::Char('q') | KeyCode::Esc) {
                    return true;
                }
            }
        }
        false
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        let _ = disable_raw_mode();
        let _ = execute!(self.terminal.backend_mut(), LeaveAlternateScreen);
        let _ = self.terminal.show_cursor();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{BufferInfo, DeviceRef, Event, EventKind};
    use ratatui::backend::TestBackend;

    fn ledger() -> Ledger {
        let mut l = Ledger::new();
        for (pid, chips, size, kind) in [
            (10, vec![1, 0], 4096, BufferType::Dram),
            (11, vec![0], 1 << 20, BufferType::L1),
        ] {
            l.apply(&Event {
                ts_ns: 1,
                pid,
                kind: EventKind::ProcessStart {
                    command: format!("python job{pid}.py"),
                },
            });
            l.apply(&Event {
                ts_ns: 2,
                pid,
                kind: EventKind::Alloc {
                    device: DeviceRef {
                        handle: 1,
                        chips,
                        mesh: true,
                    },
                    buffer: BufferInfo {
                        address: 64,
                        size,
                        page_size: 0,
                        kind,
                        unique_id: 1,
                    },
                },
            });
        }
        l
    }

    #[test]
    fn chips_sum_their_processes() {
        let rows = chip_rows(&ledger());
        assert_eq!(rows.len(), 2);
        let chip0 = &rows[0];
        assert_eq!((chip0.chip, chip0.processes, chip0.buffers), (0, 2, 2));
        assert_eq!(chip0.reserved.get(BufferType::Dram), 4096);
        assert_eq!(chip0.reserved.get(BufferType::L1), 1 << 20);
        assert_eq!(rows[1].reserved.get(BufferType::L1), 0);
    }

    #[test]
    fn sites_hold_what_their_buffers_reserve() {
        let mut l = ledger();
        let site = crate::model::Site {
            frames: vec![crate::model::Frame {
                file: "/home/u/model.py".into(),
                function: "forward".into(),
                line: 42,
            }],
            op: Some("ttnn.matmul".into()),
        };
        for uid in [2, 3] {
            l.apply(&Event {
                ts_ns: 3,
                pid: 10,
                kind: EventKind::AllocationSite {
                    device: 1,
                    unique_id: uid,
                    site: site.clone(),
                },
            });
            l.apply(&Event {
                ts_ns: 3,
                pid: 10,
                kind: EventKind::Alloc {
                    device: DeviceRef {
                        handle: 1,
                        chips: vec![1, 0],
                        mesh: true,
                    },
                    buffer: BufferInfo {
                        address: 64 * uid,
                        size: 1 << 21,
                        page_size: 0,
                        kind: BufferType::Dram,
                        unique_id: uid,
                    },
                },
            });
        }
        let rows = site_rows(&l, 8);
        assert_eq!(rows[0].site, "model.py:42 in forward (ttnn.matmul)");
        assert_eq!((rows[0].pid, rows[0].buffers), (10, 2));
        // Two buffers of 2 MiB on two chips each.
        assert_eq!(rows[0].reserved, 2 * 2 * (1 << 21));
        assert!(rows[1..].iter().all(|r| r.site == "unknown site"));
        assert!(snapshot(&l, &Status::default()).contains("model.py:42 in forward (ttnn.matmul)"));
    }

    #[test]
    fn largest_holder_first() {
        let rows = process_rows(&ledger());
        assert_eq!((rows[0].pid, rows[0].chip), (11, 0));
    }

    #[test]
    fn screen_and_snapshot_show_the_same_figures() {
        let l = ledger();
        let status = Status {
            processes: 2,
            ..Default::default()
        };
        let mut t = Terminal::new(TestBackend::new(110, 20)).unwrap();
        draw(
            &mut t,
            &l,
            &status,
            Some("output of python job.py: /tmp/x.log"),
        )
        .unwrap();
        let screen: String = t
            .backend()
            .buffer()
            .content()
            .iter()
            .map(|c| c.symbol())
            .collect();
        let text = snapshot(&l, &status);
        for (human, exact) in [("1 MiB", "1048576"), ("4 KiB", "4096")] {
            assert!(screen.contains(human), "{human} not on screen");
            assert!(text.contains(exact), "{exact} not in snapshot");
        }
        for needle in ["python job11.py", "2 process(es)"] {
            assert!(screen.contains(needle), "{needle} not on screen");
            assert!(text.contains(needle), "{needle} not in snapshot");
        }
        assert!(screen.contains("output of python job.py: /tmp/x.log"));
    }

    #[test]
    fn child_logs_never_reuse_a_file() {
        let dir = std::env::temp_dir().join(format!("tracer-top-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cmd = ["/venv/bin/python".to_string(), "work/job.py".to_string()];
        let a = ChildOutput::create(&dir, &cmd).unwrap();
        let b = ChildOutput::create(&dir, &cmd).unwrap();
        assert_ne!(a.path, b.path);
        assert_eq!(
            a.footer(),
            format!("output of python job.py: {}", a.path.display())
        );
        // Empty after a failed session: nothing to read, so no file left behind.
        a.finish(false);
        assert!(!a.path.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
