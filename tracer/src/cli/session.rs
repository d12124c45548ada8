//! A live tracing session: probes -> decoder -> ledger -> printer, until told to stop.
use std::{io::Write as _, time::Duration};

use anyhow::{Context, Result};
use tokio::signal::unix::{signal, SignalKind};

use super::{TraceOpts, EXIT_LOST_EVENTS};
use crate::{
    ledger::{Event, EventKind, Ledger},
    live::{metrics::Metrics, top},
    probe::{decode::Decoder, loader_watch::LoaderWatch, Loaded, Probes, Raw, Scope},
    report::{self, SessionInfo},
    runtime::{self, discover, dynamic_linker},
    session::writer::{live_header, Recorder},
};

pub struct LiveSession {
    pub probes: Probes,
    pub decoder: Decoder,
    pub ledger: Ledger,
    opts: TraceOpts,
    out: std::io::BufWriter<std::io::Stdout>,
    /// CLOCK_MONOTONIC when the session began (the recording's time base).
    start_ns: u64,
    /// `-o FILE`: every event the ledger sees is also recorded.
    recorder: Option<Recorder<std::fs::File>>,
    /// The Prometheus exporter (`--metrics`), started with the event loop.
    metrics: Option<Metrics>,
    /// `tracer top`: the live table instead of event lines.
    top: Option<top::View>,
    events: u64,
    started: std::time::Instant,
    /// Print a process' final state when it exits (`attach --all` watches many processes).
    pub report_exits: bool,
    /// Probe sets on other runtime library files (`attach --all` when processes map different
    /// builds), each with its own decoder; drained on a timer.
    pub extra: Vec<(Probes, Decoder)>,
    /// Per seeded process, (t0, t1) around reading the runtime's state: allocations, frees and
    /// closes before t0 are already in the seed (dropped here); those between t0 and t1 may or
    /// may not be (counted in `raced` and reported).
    pub seed_cutoffs: std::collections::HashMap<u32, (u64, u64)>,
    raced: std::collections::BTreeMap<u32, u64>,
    /// Called about every `TICK` while running (`attach --all` looks for new libraries).
    pub tick: Option<Tick>,
    /// `run`: the launched tree is stopped at each library load, so a runtime library it maps
    /// (one nothing named up front, or a second one) gets probes before it runs.
    pub loader: Option<LoaderWatch>,
    /// Which probe set's library each process ran on.
    libraries: std::collections::BTreeMap<u32, String>,
}

/// Periodic work done inside the event loop.
pub type Tick = Box<dyn FnMut(&mut LiveSession)>;

/// How often the event loop looks for events the kernel dropped (to warn while it happens).
const LOST_CHECK: Duration = Duration::from_secs(1);

/// Test hook: `TRACER_TEST_STALL_MS` makes the collector stop draining the ring buffer for a
/// while at the start, so tests can fill it with real runtime events and check how losses are
/// reported. Library-load stops are still served (the traced process would wait otherwise).
fn stall_for_tests() -> Option<std::time::Instant> {
    let ms = std::env::var("TRACER_TEST_STALL_MS")
        .ok()?
        .parse::<u64>()
        .ok()?;
    Some(std::time::Instant::now() + Duration::from_millis(ms))
}

/// How often [`LiveSession::tick`] runs.
const TICK: Duration = Duration::from_secs(2);

/// Why the event loop stopped.
#[derive(Debug, PartialEq, Eq)]
pub enum Stop {
    ChildExited(i32),
    Signal(i32),
    Duration,
    /// The user quit `tracer top`.
    Quit,
}

impl LiveSession {
    pub fn new(probes: Probes, decoder: Decoder, opts: TraceOpts) -> Self {
        Self {
            probes,
            decoder,
            ledger: Ledger::new(),
            opts,
            out: std::io::BufWriter::new(std::io::stdout()),
            metrics: None,
            top: None,
            events: 0,
            started: std::time::Instant::now(),
            report_exits: false,
            extra: Vec::new(),
            seed_cutoffs: Default::default(),
            raced: Default::default(),
            tick: None,
            loader: None,
            libraries: Default::default(),
            start_ns: monotonic_ns(),
            recorder: None,
        }
    }

    /// Starts the `-o FILE` recording, if asked for; `command` is what the session traces
    /// (the launched command, or the attached PIDs).
    pub fn open_recording(&mut self, command: &str) -> Result<()> {
        let Some(path) = &self.opts.output else {
            return Ok(());
        };
        let file = std::fs::File::create(path)
            .with_context(|| format!("cannot create recording {}", path.display()))?;
        super::launch::give_to_invoker(path);
        let header = live_header(command, self.decoder.plan(), self.start_ns);
        self.recorder = Some(
            Recorder::new(file, &header)
                .with_context(|| format!("cannot write recording {}", path.display()))?,
        );
        Ok(())
    }

    /// Runs a recorder step; a failing recording is reported once and dropped, the trace goes
    /// on.
    fn with_recorder(&mut self, step: impl FnOnce(&mut Recorder<std::fs::File>) -> Result<()>) {
        if let Some(rec) = self.recorder.as_mut() {
            if let Err(e) = step(rec) {
                eprintln!(
                    "tracer: error: recording to {} failed, recording stopped: {e:#}",
                    self.opts
                        .output
                        .as_deref()
                        .unwrap_or(std::path::Path::new("?"))
                        .display()
                );
                self.recorder = None;
            }
        }
    }

    /// Shows the live `top` view instead of event lines (`TraceOpts::top`).
    fn show_top(&mut self) -> Result<()> {
        if let Some(mode) = self.opts.top.take() {
            self.opts.quiet = true;
            self.top = Some(top::View::open(mode)?);
        }
        Ok(())
    }

    /// Redraws the `top` view when due; true when the user asked to quit.
    fn refresh_top(&mut self, now: bool) -> Result<bool> {
        let Some(view) = &mut self.top else {
            return Ok(false);
        };
        let status = || top::Status {
            elapsed: self.started.elapsed(),
            events: self.events,
            lost: lost(&self.probes, &self.extra),
            processes: self.ledger.processes.len(),
        };
        view.refresh(&self.ledger, status, &mut self.out, now)
    }

    /// Starts the exporter if `--metrics` asks for it (needs the tokio runtime). The event loop
    /// starts it too; call it earlier to fail before a command is launched.
    pub fn start_metrics(&mut self) -> Result<()> {
        if let (Some(spec), None) = (&self.opts.metrics, &self.metrics) {
            let m = Metrics::serve(spec)?;
            eprintln!("tracer: metrics at http://{}/metrics", m.addr);
            self.metrics = Some(m);
        }
        Ok(())
    }

    fn publish_metrics(&mut self, now: bool) {
        if let Some(m) = &mut self.metrics {
            m.publish(&self.ledger, || lost(&self.probes, &self.extra), now);
        }
    }

    /// Feeds one event through the ledger and the printer.
    pub fn apply(&mut self, ev: &Event) {
        if let Some((t0, t1)) = self.seed_cutoffs.get(&ev.pid) {
            if matches!(
                ev.kind,
                EventKind::Alloc { .. } | EventKind::Free { .. } | EventKind::DeviceClose { .. }
            ) {
                if ev.ts_ns < *t0 {
                    return;
                }
                if ev.ts_ns <= *t1 {
                    *self.raced.entry(ev.pid).or_default() += 1;
                }
            }
        }
        let before = self
            .ledger
            .processes
            .get(&ev.pid)
            .map_or(0, |p| p.outstanding.len());
        self.ledger.apply(ev);
        self.with_recorder(|r| r.record(ev));
        self.events += 1;
        if self.report_exits
            && self.top.is_none()
            && matches!(ev.kind, EventKind::ProcessExit { .. })
        {
            if let Some(p) = self.ledger.processes.get(&ev.pid) {
                let stacks = &self.decoder.plan().call_stacks;
                let _ = write!(self.out, "{}", report::text::process_summary(p, stacks));
            }
        }
        if self.opts.quiet {
            return;
        }
        for line in report::lines::event_lines(ev) {
            let _ = writeln!(self.out, "{line}");
        }
        if let EventKind::DeviceClose { .. } = ev.kind {
            let p = &self.ledger.processes[&ev.pid];
            if let Some(line) = report::lines::dropped_by_close(ev.pid, &p.outstanding[before..]) {
                let _ = writeln!(self.out, "{line}");
            }
        }
        if let EventKind::OutOfMemory { .. } = ev.kind {
            if let Some(o) = self.ledger.processes[&ev.pid].ooms.last() {
                for line in report::lines::oom(ev.pid, o) {
                    let _ = writeln!(self.out, "{line}");
                }
            }
        }
    }

    fn handle_raw(&mut self, raw: Raw) {
        let events = decode(&mut self.decoder, raw);
        for ev in events {
            self.note_library(ev.pid, 0);
            self.apply(&ev);
        }
    }

    /// Remembers that `pid`'s events come from probe set `set` (0: the first).
    fn note_library(&mut self, pid: u32, set: usize) {
        if !self.libraries.contains_key(&pid) {
            let plan = match set {
                0 => self.decoder.plan(),
                i => self.extra[i - 1].1.plan(),
            };
            self.libraries
                .insert(pid, plan.library.display().to_string());
        }
    }

    /// Removes the allocator geometry probes of probe sets whose mid-run processes all
    /// reported (each trap costs an allocation some microseconds).
    fn drop_geometry_probes(&mut self) {
        if self.decoder.geometry_done() {
            self.probes.detach_geometry();
        }
        for (probes, decoder) in &mut self.extra {
            if decoder.geometry_done() {
                probes.detach_geometry();
            }
        }
    }

    /// `pid` is stopped at the dynamic linker's hook: probe any runtime library it maps that no
    /// probe set covers yet, then let it go on.
    fn library_change(&mut self, pid: u32) {
        let mapped = dynamic_linker::mapped_libraries(pid).unwrap_or_default();
        for (lib, _) in mapped {
            if let Err(e) = self.probe_library(pid, &lib) {
                eprintln!(
                    "tracer: warning: PID {pid} loaded {}, which cannot be traced: {e:#}",
                    lib.display()
                );
            }
        }
        if let Some(w) = &mut self.loader {
            w.resume(pid);
        }
    }

    fn probe_library(&mut self, pid: u32, lib: &std::path::Path) -> Result<()> {
        let id = discover::file_id(lib)?;
        let plans =
            std::iter::once(self.decoder.plan()).chain(self.extra.iter().map(|(_, d)| d.plan()));
        if let Some(i) = plans
            .map(|p| discover::file_id(&p.library).ok())
            .position(|known| known == Some(id))
        {
            // Known library; a process of the tree not yet followed by that set is added.
            let probes = if i == 0 {
                &mut self.probes
            } else {
                &mut self.extra[i - 1].0
            };
            return probes.track(pid);
        }
        let plan = runtime::plan_for(lib)?;
        for w in &plan.warnings {
            eprintln!("tracer: warning: {}: {w}", lib.display());
        }
        let mut probes = Loaded::new()?.attach(&plan, Scope::Tracked)?;
        probes.track(pid)?;
        eprintln!("tracer: PID {pid} loaded {}: probed", lib.display());
        self.extra.push((probes, Decoder::new(plan)));
        Ok(())
    }

    /// Takes what the extra probe sets have collected.
    fn drain_extra(&mut self) {
        for i in 0..self.extra.len() {
            let mut raws = Vec::new();
            self.extra[i].0.drain(|r| raws.push(r));
            for r in raws {
                let events = decode(&mut self.extra[i].1, r);
                for ev in events {
                    self.note_library(ev.pid, i + 1);
                    self.apply(&ev);
                }
            }
        }
    }

    fn drain(&mut self) {
        let mut raws = Vec::new();
        self.probes.drain(|r| raws.push(r));
        for r in raws {
            self.handle_raw(r);
        }
        self.drain_extra();
        let _ = self.out.flush();
    }

    /// Runs until `done` resolves, a signal arrives, or `--duration` passes.
    pub async fn run_until(
        &mut self,
        done: impl std::future::Future<Output = i32>,
    ) -> Result<Stop> {
        let mut int = signal(SignalKind::interrupt())?;
        let mut term = signal(SignalKind::terminate())?;
        self.start_metrics()?;
        self.publish_metrics(true);
        self.show_top()?;
        let duration = self.opts.duration.map(Duration::from_secs_f64);
        let sleep = async {
            match duration {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(done);
        tokio::pin!(sleep);
        // Recorded events reach the file at least this often, so a SIGKILL loses little.
        let mut flush_timer = tokio::time::interval(Duration::from_millis(100));
        let mut last_tick = std::time::Instant::now();
        let (mut lost_seen, mut lost_checked) = (0u64, None::<std::time::Instant>);
        let stall_until = stall_for_tests();
        let stop = loop {
            let stalled = stall_until.is_some_and(|t| std::time::Instant::now() < t);
            if lost_checked.is_none_or(|t| t.elapsed() >= LOST_CHECK) {
                lost_checked = Some(std::time::Instant::now());
                let lost = lost(&self.probes, &self.extra);
                if lost > lost_seen {
                    eprintln!(
                        "tracer: warning: the kernel dropped {lost} event(s) so far (ring buffer \
                         full: tracer fell behind); the ledger will be incomplete"
                    );
                    lost_seen = lost;
                }
            }
            let mut raws = Vec::new();
            tokio::select! {
                r = self.probes.next_batch(|r| raws.push(r)), if !stalled => { r?; }
                _ = tokio::time::sleep(Duration::from_millis(20)), if stalled => {}
                stops = next_stops(&mut self.loader) => {
                    for pid in stops? {
                        self.library_change(pid);
                    }
                }
                _ = flush_timer.tick() => {}
                code = &mut done => break Stop::ChildExited(code),
                _ = int.recv() => break Stop::Signal(libc::SIGINT),
                _ = term.recv() => break Stop::Signal(libc::SIGTERM),
                _ = &mut sleep => break Stop::Duration,
            }
            for r in raws {
                self.handle_raw(r);
            }
            if !stalled {
                self.drain_extra();
            }
            self.drop_geometry_probes();
            if last_tick.elapsed() >= TICK {
                last_tick = std::time::Instant::now();
                if let Some(mut f) = self.tick.take() {
                    f(self);
                    self.tick = Some(f);
                }
            }
            let _ = self.out.flush();
            self.with_recorder(|r| r.flush_if_due());
            self.publish_metrics(false);
            if self.refresh_top(false)? {
                break Stop::Quit;
            }
        };
        // Events already in the ring buffer belong to the session.
        self.drain();
        self.publish_metrics(true);
        Ok(stop)
    }

    /// Closes the books, prints the summary, writes the JSON; returns the exit code to use
    /// when the traced program itself did not decide it.
    pub fn finish(mut self, now_ns: u64) -> Result<i32> {
        // The last state of `top`, then the terminal back to normal before the summary.
        if self.top.as_ref().is_some_and(|v| v.is_batch()) {
            self.refresh_top(true)?;
        }
        self.top = None;
        self.ledger.finish(now_ns);
        for (pid, n) in &self.raced {
            eprintln!(
                "tracer: warning: PID {pid}: {n} allocation/free event(s) happened while tracer \
                 read the SHM tracker; the seeded totals may be off by their bytes"
            );
        }
        let lost = lost(&self.probes, &self.extra);
        let plan = self.decoder.plan();
        let info = SessionInfo {
            library: plan.library.display().to_string(),
            build_id: plan.build_id.clone(),
            layout: plan.layout.describe(),
            lost_events: lost,
            call_stacks: plan.call_stacks.clone(),
            process_libraries: {
                // Processes seen only by their start or exit ran on the first library, as a
                // replay of the recording (which names that one) says too.
                let mut libs = std::mem::take(&mut self.libraries);
                for pid in self.ledger.processes.keys() {
                    libs.entry(*pid)
                        .or_insert_with(|| plan.library.display().to_string());
                }
                libs
            },
        };
        // The trailer marks a clean end; without it `report` says the file was truncated
        // (still readable), so a failure here is a warning, not a lost summary.
        if let Some(rec) = self.recorder.take() {
            let path = self.opts.output.clone().unwrap_or_default();
            if let Err(e) = rec.finish(now_ns, lost).and_then(|f| Ok(f.sync_all()?)) {
                eprintln!(
                    "tracer: error: cannot finish recording {}: {e:#}",
                    path.display()
                );
            }
        }
        let _ = write!(self.out, "{}", report::text::summary(&self.ledger, &info));
        let _ = self.out.flush();
        if self.decoder.undecodable > 0 {
            eprintln!(
                "tracer: warning: {} probe hit(s) had unreadable buffer fields and were skipped",
                self.decoder.undecodable
            );
        }
        for note in self
            .decoder
            .geometry_notes
            .iter()
            .chain(self.extra.iter().flat_map(|(_, d)| d.geometry_notes.iter()))
        {
            eprintln!("tracer: warning: {note}; reserved falls back to requested bytes");
        }
        if self.decoder.sharded_allocations > 0 {
            eprintln!(
                "tracer: warning: {} allocation(s) of sharded buffers: tracer computes their \
                 `reserved` bytes as if interleaved, which is lower than what the allocator holds \
                 (it reserves a whole shard in every bank); `requested` is exact",
                self.decoder.sharded_allocations
            );
        }
        if self.decoder.undescribed > 0 {
            eprintln!(
                "tracer: warning: {} buffer event(s) on a device object the probe could not \
                 describe (ring buffer full?): charged to no chip",
                self.decoder.undescribed
            );
        }
        if let Some(path) = &self.opts.summary_json {
            let doc = serde_json::to_string_pretty(&report::json::summary(&self.ledger, &info))?;
            if path.as_os_str() == "-" {
                println!("{doc}");
            } else {
                std::fs::write(path, doc + "\n")
                    .with_context(|| format!("cannot write {}", path.display()))?;
                super::launch::give_to_invoker(path);
            }
        }
        if self.opts.strict && lost > 0 {
            eprintln!("tracer: {lost} event(s) lost and --strict is set");
            return Ok(EXIT_LOST_EVENTS);
        }
        Ok(0)
    }
}

/// The loader watch's next stops; never, without one.
async fn next_stops(watch: &mut Option<LoaderWatch>) -> Result<Vec<u32>> {
    match watch {
        Some(w) => w.next_stops().await,
        None => std::future::pending().await,
    }
}

/// Raw probe output -> ledger events, with the decoder of the probe set it came from.
fn decode(decoder: &mut Decoder, raw: Raw) -> Vec<Event> {
    match raw {
        Raw::Event(e) => decoder.decode(&e),
        Raw::Device(d) => {
            decoder.describe(&d);
            Vec::new()
        }
    }
}

/// Events the kernel dropped so far, over every probe set (`attach --all` may have several).
fn lost(probes: &Probes, extra: &[(Probes, Decoder)]) -> u64 {
    let extra: u64 = extra.iter().map(|(p, _)| p.lost().unwrap_or(0)).sum();
    probes.lost().unwrap_or(0) + extra
}

/// Monotonic clock, the one bpf_ktime_get_ns uses.
pub fn monotonic_ns() -> u64 {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).unwrap();
    t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64
}
