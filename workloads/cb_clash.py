"""A program refused because its circular buffers clash with L1 buffers, from a real op.

Fills L1 on the 2x4 mock mesh with [1,1,3520,32] bf16 tile tensors until the allocator refuses,
frees the last few, then runs `ttnn.softmax` on a DRAM tensor: its circular buffers would grow
from the bottom of L1 into the lowest L1 tensor, and the runtime throws "Statically allocated
circular (or dataflow) buffers in program P clash with L1 buffers on core range R. L1 buffer
allocated at A and static ... region ends at E".

Ground truth (TRACER_GROUND_TRUTH=FILE): the runtime's message, the numbers in it, and which of
the workload's own tensors sits at address A (its size and the order it was allocated in).
"""
import json
import os
import re
import sys

import ttnn

mesh = ttnn.open_mesh_device(ttnn.MeshShape(2, 4))
held = []
while True:
    try:
        held.append(
            ttnn.allocate_tensor_on_device(
                ttnn.Shape([1, 1, 3520, 32]), ttnn.bfloat16, ttnn.TILE_LAYOUT, mesh,
                ttnn.L1_MEMORY_CONFIG,
            )
        )
    except RuntimeError:
        break
for _ in range(8):
    ttnn.deallocate(held.pop())
x = ttnn.allocate_tensor_on_device(
    ttnn.Shape([1, 1, 64, 2048]), ttnn.bfloat16, ttnn.TILE_LAYOUT, mesh, ttnn.DRAM_MEMORY_CONFIG
)
message = None
try:
    ttnn.softmax(x, dim=-1)
except RuntimeError as e:
    message = str(e)
print(f"cb_clash: {len(held)} L1 tensors held; softmax refused: {message is not None}", file=sys.stderr)
truth = {"chips": list(mesh.get_device_ids()), "held": len(held), "message": message}
if message:
    m = re.search(
        r"in program (\d+) clash with L1 buffers on core range (.*?)\. L1 buffer allocated at (\d+)"
        r" and static \w+ buffer region ends at (\d+)",
        message,
    )
    if m:
        address = int(m.group(3))
        truth.update(
            program=int(m.group(1)),
            core_range=m.group(2),
            l1_buffer_address=address,
            cb_region_end=int(m.group(4)),
            holder=[
                {"index": i, "size": t.buffer_num_pages() * t.buffer_page_size()}
                for i, t in enumerate(held)
                if t.buffer_address() == address
            ],
        )
for t in held:
    ttnn.deallocate(t)
ttnn.deallocate(x)
ttnn.close_mesh_device(mesh)
out = os.environ.get("TRACER_GROUND_TRUTH")
if out:
    with open(out, "w") as f:
        json.dump(truth, f)
