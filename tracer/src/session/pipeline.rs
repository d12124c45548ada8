//! A live session as a pipeline: one [`Source`] (every probe set) -> decoders -> the ledger ->
//! the sinks, until the traced program ends, a signal, `--duration`, or the user quits `top`.
use std::{io::Write as _, time::Duration};

use anyhow::{Context, Result};
use tokio::{
    signal::unix::{signal, SignalKind},
    sync::mpsc::UnboundedReceiver,
};

use super::{
    launch::give_to_invoker,
    library_watch::LibraryWatch,
    seeding::{self, SeedCutoffs},
    sink::{self, Applied, End, Out, Sink, Status},
    sinks::{ExitReporter, MetricsSink, Printer, RecorderSink, TopSink},
    source::{PreparedSet, ProbeSet, Source},
    Options,
};
use crate::{
    exit,
    ledger::Ledger,
    model::Event,
    probe::decode::Decoder,
    recording::writer::{live_header, Recorder},
    report::{self, SessionInfo},
};

pub struct Session {
    pub source: Source,
    pub ledger: Ledger,
    opts: Options,
    sinks: Vec<Box<dyn Sink>>,
    out: Out,
    /// CLOCK_MONOTONIC when the session began (the recording's time base).
    start_ns: u64,
    events: u64,
    started: std::time::Instant,
    /// What the seeds of processes attached mid-run already count.
    seeds: SeedCutoffs,
    /// `run`: the launched tree stops at each library load, so a runtime library it maps gets
    /// probes before it runs.
    pub loader: Option<LibraryWatch>,
    /// `attach --all`: library files found later, prepared off the loop.
    prepared: Option<UnboundedReceiver<PreparedSet>>,
}

/// How often the event loop looks for events the kernel dropped (to warn while it happens).
const LOST_CHECK: Duration = Duration::from_secs(1);

/// Why the event loop stopped.
#[derive(Debug, PartialEq, Eq)]
pub enum Stop {
    ChildExited(i32),
    Signal(i32),
    Duration,
    /// The user quit `tracer top`.
    Quit,
}

impl Session {
    pub fn new(probes: crate::probe::Probes, decoder: Decoder, opts: Options) -> Self {
        let out = sink::stdout();
        let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
        if !opts.quiet && opts.top.is_none() {
            sinks.push(Box::new(Printer::new(out.clone())));
        }
        Self {
            source: Source::new(ProbeSet::new(probes, decoder)),
            ledger: Ledger::new(),
            opts,
            sinks,
            out,
            start_ns: crate::probe::monotonic_ns(),
            events: 0,
            started: std::time::Instant::now(),
            seeds: SeedCutoffs::default(),
            loader: None,
            prepared: None,
        }
    }

    pub fn decoder(&self) -> &Decoder {
        &self.source.primary().decoder
    }

    /// Prints each process's final state when it exits (`attach --all`).
    pub fn report_exits(&mut self) {
        if self.opts.top.is_none() {
            let stacks = self.decoder().plan().call_stacks.clone();
            self.sinks
                .push(Box::new(ExitReporter::new(self.out.clone(), stacks)));
        }
    }

    /// Library files prepared off the loop arrive here (`attach --all`'s scan).
    pub fn receive_prepared(&mut self, rx: UnboundedReceiver<PreparedSet>) {
        self.prepared = Some(rx);
    }

    /// Starts the `-o FILE` recording, if asked for; `command` is what the session traces
    /// (the launched command, or the attached PIDs).
    pub fn open_recording(&mut self, command: &str) -> Result<()> {
        let Some(path) = self.opts.output.clone() else {
            return Ok(());
        };
        let file = std::fs::File::create(&path)
            .with_context(|| format!("cannot create recording {}", path.display()))?;
        give_to_invoker(&path);
        let header = live_header(command, &self.decoder().plan().traced(), self.start_ns);
        let recorder = Recorder::new(file, &header)
            .with_context(|| format!("cannot write recording {}", path.display()))?;
        self.sinks.push(Box::new(RecorderSink::new(recorder, path)));
        Ok(())
    }

    /// Starts the exporter if `--metrics` asks for it (needs the tokio runtime). The event loop
    /// starts it too; call it earlier to fail before a command is launched.
    pub fn start_metrics(&mut self) -> Result<()> {
        if let Some(spec) = self.opts.metrics.take() {
            self.sinks.push(Box::new(MetricsSink::serve(&spec)?));
        }
        Ok(())
    }

    fn status(&self) -> Status {
        Status {
            elapsed: self.started.elapsed(),
            events: self.events,
            lost: self.source.lost(),
            processes: self.ledger.processes.len(),
        }
    }

    /// Feeds one event through the ledger and the sinks.
    pub fn apply(&mut self, ev: &Event) {
        if !self.seeds.admit(ev) {
            return;
        }
        let outstanding_before = self
            .ledger
            .processes
            .get(&ev.pid)
            .map_or(0, |p| p.outstanding.len());
        self.ledger.apply(ev);
        self.events += 1;
        let applied = Applied {
            ev,
            outstanding_before,
        };
        for s in &mut self.sinks {
            s.event(&self.ledger, &applied);
        }
    }

    /// Opens the ledger of `pid`, which was running before probe set `set` saw it: its start,
    /// and what it held before (seeded where the runtime can tell).
    pub fn join_mid_run(&mut self, set: usize, pid: u32) {
        let probe_set = self.source.set_mut(set);
        // Its exit ends its ledger, even if it never calls the runtime again.
        if let Err(e) = probe_set.probes.watch_exit(pid) {
            eprintln!("tracer: warning: the exit of PID {pid} may go unseen: {e:#}");
        }
        let decoder = &mut probe_set.decoder;
        decoder.announce(pid);
        decoder.attached(pid);
        let mut seed = seeding::read(pid, decoder.plan());
        decoder.held_programs(
            pid,
            seed.events.iter().filter_map(|e| match &e.kind {
                crate::model::EventKind::HeldCircularBuffers {
                    device, program, ..
                } => Some((device.handle, *program)),
                _ => None,
            }),
        );
        // Every buffer it holds is known now: its frees need carry only their object.
        if let Some(objects) = seed.objects.take() {
            decoder.know_objects(pid, objects);
            if let Err(e) = probe_set.probes.track_by_object(pid) {
                eprintln!("tracer: warning: PID {pid}'s frees will read every field: {e:#}");
            }
        }
        // Its interpreter runs already: its stacks can be read from its next allocation.
        self.source.python(set, pid);
        for ev in &seed.events {
            self.apply(ev);
        }
        if let Some(between) = seed.read_between {
            self.seeds.insert(pid, between);
        }
        eprintln!("tracer: {}", seed.note);
    }

    /// Decodes raw records of the session's probe sets and applies the events they make.
    pub fn decode_and_apply(&mut self, raws: Vec<(usize, crate::probe::Raw)>) {
        for (set, raw) in raws {
            for ev in self.source.decode(set, raw) {
                self.apply(&ev);
            }
        }
    }

    /// Runs until `done` resolves, a signal arrives, or `--duration` passes.
    pub async fn run_until(
        &mut self,
        done: impl std::future::Future<Output = i32>,
    ) -> Result<Stop> {
        let mut int = signal(SignalKind::interrupt())?;
        let mut term = signal(SignalKind::terminate())?;
        self.start_metrics()?;
        if let Some(mode) = self.opts.top.take() {
            self.sinks.insert(0, Box::new(TopSink::open(mode)?));
        }
        self.batch_done(false)?;
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
        let (mut lost_seen, mut lost_checked) = (0u64, None::<std::time::Instant>);
        let stop = loop {
            if lost_checked.is_none_or(|t| t.elapsed() >= LOST_CHECK) {
                lost_checked = Some(std::time::Instant::now());
                self.warn_lost(&mut lost_seen);
            }
            let mut raws = Vec::new();
            tokio::select! {
                r = self.source.next_batch(&mut raws) => { r?; }
                stops = next_stops(&mut self.loader) => {
                    for pid in stops? {
                        if let Some(w) = &mut self.loader {
                            w.library_change(&mut self.source, pid);
                        }
                    }
                }
                Some(p) = next_prepared(&mut self.prepared) => self.add_prepared(p),
                _ = flush_timer.tick() => {}
                code = &mut done => break Stop::ChildExited(code),
                _ = int.recv() => break Stop::Signal(libc::SIGINT),
                _ = term.recv() => break Stop::Signal(libc::SIGTERM),
                _ = &mut sleep => break Stop::Duration,
            }
            self.decode_and_apply(raws);
            self.source.drop_geometry_probes();
            if self.batch_done(false)? {
                break Stop::Quit;
            }
        };
        // Events already in the ring buffers belong to the session.
        let mut raws = Vec::new();
        self.source.drain(&mut raws);
        self.decode_and_apply(raws);
        self.warn_lost(&mut lost_seen);
        Ok(stop)
    }

    /// Says so when the kernel dropped events since the last look.
    fn warn_lost(&self, seen: &mut u64) {
        let lost = self.source.lost();
        if lost > *seen {
            eprintln!(
                "tracer: warning: the kernel dropped {lost} event(s) so far (ring buffer full: \
                 tracer fell behind); the ledger will be incomplete"
            );
            *seen = lost;
        }
    }

    /// Tells the sinks a batch is done; true when one asks to stop.
    fn batch_done(&mut self, now: bool) -> Result<bool> {
        let status = self.status();
        let mut stop = false;
        for s in &mut self.sinks {
            stop |= s.batch(&self.ledger, &status, now)?;
        }
        Ok(stop)
    }

    /// A library file the `--all` scan found and prepared: attach it, open the ledgers of the
    /// processes already using it.
    fn add_prepared(&mut self, p: PreparedSet) {
        let library = p.plan.library.display().to_string();
        let probes = match p.loaded.attach(&p.plan) {
            Ok(probes) => probes,
            Err(e) => {
                eprintln!("tracer: warning: not traced: {library}: {e:#}");
                return;
            }
        };
        self.source.add(ProbeSet::new(probes, Decoder::new(p.plan)));
        let set = self.source.sets().len() - 1;
        eprintln!("tracer: now probing {library} too");
        for pid in p.users {
            self.join_mid_run(set, pid);
            eprintln!("attached: PID {pid}");
        }
    }

    /// Closes the books, prints the summary, writes the JSON; returns the exit code to use
    /// when the traced program itself did not decide it.
    pub fn finish(mut self, now_ns: u64) -> Result<i32> {
        self.ledger.finish(now_ns);
        let status = self.status();
        let end = End {
            end_ns: now_ns,
            lost: status.lost,
        };
        for s in &mut self.sinks {
            s.finish(&self.ledger, &status, &end);
        }
        // The terminal is back to normal (top) and the recording closed before the summary.
        self.sinks.clear();
        for w in self.seeds.warnings() {
            eprintln!("tracer: warning: {w}");
        }
        let lost = status.lost;
        let traced = self.decoder().plan().traced();
        let info = SessionInfo {
            library: traced.library,
            build_id: traced.build_id,
            layout: traced.layout,
            lost_events: lost,
            call_stacks: traced.call_stacks,
            process_libraries: self
                .source
                .take_libraries(self.ledger.processes.keys().copied()),
            probe_hits: probe_hits(&self.source),
        };
        {
            let mut out = self.out.borrow_mut();
            let _ = write!(out, "{}", report::text::summary(&self.ledger, &info));
            let _ = out.flush();
        }
        for w in decoder_warnings(&self.source) {
            eprintln!("tracer: warning: {w}");
        }
        if let Some(path) = &self.opts.summary_json {
            let doc = serde_json::to_string_pretty(&report::json::summary(&self.ledger, &info))?;
            if path.as_os_str() == "-" {
                println!("{doc}");
            } else {
                std::fs::write(path, doc + "\n")
                    .with_context(|| format!("cannot write {}", path.display()))?;
                give_to_invoker(path);
            }
        }
        if self.opts.strict && lost > 0 {
            eprintln!("tracer: {lost} event(s) lost and --strict is set");
            return Ok(exit::LOST_EVENTS);
        }
        Ok(0)
    }
}

/// What the decoders could not do, for the end of the session.
/// Probe records per role, over every probe set.
fn probe_hits(source: &Source) -> std::collections::BTreeMap<String, u64> {
    let mut hits = std::collections::BTreeMap::new();
    for s in source.sets() {
        let mut roles: Vec<crate::plan::Role> = Vec::new();
        for p in &s.decoder.plan().probes {
            if !roles.contains(&p.role) {
                roles.push(p.role);
            }
        }
        for role in roles {
            *hits.entry(format!("{role:?}")).or_insert(0) += s.decoder.records_of(role);
        }
        // Of the frees, those that read nothing but their buffer's object.
        *hits.entry("FreeByObject".into()).or_insert(0) += s.decoder.frees_by_object;
    }
    hits
}

fn decoder_warnings(source: &Source) -> Vec<String> {
    let first = &source.primary().decoder;
    let mut v = Vec::new();
    if first.undecodable > 0 {
        v.push(format!(
            "{} probe hit(s) had unreadable buffer fields and were skipped",
            first.undecodable
        ));
    }
    for note in source
        .sets()
        .iter()
        .flat_map(|s| s.decoder.geometry_notes.iter())
    {
        v.push(format!("{note}; reserved falls back to requested bytes"));
    }
    if first.sharded_allocations > 0 {
        v.push(format!(
            "{} allocation(s) of sharded buffers: tracer computes their `reserved` bytes as if \
             interleaved, which is lower than what the allocator holds (it reserves a whole \
             shard in every bank); `requested` is exact",
            first.sharded_allocations
        ));
    }
    if first.unmatched_frees > 0 {
        v.push(format!(
            "{} free(s) of buffers whose allocation tracer never received (lost events?): \
             not counted",
            first.unmatched_frees
        ));
    }
    if first.undescribed > 0 {
        v.push(format!(
            "{} buffer event(s) on a device object the probe could not describe (ring buffer \
             full?): charged to no chip",
            first.undescribed
        ));
    }
    v
}

/// The loader watch's next stops; never, without one.
async fn next_stops(watch: &mut Option<LibraryWatch>) -> Result<Vec<u32>> {
    match watch {
        Some(w) => w.next_stops().await,
        None => std::future::pending().await,
    }
}

/// The next prepared probe set; never, without a scan.
async fn next_prepared(rx: &mut Option<UnboundedReceiver<PreparedSet>>) -> Option<PreparedSet> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}
