//! `tracer top`: a live view of device memory per chip and per process, redrawn while the
//! session runs (a full-screen table), or printed as plain snapshots with `--batch`.
use std::{fmt::Write as _, io::Stdout, time::Duration};

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
            });
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
            })
        })
        .collect();
    rows.sort_by_key(|r| {
        (
            std::cmp::Reverse(r.reserved.0.iter().sum::<u64>()),
            r.pid,
            r.chip,
        )
    });
    rows
}

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
        "{:>5} {:>5} {:>7} {:>11} {:>11} {:>11} {:>11} {:>11}",
        "CHIP", "PROCS", "BUFFERS", "DRAM", "L1", "L1_SMALL", "TRACE", "PEAK L1"
    );
    for r in chip_rows(ledger) {
        let c = cells(&r.reserved);
        let _ = writeln!(
            s,
            "{:>5} {:>5} {:>7} {:>11} {:>11} {:>11} {:>11} {:>11}",
            r.chip,
            r.processes,
            r.buffers,
            c[0],
            c[1],
            c[2],
            c[3],
            r.peak.get(BufferType::L1)
        );
    }
    let _ = writeln!(
        s,
        "{:>8} {:>5} {:>7} {:>11} {:>11} {:>11} {:>11}  COMMAND",
        "PID", "CHIP", "BUFFERS", "DRAM", "L1", "L1_SMALL", "TRACE"
    );
    for r in process_rows(ledger) {
        let c = cells(&r.reserved);
        let _ = writeln!(
            s,
            "{:>8} {:>5} {:>7} {:>11} {:>11} {:>11} {:>11}  {}{}",
            r.pid,
            r.chip,
            r.buffers,
            c[0],
            c[1],
            c[2],
            c[3],
            r.command,
            if r.exited { " (exited)" } else { "" }
        );
    }
    s
}

/// Draws the screen onto any backend (the terminal, or a test buffer).
pub fn draw<B: Backend>(
    terminal: &mut Terminal<B>,
    ledger: &Ledger,
    status: &Status,
) -> Result<()> {
    let chips = chip_rows(ledger);
    let procs = process_rows(ledger);
    terminal.draw(|f| {
        let [top, middle, bottom] = Layout::vertical([
            Constraint::Length(1),
            Constraint::Length(chips.len() as u16 + 3),
            Constraint::Min(3),
        ])
        .areas(f.area());
        f.render_widget(
            Paragraph::new(Line::from(format!("{}   (q: quit)", header(status)))),
            top,
        );
        let chip_table = table(
            "reserved per chip, all processes",
            [
                "CHIP", "PROCS", "BUFFERS", "DRAM", "L1", "L1_SMALL", "TRACE", "PEAK L1",
            ],
            [6, 6, 8, 12, 12, 12, 12, 12],
            chips.iter().map(|r| {
                let mut v = vec![
                    r.chip.to_string(),
                    r.processes.to_string(),
                    r.buffers.to_string(),
                ];
                v.extend(cells(&r.reserved));
                v.push(human_bytes(r.peak.get(BufferType::L1)));
                v
            }),
        );
        f.render_widget(chip_table, middle);
        let proc_table = table(
            "per process and chip, largest first",
            [
                "PID", "CHIP", "BUFFERS", "DRAM", "L1", "L1_SMALL", "TRACE", "COMMAND",
            ],
            [9, 6, 8, 12, 12, 12, 12, 0],
            procs.iter().map(|r| {
                let mut v = vec![r.pid.to_string(), r.chip.to_string(), r.buffers.to_string()];
                v.extend(cells(&r.reserved));
                v.push(format!(
                    "{}{}",
                    r.command,
                    if r.exited { " (exited)" } else { "" }
                ));
                v
            }),
        );
        f.render_widget(proc_table, bottom);
    })?;
    Ok(())
}

/// A bordered table; a width of 0 takes the rest of the line.
fn table<'a>(
    title: &'a str,
    header: [&'a str; 8],
    widths: [u16; 8],
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
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum TopMode {
    /// Full-screen table, redrawn a few times a second.
    Screen,
    /// Plain-text snapshots to stdout every interval.
    Batch(Duration),
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
            TopMode::Screen => (Some(Screen::open()?), Duration::from_millis(250)),
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
}

impl Screen {
    pub fn open() -> Result<Self> {
        enable_raw_mode().context("tracer top needs a terminal (use --batch otherwise)")?;
        let mut out = std::io::stdout();
        execute!(out, EnterAlternateScreen)?;
        let terminal = Terminal::new(CrosstermBackend::new(out))?;
        Ok(Self { terminal })
    }

    pub fn draw(&mut self, ledger: &Ledger, status: &Status) -> Result<()> {
        draw(&mut self.terminal, ledger, status)
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
        draw(&mut t, &l, &status).unwrap();
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
    }
}
