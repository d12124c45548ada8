"""Allocate device tensors from known lines of this file, and say which line made which.

Each allocation is made on a line that also reads its own line number (`inspect`), so the
ground truth is the interpreter's own word, not a number written into the test. Some tensors
are freed again (their lines must not show among the buffers still held); the rest stay
allocated when the mesh closes (outstanding, `freed_by_close`).

With `ops`, real ops (matmul, add, softmax) run too, each on its own line, and their outputs
are held: the op name a site reports is checked against the op called on that line.

Ground truth (TRACER_GROUND_TRUTH=FILE): {"file": this file, "held": [{"line", "function",
"op", "count"}], "freed": [lines]}, where `count` is the number of tensors still held from
that line.
"""
import inspect
import json
import os
import sys
import time

import ttnn

here = os.path.abspath(__file__)
held = {}
freed = []
keep = []


def note(line, function, op, tensor):
    key = (line, function, op)
    held[key] = held.get(key, 0) + 1
    keep.append(tensor)


def line():
    return inspect.currentframe().f_back.f_lineno


def weights(mesh):
    """Allocations inside a function: the site names it."""
    for _ in range(3):
        t = ttnn.allocate_tensor_on_device(ttnn.Shape([1, 1, 256, 256]), ttnn.bfloat16, ttnn.TILE_LAYOUT, mesh, ttnn.DRAM_MEMORY_CONFIG); note(line(), "weights", "ttnn.allocate_tensor_on_device", t)  # noqa: E702


def scratch(mesh):
    """Allocated and freed again: never outstanding."""
    t = ttnn.allocate_tensor_on_device(ttnn.Shape([1, 1, 64, 64]), ttnn.bfloat16, ttnn.TILE_LAYOUT, mesh, ttnn.L1_MEMORY_CONFIG); freed.append(line())  # noqa: E702
    ttnn.deallocate(t)


def ops(mesh):
    a = ttnn.allocate_tensor_on_device(ttnn.Shape([1, 1, 64, 64]), ttnn.bfloat16, ttnn.TILE_LAYOUT, mesh, ttnn.DRAM_MEMORY_CONFIG); note(line(), "ops", "ttnn.allocate_tensor_on_device", a)  # noqa: E702
    b = ttnn.matmul(a, a); note(line(), "ops", "ttnn.matmul", b)  # noqa: E702
    c = ttnn.add(a, b); note(line(), "ops", "ttnn.add", c)  # noqa: E702
    d = ttnn.softmax(c, dim=-1); note(line(), "ops", "ttnn.softmax", d)  # noqa: E702


mesh = ttnn.open_mesh_device(ttnn.MeshShape(2, 4))
t = ttnn.allocate_tensor_on_device(ttnn.Shape([1, 1, 512, 512]), ttnn.bfloat16, ttnn.TILE_LAYOUT, mesh, ttnn.DRAM_MEMORY_CONFIG); note(line(), "<module>", "ttnn.allocate_tensor_on_device", t)  # noqa: E702
weights(mesh)
scratch(mesh)
t = ttnn.allocate_tensor_on_device(ttnn.Shape([1, 1, 32, 32]), ttnn.bfloat16, ttnn.TILE_LAYOUT, mesh, ttnn.L1_MEMORY_CONFIG); note(line(), "<module>", "ttnn.allocate_tensor_on_device", t)  # noqa: E702
if "ops" in sys.argv[1:]:
    ops(mesh)

truth = {
    "file": here,
    "held": [{"line": k[0], "function": k[1], "op": k[2], "count": n} for k, n in held.items()],
    "freed": freed,
}
out = os.environ.get("TRACER_GROUND_TRUTH")
if out:
    with open(out, "w") as f:
        json.dump(truth, f)
print(json.dumps(truth), flush=True)
# The tracer reads the code objects of the frames it saw from this process a moment later
# (when it drains its ring buffer); the interpreter frees this module's own at exit.
time.sleep(0.5)
ttnn.close_mesh_device(mesh)
