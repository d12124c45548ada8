//! Prometheus exporter (`--metrics ADDR`): the ledger's live figures per process, chip and
//! buffer type, in the text exposition format, at `http://ADDR/metrics`.
//!
//! The session renders a new page after each batch of events; scrapes only copy it out, so a
//! slow or hostile client can never stall the event loop.
use std::{
    fmt::Write as _,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use anyhow::{Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::ledger::{BufferType, Ledger};

/// What the exporter serves; shared with the connection tasks.
pub struct Metrics {
    page: Arc<Mutex<String>>,
    pub addr: SocketAddr,
    rendered_at: Option<std::time::Instant>,
}

/// How often the page is re-rendered while events flow.
const RENDER_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

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
    /// Binds `spec` and serves from the current tokio runtime.
    pub fn serve(spec: &str) -> Result<Self> {
        let addr = parse_addr(spec)?;
        let listener = std::net::TcpListener::bind(addr)
            .with_context(|| format!("--metrics: cannot listen on {addr}"))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let page = Arc::new(Mutex::new(render(&Ledger::new(), 0)));
        let shared = page.clone();
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(answer(conn, shared.clone()));
            }
        });
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
        self.rendered_at = Some(std::time::Instant::now());
    }
}

/// Answers one HTTP/1.x request: the page for `GET /metrics`, 404 otherwise.
async fn answer(mut conn: tokio::net::TcpStream, page: Arc<Mutex<String>>) {
    let mut req = Vec::new();
    let mut buf = [0u8; 1024];
    // Read the request head only; bounded so a client cannot make us buffer without end.
    while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < 16 * 1024 {
        match tokio::time::timeout(std::time::Duration::from_secs(5), conn.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => req.extend_from_slice(&buf[..n]),
            _ => return,
        }
    }
    let line = String::from_utf8_lossy(&req);
    let target = line.split_whitespace().nth(1).unwrap_or("");
    let (status, body) = if target == "/metrics" || target.starts_with("/metrics?") {
        ("200 OK", page.lock().unwrap().clone())
    } else {
        ("404 Not Found", "try /metrics\n".to_string())
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = conn.write_all(head.as_bytes()).await;
    let _ = conn.write_all(body.as_bytes()).await;
    let _ = conn.shutdown().await;
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The exposition page for a ledger. Pure: unit-tested without a server.
pub fn render(ledger: &Ledger, lost_events: u64) -> String {
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, rows: &[(String, u64)]| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (labels, v) in rows {
            let _ = writeln!(out, "{name}{{{labels}}} {v}");
        }
    };
    let (mut bytes, mut peaks, mut buffers, mut allocs, mut frees, mut exited) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    for p in ledger.processes.values() {
        let proc_labels = format!("pid=\"{}\",command=\"{}\"", p.pid, escape(&p.command));
        exited.push((proc_labels.clone(), u64::from(p.exited)));
        for (chip, d) in &p.devices {
            let dev = format!("{proc_labels},device=\"{chip}\"");
            buffers.push((dev.clone(), d.live_buffers));
            allocs.push((dev.clone(), d.allocations));
            frees.push((dev.clone(), d.deallocations));
            for t in BufferType::ALL {
                for (figure, now, peak) in [
                    ("requested", d.requested.get(t), d.peak_requested.get(t)),
                    ("reserved", d.reserved.get(t), d.peak_reserved.get(t)),
                ] {
                    let l = format!("{dev},type=\"{}\",figure=\"{figure}\"", t.name());
                    bytes.push((l.clone(), now));
                    peaks.push((l, peak));
                }
            }
        }
    }
    family(
        "tracer_device_memory_bytes",
        "gauge",
        "Device memory a process holds on a chip now (requested by the program, or reserved by the allocator).",
        &bytes,
    );
    family(
        "tracer_device_memory_peak_bytes",
        "gauge",
        "High-water mark of tracer_device_memory_bytes during the session.",
        &peaks,
    );
    family(
        "tracer_device_live_buffers",
        "gauge",
        "Buffers a process holds on a chip now.",
        &buffers,
    );
    family(
        "tracer_device_allocations_total",
        "counter",
        "Buffer allocations charged to a chip.",
        &allocs,
    );
    family(
        "tracer_device_deallocations_total",
        "counter",
        "Buffer deallocations charged to a chip.",
        &frees,
    );
    family(
        "tracer_process_exited",
        "gauge",
        "1 once the traced process has exited.",
        &exited,
    );
    family(
        "tracer_lost_events_total",
        "counter",
        "Events the kernel dropped because the ring buffer was full.",
        &[(String::new(), lost_events)],
    );
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
                command: "python \"q\".py".into(),
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
                "tracer_device_memory_bytes{{pid=\"42\",command=\"python \\\"q\\\".py\",device=\"{chip}\",type=\"DRAM\",figure=\"requested\"}} 1000"
            );
            assert!(page.contains(&want), "{want} not in\n{page}");
        }
        assert!(page.contains("tracer_lost_events_total{} 3"));
        assert!(page.contains("# TYPE tracer_device_allocations_total counter"));
    }
}
