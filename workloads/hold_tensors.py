"""Allocate DRAM and L1 tensors on the 2x4 mock mesh, report what tt-metal says, then hold them.

For scrapers and attachers: the tensors stay allocated until the file named by TRACER_RELEASE
exists (or 60 s pass), then everything is deallocated and the mesh closed.

Ground truth (TRACER_GROUND_TRUTH=FILE, written once the tensors are held): pid, chips, and
`ttnn.get_memory_view` per buffer type (num_banks * total_bytes_allocated_per_bank, identical
on every chip of the mesh).
"""
import json
import os
import time

import ttnn

mesh = ttnn.open_mesh_device(ttnn.MeshShape(2, 4))
tensors = [
    ttnn.allocate_tensor_on_device(ttnn.Shape(s), ttnn.bfloat16, layout, mesh, mem)
    for s, layout, mem in [
        ([1, 1, 1024, 1024], ttnn.TILE_LAYOUT, ttnn.DRAM_MEMORY_CONFIG),
        ([100, 100], ttnn.ROW_MAJOR_LAYOUT, ttnn.DRAM_MEMORY_CONFIG),
        ([1, 1, 64, 64], ttnn.TILE_LAYOUT, ttnn.L1_MEMORY_CONFIG),
        ([50, 50], ttnn.ROW_MAJOR_LAYOUT, ttnn.L1_MEMORY_CONFIG),
    ]
]
view = {}
for name, t in {"DRAM": ttnn.BufferType.DRAM, "L1": ttnn.BufferType.L1}.items():
    v = ttnn.get_memory_view(mesh, t)
    view[name] = v.num_banks * v.total_bytes_allocated_per_bank
truth = {"pid": os.getpid(), "chips": list(mesh.get_device_ids()), "memory_view": view}
out = os.environ.get("TRACER_GROUND_TRUTH")
if out:
    with open(out + ".tmp", "w") as f:
        json.dump(truth, f)
    os.rename(out + ".tmp", out)
print(json.dumps(truth), flush=True)

release = os.environ.get("TRACER_RELEASE", "")
deadline = time.monotonic() + 60
while time.monotonic() < deadline and not (release and os.path.exists(release)):
    time.sleep(0.05)
for t in tensors:
    ttnn.deallocate(t)
ttnn.close_mesh_device(mesh)
