"""Run the same real ops N times on the 2x4 mock mesh; print the loop's own timing as JSON.

Used by the benchmark (`cargo xtask bench --real-ops`): each iteration runs matmul, softmax
and add (L1 outputs, programs cached after the warm-up) and deallocates their outputs, so the
timed loop is the steady state of a model: op dispatch, output allocation and free.
usage: op_loop.py N [OUT]   (OUT: also write the timing JSON to this file)
"""
import json
import sys
import time

import ttnn

n = int(sys.argv[1])
mesh = ttnn.open_mesh_device(ttnn.MeshShape(2, 4))
shape = ttnn.Shape([1, 1, 128, 128])
a = ttnn.allocate_tensor_on_device(shape, ttnn.bfloat16, ttnn.TILE_LAYOUT, mesh, ttnn.DRAM_MEMORY_CONFIG)
b = ttnn.allocate_tensor_on_device(shape, ttnn.bfloat16, ttnn.TILE_LAYOUT, mesh, ttnn.DRAM_MEMORY_CONFIG)
L1 = ttnn.L1_MEMORY_CONFIG


def iteration():
    for out in (ttnn.matmul(a, b, memory_config=L1), ttnn.softmax(a, dim=-1, memory_config=L1),
                ttnn.add(a, b, memory_config=L1)):
        ttnn.deallocate(out)


# Warm up: builds (stand-in) kernels and fills the program cache.
for _ in range(3):
    iteration()
start = time.perf_counter()
for _ in range(n):
    iteration()
elapsed = time.perf_counter() - start
ttnn.deallocate(a)
ttnn.deallocate(b)
ttnn.close_mesh_device(mesh)
result = json.dumps({"ops": 3 * n, "seconds": elapsed})
print(result, flush=True)
if len(sys.argv) > 2:
    with open(sys.argv[2], "w") as f:
        f.write(result + "\n")
