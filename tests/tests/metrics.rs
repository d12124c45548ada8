//! `--metrics`: a real Prometheus server scrapes tracer while a ttnn workload holds tensors on
//! the 8-chip mock mesh; what Prometheus stored must equal what tt-metal reported itself.
use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use tracer_tests::*;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A plain HTTP/1.0 GET; returns the body.
fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?;
    (status == "200").then(|| body.to_string())
}

fn percent_encode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'-' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

struct KillOnDrop(Child);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_prometheus(dir: &Path, target_port: u16) -> (KillOnDrop, u16) {
    let port = free_port();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: tracer\n    \
             static_configs:\n      - targets: ['127.0.0.1:{target_port}']\n"
        ),
    )
    .unwrap();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus not installed: run scripts/setup.sh --all");
    (KillOnDrop(child), port)
}

/// Per chip, the value Prometheus holds for `selector` (instant query).
fn query(port: u16, selector: &str) -> std::collections::BTreeMap<i64, u64> {
    let body = http_get(
        port,
        &format!("/api/v1/query?query={}", percent_encode(selector)),
    )
    .unwrap_or_default();
    let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    v["data"]["result"]
        .as_array()
        .map(|r| {
            r.iter()
                .map(|s| {
                    (
                        s["metric"]["device"].as_str().unwrap().parse().unwrap(),
                        s["value"][1].as_str().unwrap().parse().unwrap(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn prometheus_scrapes_the_per_chip_ledger() {
    let dir = tempdir();
    let metrics_port = free_port();
    let mut cmd = tracer();
    cmd.args(["run", "--quiet", "--metrics"])
        .arg(format!("127.0.0.1:{metrics_port}"))
        .stdout(Stdio::null());
    let held = Held::new(&mut cmd, &dir);
    let tracer = KillOnDrop(cmd.spawn().unwrap());
    let (_prometheus, prom_port) = start_prometheus(&dir, metrics_port);
    let truth = held.wait();
    let (pid, chips) = (truth.pid, truth.chips.clone());
    assert_eq!(chips.len(), 8);
    let start = Instant::now();

    // Prometheus scrapes every second; wait until it has seen the held tensors.
    let mut last = Default::default();
    let mut matched = false;
    while start.elapsed() < Duration::from_secs(90) && !matched {
        matched = ["DRAM", "L1"].iter().all(|t| {
            let got = query(
                prom_port,
                &format!(
                    "tracer_device_memory_bytes{{pid=\"{pid}\",type=\"{t}\",figure=\"reserved\"}}"
                ),
            );
            let want = if *t == "DRAM" { truth.dram } else { truth.l1 };
            let ok = got.len() == 8 && chips.iter().all(|c| got.get(c) == Some(&want));
            last = got;
            ok
        });
        if !matched {
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    assert!(
        matched,
        "Prometheus never held get_memory_view DRAM {} / L1 {} on all 8 chips; last answer {last:?}",
        truth.dram,
        truth.l1
    );
    let buffers = query(
        prom_port,
        &format!("tracer_device_live_buffers{{pid=\"{pid}\"}}"),
    );
    assert!(
        chips.iter().all(|c| buffers.get(c) == Some(&4)),
        "{buffers:?}"
    );

    held.release();
    let mut tracer = tracer;
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = tracer.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "tracer did not exit after the workload"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "{status}");
}

#[test]
fn metrics_address_in_use_is_a_clear_error() {
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let out = tracer()
        .args(["run", "--lib"])
        .arg(library("0.81.1"))
        .arg("--metrics")
        .arg(format!("127.0.0.1:{port}"))
        .args(["--", "true"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{err}"
    );
}
