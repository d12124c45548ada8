"""Real ops that keep placing programs (and their circular buffers) on the 2x4 mock mesh, and
releasing them, while a tracer attaches: the mid-run read of the programs races with both.

Busy phase, without pauses: ops (matmul, add, softmax) over a seeded mix of shapes and memory
configs (each new combination is a new program, placed on every chip), the program cache
cleared every few ops (its programs are destroyed: their CBs leave the chips). Once busy, the
workload writes its PID to $CB_CHURN_READY; when $CB_CHURN_GO appears it stops clearing and
runs --after more ops. Then quiet: a 120 ms pause (tt-metal's SHM tracker refreshes its CB
figure at most every 100 ms per device, when a program with CBs registers or unregisters), one
op not run before: an add of bfloat8_b tensors (its program is new and has CBs in both layout
eras, so it registers and the figure is refreshed; a new shape alone may reuse a cached
program, and 0.81.1's relu has none), and the ground truth
(TRACER_GROUND_TRUTH=FILE): `t_ns` (CLOCK_MONOTONIC) and per chip the SHM tracker's CB bytes
for this process, in real_ops.py's shape (`chips`, `steps`). Then it closes the mesh.

Usage: cb_churn.py [--seed N] [--after N]
"""
import json
import os
import random
import sys
import time

import ttnn

from real_ops import arg, memory_view, shm_cb_bytes


def main():
    rng = random.Random(arg("--seed", 5))
    after = arg("--after", 40)
    mesh = ttnn.open_mesh_device(ttnn.MeshShape(2, 4))
    chips = list(mesh.get_device_ids())
    configs = [ttnn.DRAM_MEMORY_CONFIG, ttnn.L1_MEMORY_CONFIG]
    sizes = [64, 96, 128, 160, 192, 256]

    def new(shape, dtype=ttnn.bfloat16):
        return ttnn.allocate_tensor_on_device(
            ttnn.Shape(shape), dtype, ttnn.TILE_LAYOUT, mesh, ttnn.DRAM_MEMORY_CONFIG
        )

    def op(h, w, kind, memory, dtype=ttnn.bfloat16):
        a = new([1, 1, h, w], dtype)
        if kind == "matmul":
            b = new([1, 1, w, 64])
            out = ttnn.matmul(a, b, memory_config=memory)
            ttnn.deallocate(b)
        elif kind == "add":
            b = new([1, 1, h, w], dtype)
            out = ttnn.add(a, b, memory_config=memory)
            ttnn.deallocate(b)
        else:
            out = ttnn.softmax(a, dim=-1, memory_config=memory)
        ttnn.deallocate(out)
        ttnn.deallocate(a)

    def random_op():
        op(rng.choice(sizes), rng.choice(sizes), rng.choice(["matmul", "add", "softmax"]),
           rng.choice(configs))

    ready, go = os.environ["CB_CHURN_READY"], os.environ["CB_CHURN_GO"]
    n = 0
    while not os.path.exists(go):
        random_op()
        n += 1
        if n % 7 == 0:
            mesh.clear_program_cache()
        if n == 10:
            with open(ready, "w") as f:
                f.write(str(os.getpid()))
    for _ in range(after):
        random_op()
    time.sleep(0.12)
    # An op no step above ran: its program is new, has CBs, and registers.
    op(64, 64, "add", ttnn.L1_MEMORY_CONFIG, ttnn.bfloat8_b)
    step = {"op": "quiet", "t_ns": time.monotonic_ns(), "cb": shm_cb_bytes(),
            "memory_view": memory_view(mesh), "live_tensors": 0, "busy_ops": n + after}
    print(f"cb_churn: {n} ops before go, {after} after", file=sys.stderr, flush=True)
    ttnn.close_mesh_device(mesh)
    out = os.environ.get("TRACER_GROUND_TRUTH")
    if out:
        with open(out, "w") as f:
            json.dump({"chips": chips, "steps": [step]}, f)


if __name__ == "__main__":
    main()
