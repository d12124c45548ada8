//! Prometheus exporter (`--metrics ADDR`): the ledger's live figures per process, chip and
//! buffer type, at `http://ADDR/metrics`, encoded by `prometheus-client` (OpenMetrics text) and
//! served by `tiny_http`.
//!
//! The session renders a new page after each batch of events; scrapes only copy it out, so a
//! slow or hostile client can never stall the event loop.
use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{anyhow, Context, Result};
use prometheus_client::{
    encoding::{text::encode, EncodeLabelSet},
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

use crate::ledger::{BufferType, Ledger};

/// What the exporter serves; the page is shared with the HTTP thread.
pub struct Metrics {
    page: Arc<Mutex<String>>,
    pub addr: SocketAddr,
    rendered_at: Option<Instant>,
}

/// How often the page is re-rendered while events flow.
const RENDER_EVERY: Duration = Duration::from_millis(250);

/// The content type of the OpenMetrics text `prometheus-client` writes.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// `PORT`, `:PORT` or `HOST:PORT`; a bare port binds to 127.0.0.1 (metrics name processes and
/// their command lines: exposing them beyond this host is an explicit choice).
pub fn parse_addr(spec: &str) -> Result<SocketAddr> {
    let spec = spec.trim();
    let full = if spec.chars().all(|c| c.is_ascii_digit()) {
        format!("127.0.0.1:{spec}")
    } else if let Some(port) = spec.strip_prefix(':') {
        format!("127.0.0.1:{port}")
    } else {
        spec.to_string()
    };
    full.parse().with_context(|| {
        format!("--metrics {spec:?}: expected PORT, :PORT or HOST:PORT (e.g. 127.0.0.1:9464)")
    })
}

impl Metrics {
    /// Binds `spec` and answers scrapes from a thread of its own.
    pub fn serve(spec: &str) -> Result<Self> {
        let addr = parse_addr(spec)?;
        let server = tiny_http::Server::http(addr)
            .map_err(|e| anyhow!("{e}"))
            .with_context(|| format!("--metrics: cannot listen on {addr}"))?;
        let addr = server
            .server_addr()
            .to_ip()
            .context("--metrics: the listener has no IP address")?;
        let page = Arc::new(Mutex::new(render(&Ledger::new(), 0)));
        let shared = page.clone();
        std::thread::Builder::new()
            .name("metrics".into())
            .spawn(move || {
                for request in server.incoming_requests() {
                    answer(request, &shared);
                }
            })
            .context("--metrics: cannot start the HTTP thread")?;
        Ok(Self {
            page,
            addr,
            rendered_at: None,
        })
    }

    /// Re-renders the page from `ledger`, at most every [`RENDER_EVERY`] unless `now`.
    pub fn publish(&mut self, ledger: &Ledger, lost_events: impl FnOnce() -> u64, now: bool) {
        if !now && self.rendered_at.is_some_and(|t| t.elapsed() < RENDER_EVERY) {
            return;
        }
        let text = render(ledger, lost_events());
        *self.page.lock().unwrap() = text;
        self.rendered_at = Some(Instant::now());
    }
}

/// The page for `GET /metrics`, 404 otherwise.
fn answer(request: tiny_http::Request, page: &Mutex<String>) {
    let path = request.url().split('?').next().unwrap_or("");
    let response = if path == "/metrics" {
        let body = page.lock().unwrap().clone();
        tiny_http::Response::from_string(body).with_header(header(CONTENT_TYPE))
    } else {
        tiny_http::Response::from_string("try /metrics\n")
            .with_status_code(404)
            .with_header(header("text/plain; charset=utf-8"))
    };
    // A client that hangs up early is its own problem.
    let _ = request.respond(response);
}

fn header(content_type: &str) -> tiny_http::Header {
    tiny_http::Header::from_bytes("Content-Type", content_type).expect("a valid header")
}

/// A label value in the exposition format's escaping.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProcessLabels {
    pid: u32,
    command: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChipLabels {
    pid: u32,
    command: String,
    device: i32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MemoryLabels {
    pid: u32,
    command: String,
    device: i32,
    r#type: String,
    figure: &'static str,
}

/// The exposition page for a ledger. Pure: unit-tested without a server. A fresh registry per
/// page, since processes and chips come and go with the ledger.
pub fn render(ledger: &Ledger, lost_events: u64) -> String {
    let bytes = Family::<MemoryLabels, Gauge>::default();
    let peaks = Family::<MemoryLabels, Gauge>::default();
    let buffers = Family::<ChipLabels, Gauge>::default();
    let cbs = Family::<ChipLabels, Gauge>::default();
    let cb_peaks = Family::<ChipLabels, Gauge>::default();
    let allocs = Family::<ChipLabels, Counter>::default();
    let frees = Family::<ChipLabels, Counter>::default();
    let exited = Family::<ProcessLabels, Gauge>::default();
    let lost = Counter::<u64>::default();
    lost.inc_by(lost_events);
    let gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    for p in ledger.processes.values() {
        // prometheus-client writes label values as given: escape them here.
        let command = escape(&p.command);
        let process = ProcessLabels {
            pid: p.pid,
            command: command.clone(),
        };
        exited.get_or_create(&process).set(i64::from(p.exited));
        for (&chip, d) in &p.devices {
            let at = ChipLabels {
                pid: p.pid,
                command: command.clone(),
                device: chip,
            };
            buffers.get_or_create(&at).set(gauge(d.live_buffers));
            let cb = &d.circular_buffers;
            cbs.get_or_create(&at).set(gauge(cb.live_bytes));
            cb_peaks.get_or_create(&at).set(gauge(cb.peak_bytes));
            allocs.get_or_create(&at).inc_by(d.allocations);
            frees.get_or_create(&at).inc_by(d.deallocations);
            for t in BufferType::ALL {
                for (figure, now, peak) in [
                    ("requested", d.requested.get(t), d.peak_requested.get(t)),
                    ("reserved", d.reserved.get(t), d.peak_reserved.get(t)),
                ] {
                    let l = MemoryLabels {
                        pid: p.pid,
                        command: command.clone(),
                        device: chip,
                        r#type: t.name().to_string(),
                        figure,
                    };
                    bytes.get_or_create(&l).set(gauge(now));
                    peaks.get_or_create(&l).set(gauge(peak));
                }
            }
        }
    }
    let mut registry = Registry::default();
    registry.register(
        "tracer_device_memory_bytes",
        "Device memory a process holds on a chip now (requested by the program, or reserved by the allocator)",
        bytes,
    );
    registry.register(
        "tracer_device_memory_peak_bytes",
        "High-water mark of tracer_device_memory_bytes during the session",
        peaks,
    );
    registry.register(
        "tracer_device_live_buffers",
        "Buffers a process holds on a chip now",
        buffers,
    );
    registry.register(
        "tracer_circular_buffer_bytes",
        "L1 the circular buffers of a process's live programs hold on a chip, summed over cores",
        cbs,
    );
    registry.register(
        "tracer_circular_buffer_peak_bytes",
        "High-water mark of tracer_circular_buffer_bytes during the session",
        cb_peaks,
    );
    // Counters get their `_total` suffix from the encoder.
    registry.register(
        "tracer_device_allocations",
        "Buffer allocations charged to a chip",
        allocs,
    );
    registry.register(
        "tracer_device_deallocations",
        "Buffer deallocations charged to a chip",
        frees,
    );
    registry.register(
        "tracer_process_exited",
        "1 once the traced process has exited",
        exited,
    );
    registry.register(
        "tracer_lost_events",
        "Events the kernel dropped because the ring buffer was full",
        lost,
    );
    let mut out = String::new();
    encode(&mut out, &registry).expect("writing to a String cannot fail");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{BufferInfo, DeviceRef, Event, EventKind};

    #[test]
    fn addresses_default_to_loopback() {
        assert_eq!(parse_addr("9464").unwrap().to_string(), "127.0.0.1:9464");
        assert_eq!(parse_addr(":9464").unwrap().to_string(), "127.0.0.1:9464");
        assert_eq!(parse_addr("0.0.0.0:1").unwrap().to_string(), "0.0.0.0:1");
        assert!(parse_addr("nine").is_err());
    }

    #[test]
    fn page_has_a_series_per_chip_type_and_figure() {
        let mut l = Ledger::new();
        l.apply(&Event {
            ts_ns: 1,
            pid: 42,
            kind: EventKind::ProcessStart {
                command: "python \"q\".py \\".into(),
            },
        });
        l.apply(&Event {
            ts_ns: 2,
            pid: 42,
            kind: EventKind::Alloc {
                device: DeviceRef {
                    handle: 9,
                    chips: vec![1, 0],
                    mesh: true,
                },
                buffer: BufferInfo {
                    address: 64,
                    size: 1000,
                    page_size: 0,
                    kind: BufferType::Dram,
                    unique_id: 1,
                },
            },
        });
        let page = render(&l, 3);
        for chip in ["0", "1"] {
            let want = format!(
                "tracer_device_memory_bytes{{pid=\"42\",command=\"python \\\"q\\\".py \\\\\",device=\"{chip}\",type=\"DRAM\",figure=\"requested\"}} 1000"
            );
            assert!(page.contains(&want), "{want} not in\n{page}");
        }
        assert!(page.contains("tracer_lost_events_total 3"), "{page}");
        assert!(
            page.contains("# TYPE tracer_device_allocations counter"),
            "{page}"
        );
        assert!(
            page.contains("tracer_device_allocations_total{pid=\"42\""),
            "{page}"
        );
        assert!(page.ends_with("# EOF\n"), "{page}");
    }

    #[test]
    fn the_server_answers_metrics_and_404() {
        let mut m = Metrics::serve("127.0.0.1:0").unwrap();
        m.publish(&Ledger::new(), || 7, true);
        let get = |path: &str| {
            use std::io::{Read, Write};
            let mut s = std::net::TcpStream::connect(m.addr).unwrap();
            write!(
                s,
                "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
            .unwrap();
            let mut r = String::new();
            s.read_to_string(&mut r).unwrap();
            r
        };
        let ok = get("/metrics?x=1");
        assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
        assert!(ok.contains("openmetrics-text"), "{ok}");
        assert!(ok.contains("tracer_lost_events_total 7"), "{ok}");
        assert!(get("/").starts_with("HTTP/1.1 404"));
    }
}
