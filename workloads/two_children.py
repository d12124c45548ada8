"""A parent that starts two ttnn child processes and never touches ttnn itself.

Child 1 is a Python multiprocessing child started by fork; child 2 is a new interpreter started
by subprocess (fork + exec). Each runs attach_target.py's workload (no waiting) with its own
sizes and writes its ground truth; the parent gathers them into $TRACER_GROUND_TRUTH as
{"children": [...]}.
"""
import json
import multiprocessing
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def forked_child(truth):
    sys.path.insert(0, HERE)
    import attach_target

    attach_target.run(["--before", "2", "--after", "3", "--truth", truth])


def main():
    out = os.environ.get("TRACER_GROUND_TRUTH")
    base = out or os.path.join("/tmp", f"two_children.{os.getpid()}")
    truths = [base + ".child1", base + ".child2"]
    p = multiprocessing.get_context("fork").Process(target=forked_child, args=(truths[0],))
    p.start()
    q = subprocess.Popen(
        [sys.executable, os.path.join(HERE, "attach_target.py"), "--before", "4", "--after", "5",
         "--free-before", "2", "--truth", truths[1]]
    )
    p.join()
    q.wait()
    children = []
    for t in truths:
        with open(t) as f:
            children.append(json.load(f))
        os.unlink(t)
    print(f"children {[c['pid'] for c in children]} done; exit codes {p.exitcode} {q.returncode}", flush=True)
    if out:
        with open(out, "w") as f:
            json.dump({"children": children}, f)
    sys.exit(p.exitcode or q.returncode)


if __name__ == "__main__":
    main()
