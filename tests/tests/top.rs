//! `tracer top --batch`: the live per-chip table, checked against what tt-metal reports while a
//! ttnn workload holds tensors on the 8-chip mock mesh.
use std::{process::Stdio, time::Duration};

use tracer_tests::*;

/// Chip rows (chip -> (DRAM, L1) reserved) of every snapshot in `text`.
fn snapshots(text: &str) -> Vec<std::collections::BTreeMap<i64, (u64, u64)>> {
    let mut out = Vec::new();
    for block in text.split("tracer top: ").skip(1) {
        let mut chips = std::collections::BTreeMap::new();
        let mut lines = block.lines().skip(1);
        let Some(header) = lines.next().filter(|h| h.trim_start().starts_with("CHIP")) else {
            continue;
        };
        // Columns by name: the table may grow columns.
        let header: Vec<&str> = header.split_whitespace().collect();
        let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
        let (dram, l1) = (col("DRAM"), col("L1"));
        // "PEAK L1" is one column of two words.
        let width = header.len() - 1;
        for l in lines {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.first() == Some(&"PID") || f.len() != width {
                break;
            }
            chips.insert(
                f[0].parse().unwrap(),
                (f[dram].parse().unwrap(), f[l1].parse().unwrap()),
            );
        }
        out.push(chips);
    }
    out
}

#[test]
fn batch_snapshots_match_memory_view_on_every_chip() {
    let dir = tempdir();
    let mut cmd = tracer();
    cmd.args(["top", "--batch", "--interval", "0.2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let held = Held::new(&mut cmd, &dir);
    let child = cmd.spawn().unwrap();
    let truth = held.wait();
    // A few snapshots while the tensors are held.
    std::thread::sleep(Duration::from_millis(1000));
    held.release();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let want = (truth.dram, truth.l1);
    let chips = truth.chips;
    let text = String::from_utf8_lossy(&out.stdout);
    let shots = snapshots(&text);
    assert!(shots.len() >= 3, "too few snapshots:\n{text}");
    assert!(
        shots
            .iter()
            .any(|s| s.len() == 8 && chips.iter().all(|c| s.get(c) == Some(&want))),
        "no snapshot shows get_memory_view {want:?} on all 8 chips:\n{text}"
    );
    // After the workload freed everything, the last snapshot is empty on every chip.
    let last = shots.last().unwrap();
    assert!(last.values().all(|v| *v == (0, 0)), "{last:?}");
}

/// Per chip (DRAM, L1) reserved of `pid` in every snapshot's process table.
fn process_rows(text: &str, pid: u64) -> Vec<std::collections::BTreeMap<i64, (u64, u64)>> {
    text.split("tracer top: ")
        .skip(1)
        .map(|block| {
            block
                .lines()
                .skip_while(|l| !l.trim_start().starts_with("PID"))
                .skip(1)
                .filter_map(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    (f.len() >= 8 && f[0] == pid.to_string()).then(|| {
                        (
                            f[1].parse().unwrap(),
                            (f[3].parse().unwrap(), f[4].parse().unwrap()),
                        )
                    })
                })
                .collect()
        })
        .collect()
}

#[test]
fn top_all_shows_a_process_started_after_it_exactly() {
    let dir = tempdir();
    let tracer = tracer()
        .args([
            "top",
            "--all",
            "--batch",
            "--interval",
            "0.2",
            "--duration",
            "30",
            "--lib",
        ])
        .arg(library("0.81.1"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The probes are on the library file from the start; give them a moment.
    std::thread::sleep(Duration::from_millis(1500));
    let (mut cmd, held) = Held::alone(&dir);
    let mut workload = cmd.stdout(Stdio::null()).spawn().unwrap();
    let truth = held.wait();
    std::thread::sleep(Duration::from_millis(1000));
    held.release();
    assert!(workload.wait().unwrap().success());
    std::thread::sleep(Duration::from_millis(500));
    nix_kill_int(tracer.id());
    let out = tracer.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let rows = process_rows(&text, truth.pid);
    assert!(
        rows.iter().any(|r| r.len() == 8
            && truth
                .chips
                .iter()
                .all(|c| r.get(c) == Some(&(truth.dram, truth.l1)))),
        "PID {} never showed get_memory_view ({}, {}) on all 8 chips:\n{text}\n{}",
        truth.pid,
        truth.dram,
        truth.l1,
        String::from_utf8_lossy(&out.stderr)
    );
}

fn nix_kill_int(pid: u32) {
    let _ = std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status();
}

/// A tmux server of its own (own socket), so the test neither sees nor disturbs anyone's
/// sessions; killed when dropped, however the test ends.
struct Tmux {
    socket: String,
    /// kill-server leaves the socket file behind.
    socket_path: Option<std::path::PathBuf>,
}

impl Tmux {
    const SESSION: &'static str = "top";

    /// Runs `script` with sh in a detached COLS x ROWS pane.
    fn start(script: &std::path::Path, cols: u16, rows: u16) -> Self {
        let mut tmux = Self {
            socket: format!("tracer-test-{}", std::process::id()),
            socket_path: None,
        };
        let status = tmux
            .command()
            .args(["new-session", "-d", "-s", Self::SESSION])
            .args(["-x", &cols.to_string(), "-y", &rows.to_string()])
            .arg(format!("sh {}", sh_quote(&script.display().to_string())))
            .status()
            .expect("tmux missing: run scripts/setup.sh --all");
        assert!(status.success(), "tmux new-session failed");
        let out = tmux
            .command()
            .args(["display-message", "-p", "#{socket_path}"])
            .output()
            .unwrap();
        tmux.socket_path = Some(String::from_utf8_lossy(&out.stdout).trim().into())
            .filter(|p: &std::path::PathBuf| !p.as_os_str().is_empty());
        tmux
    }

    fn command(&self) -> std::process::Command {
        let mut c = std::process::Command::new("tmux");
        c.args(["-L", &self.socket]);
        c
    }

    /// The pane as it looks now; `history` adds what scrolled off (wrapped lines joined).
    fn capture(&self, history: bool) -> String {
        let mut c = self.command();
        c.args(["capture-pane", "-p", "-t", Self::SESSION]);
        if history {
            c.args(["-J", "-S", "-"]);
        }
        let out = c.output().unwrap();
        assert!(out.status.success(), "tmux capture-pane failed");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn send_keys(&self, keys: &str) {
        let status = self
            .command()
            .args(["send-keys", "-t", Self::SESSION, keys])
            .status()
            .unwrap();
        assert!(status.success(), "tmux send-keys failed");
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self
            .command()
            .arg("kill-server")
            .stderr(Stdio::null())
            .status();
        if let Some(p) = &self.socket_path {
            let _ = std::fs::remove_file(p);
        }
    }
}

fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Polls `f` every 200 ms until it gives a value, for at most `secs` seconds.
fn poll<T>(secs: u64, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let start = std::time::Instant::now();
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if start.elapsed() > Duration::from_secs(secs) {
            return None;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// (chip, processes, buffers) of the rows of the per-chip table on a captured screen.
fn screen_chip_rows(screen: &str) -> Vec<(i64, u64, u64)> {
    screen
        .lines()
        .skip_while(|l| !l.contains("reserved per chip"))
        .take_while(|l| !l.contains("per process and chip"))
        .filter_map(|l| {
            let f: Vec<&str> = l.trim_matches(['│', ' ']).split_whitespace().collect();
            Some((
                f.first()?.parse().ok()?,
                f.get(1)?.parse().ok()?,
                f.get(2)?.parse().ok()?,
            ))
        })
        .collect()
}

/// The log path the footer names: "output of python chatty.py: PATH".
fn footer_log(screen: &str) -> Option<String> {
    screen
        .lines()
        .find_map(|l| l.trim().strip_prefix("output of python chatty.py: "))
        .map(|p| p.trim().to_string())
}

/// Everything `workloads/chatty.py` prints starts with one of these.
const MARKERS: [&str; 2] = ["chatty-out", "chatty-err"];

#[test]
fn screen_shows_only_the_table_and_the_command_output_goes_to_a_log() {
    let dir = tempdir();
    let truth = dir.join("truth.json");
    let release = dir.join("release");
    let rc = dir.join("rc");
    // Whatever happens to the test, the workload stops holding its tensors.
    struct Release<'a>(&'a std::path::Path);
    impl Drop for Release<'_> {
        fn drop(&mut self) {
            let _ = std::fs::write(self.0, b"");
        }
    }
    let _release = Release(&release);

    let env = tracer();
    let mut script = String::new();
    if let Some(cwd) = env.get_current_dir() {
        script += &format!("cd {}\n", sh_quote(&cwd.display().to_string()));
    }
    for (k, v) in env.get_envs() {
        if let Some(v) = v {
            script += &format!(
                "export {}={}\n",
                k.to_string_lossy(),
                sh_quote(&v.to_string_lossy())
            );
        }
    }
    for (k, v) in [
        ("TRACER_GROUND_TRUTH", &truth),
        ("TRACER_RELEASE", &release),
    ] {
        script += &format!("export {k}={}\n", sh_quote(&v.display().to_string()));
    }
    let argv = [
        tracer_bin(),
        "top".into(),
        "--".into(),
        python("0.81.1"),
        workload("chatty.py"),
    ];
    let argv: Vec<String> = argv
        .iter()
        .map(|a| sh_quote(&a.display().to_string()))
        .collect();
    // The pane stays open after tracer exits, so the lines it printed then can be read.
    script += &format!(
        "{}\necho $? > {}\nexec sleep 600\n",
        argv.join(" "),
        sh_quote(&rc.display().to_string())
    );
    let script_path = dir.join("top.sh");
    std::fs::write(&script_path, script).unwrap();
    let tmux = Tmux::start(&script_path, 140, 40);

    // The table, once the workload holds its two tensors on all 8 chips and is printing (or
    // as soon as its output shows: that garbles the table for good).
    let held = |screen: &str| {
        let rows = screen_chip_rows(screen);
        rows.len() == 8
            && rows
                .iter()
                .all(|&(_, procs, buffers)| (procs, buffers) == (1, 2))
    };
    let mut last = String::new();
    poll(120, || {
        last = tmux.capture(false);
        let printed = MARKERS.iter().any(|m| last.contains(m));
        ((truth.exists() && held(&last)) || printed).then_some(())
    })
    .unwrap_or_else(|| panic!("the table never showed the held tensors:\n{last}"));
    let on_screen = |screen: &str| {
        for m in MARKERS {
            assert!(
                !screen.contains(m),
                "the command's output is on the screen:\n{screen}"
            );
        }
    };
    on_screen(&last);
    let chips =
        sorted_chips(&serde_json::from_str(&std::fs::read_to_string(&truth).unwrap()).unwrap());
    assert_eq!(chips, (0..8).collect::<Vec<_>>());

    // The workload keeps printing ~40 lines a second; look at the screen a few times.
    let mut log = None;
    for _ in 0..5 {
        std::thread::sleep(Duration::from_millis(300));
        let screen = tmux.capture(false);
        on_screen(&screen);
        let first = screen.lines().next().unwrap_or("");
        assert!(
            first.starts_with("tracer top: 1 process(es)") && first.ends_with("(q: quit)"),
            "no header line:\n{screen}"
        );
        assert!(
            screen.contains("CHIP   PROCS  BUFFERS  DRAM") && held(&screen),
            "no chip table:\n{screen}"
        );
        let named =
            footer_log(&screen).unwrap_or_else(|| panic!("no log in the footer:\n{screen}"));
        assert_eq!(log.get_or_insert_with(|| named.clone()), &named);
        last = screen;
    }
    eprintln!("{last}");
    let log = log.unwrap();
    assert!(
        log.starts_with(&std::env::temp_dir().display().to_string()),
        "{log}"
    );

    tmux.send_keys("q");
    // Quitting leaves the workload running untraced; let it finish now.
    std::thread::sleep(Duration::from_millis(500));
    std::fs::write(&release, b"").unwrap();
    let code = poll(120, || std::fs::read_to_string(&rc).ok())
        .unwrap_or_else(|| panic!("tracer did not exit after q:\n{}", tmux.capture(true)));
    let after = tmux.capture(true);
    assert_eq!(code.trim(), "0", "{after}");
    for m in MARKERS {
        assert!(
            !after.contains(m),
            "the command's output reached the terminal:\n{after}"
        );
    }
    let said = after
        .lines()
        .find_map(|l| {
            l.strip_prefix("tracer: output of ")?
                .rsplit_once(": ")
                .map(|(_, p)| p.trim().to_string())
        })
        .unwrap_or_else(|| panic!("tracer did not say where the output went:\n{after}"));
    assert_eq!(said, log);

    let text = poll(60, || {
        let t = std::fs::read_to_string(&log).ok()?;
        t.contains("chatty-err done").then_some(t)
    })
    .unwrap_or_else(|| panic!("the workload's output is not in {log}"));
    for m in MARKERS {
        for line in [
            "0 before the mesh opens",
            "0 tensors held",
            "done mesh closed",
        ] {
            assert!(
                text.contains(&format!("{m} {line}\n")),
                "{m} {line} not in {log}:\n{text}"
            );
        }
    }
    assert!(
        text.contains(r#""stdin_tty": false"#),
        "the command's stdin was the terminal:\n{text}"
    );
    std::fs::remove_file(&log).unwrap();
}
