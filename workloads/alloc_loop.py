"""Allocate and deallocate one mesh tensor N times; print the loop's own timing as JSON.

Used by the benchmark: the loop is timed by the workload itself, so every configuration
(untraced, bare uprobe, tracer, SHM tracker) is measured the same way.
usage: alloc_loop.py N [ROWS COLS [OUT]]   (OUT: also write the timing JSON to this file)
"""
import json
import sys
import time

import ttnn

n = int(sys.argv[1])
rows, cols = (int(sys.argv[2]), int(sys.argv[3])) if len(sys.argv) > 3 else (2, 4)
mesh = ttnn.open_mesh_device(ttnn.MeshShape(rows, cols))
shape = ttnn.Shape([1, 1, 32, 32])
# Warm up (first allocations build caches).
for _ in range(10):
    ttnn.deallocate(ttnn.allocate_tensor_on_device(shape, ttnn.bfloat16, ttnn.TILE_LAYOUT, mesh, ttnn.DRAM_MEMORY_CONFIG))
# On stderr, so the timing line stays the last line of stdout (the loss test waits for it).
print("alloc_loop: timed loop starts", file=sys.stderr, flush=True)
start = time.perf_counter()
for _ in range(n):
    t = ttnn.allocate_tensor_on_device(shape, ttnn.bfloat16, ttnn.TILE_LAYOUT, mesh, ttnn.DRAM_MEMORY_CONFIG)
    ttnn.deallocate(t)
elapsed = time.perf_counter() - start
chips = len(mesh.get_device_ids())
ttnn.close_mesh_device(mesh)
result = json.dumps({"pairs": n, "seconds": elapsed, "chips": chips})
print(result, flush=True)
if len(sys.argv) > 4:
    with open(sys.argv[4], "w") as f:
        f.write(result + "\n")
