//! No probe of ours stays in the kernel after the tracer exits, however it exits.
use std::{
    io::{BufRead, BufReader},
    process::{Child, Stdio},
    time::{Duration, Instant},
};

use tracer_tests::*;

/// Starts `tracer run` on a workload that sleeps; returns once the probes are attached.
fn start_sleeper(secs: u32) -> (Child, u32) {
    let mut child = tracer()
        .args(["run", "--quiet", "--"])
        .arg(python("0.81.1"))
        .args(["-c", &format!("import ttnn, time; time.sleep({secs})")])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    let pid = loop {
        line.clear();
        assert!(err.read_line(&mut line).unwrap() > 0, "tracer ended early");
        if let Some(rest) = line.strip_prefix("tracer: tracing PID ") {
            break rest.split_whitespace().next().unwrap().parse().unwrap();
        }
    };
    std::thread::spawn(move || for _ in err.lines() {});
    assert!(
        !our_bpf_programs().is_empty(),
        "probes attached while tracing"
    );
    (child, pid)
}

fn assert_clean() {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !our_bpf_programs().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        our_bpf_programs(),
        Vec::<String>::new(),
        "BPF programs left behind"
    );
    assert!(
        !tracefs_uprobes().contains("tt_metal"),
        "uprobe left in tracefs"
    );
}

fn signal(pid: u32, sig: i32) {
    std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
}

#[test]
fn clean_after_normal_exit() {
    let (mut child, _) = start_sleeper(1);
    assert!(child.wait().unwrap().success());
    assert_clean();
}

#[test]
fn clean_after_ctrl_c() {
    let (mut child, target) = start_sleeper(30);
    signal(child.id(), 2);
    let st = child.wait().unwrap();
    assert_eq!(st.code(), Some(130), "Ctrl-C exit code");
    assert_clean();
    signal(target, 9);
}

#[test]
fn clean_when_child_is_killed() {
    let (mut child, target) = start_sleeper(30);
    signal(target, 9);
    let st = child.wait().unwrap();
    assert_eq!(
        st.code(),
        Some(128 + 9),
        "tracer exits with the child's status"
    );
    assert_clean();
}

#[test]
fn clean_when_tracer_is_killed() {
    let (mut child, target) = start_sleeper(30);
    signal(child.id(), 9);
    child.wait().unwrap();
    assert_clean();
    signal(target, 9);
}
