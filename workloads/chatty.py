"""Print marker lines on stdout and stderr before, while and after holding tensors on the 2x4
mock mesh, the way a chatty ttnn program logs.

For `tracer top -- CMD`: none of these lines may reach the full-screen table; they belong in
the log tracer names. Every line starts with "chatty-out" or "chatty-err". The tensors stay
allocated, and the printing goes on, until the file named by TRACER_RELEASE exists (or 60 s
pass).

Ground truth (TRACER_GROUND_TRUTH=FILE, written once the tensors are held): pid, chips, and
whether stdin was a terminal.
"""
import json
import os
import sys
import time


def say(n, what):
    print(f"chatty-out {n} {what}", flush=True)
    print(f"chatty-err {n} {what}", file=sys.stderr, flush=True)


for n in range(20):
    say(n, "before the mesh opens")

import ttnn

mesh = ttnn.open_mesh_device(ttnn.MeshShape(2, 4))
tensors = [
    ttnn.allocate_tensor_on_device(ttnn.Shape(s), ttnn.bfloat16, ttnn.TILE_LAYOUT, mesh, mem)
    for s, mem in [
        ([1, 1, 1024, 1024], ttnn.DRAM_MEMORY_CONFIG),
        ([1, 1, 64, 64], ttnn.L1_MEMORY_CONFIG),
    ]
]
truth = {
    "pid": os.getpid(),
    "chips": list(mesh.get_device_ids()),
    "stdin_tty": os.isatty(0),
}
out = os.environ.get("TRACER_GROUND_TRUTH")
if out:
    with open(out + ".tmp", "w") as f:
        json.dump(truth, f)
    os.rename(out + ".tmp", out)
say("held", json.dumps(truth))

release = os.environ.get("TRACER_RELEASE", "")
deadline = time.monotonic() + 60
n = 0
while time.monotonic() < deadline and not (release and os.path.exists(release)):
    say(n, "tensors held")
    n += 1
    time.sleep(0.05)
for t in tensors:
    ttnn.deallocate(t)
ttnn.close_mesh_device(mesh)
say("done", "mesh closed")
