"""A height-sharded L1 tensor on the 2x4 mock mesh (4 shards of 64x64 bf16 tiles).

Ground truth (TRACER_GROUND_TRUTH=FILE): chips, the buffer's size (pages * page size) and
`ttnn.get_memory_view` L1 while it is held. tt-metal reserves a whole shard in every L1 bank.
"""
import json
import os

import ttnn

mesh = ttnn.open_mesh_device(ttnn.MeshShape(2, 4))
grid = ttnn.CoreRangeSet({ttnn.CoreRange(ttnn.CoreCoord(0, 0), ttnn.CoreCoord(3, 0))})
spec = ttnn.ShardSpec(grid, [64, 64], ttnn.ShardOrientation.ROW_MAJOR)
config = ttnn.MemoryConfig(ttnn.TensorMemoryLayout.HEIGHT_SHARDED, ttnn.BufferType.L1, spec)
t = ttnn.allocate_tensor_on_device(ttnn.Shape([1, 1, 256, 64]), ttnn.bfloat16, ttnn.TILE_LAYOUT, mesh, config)
v = ttnn.get_memory_view(mesh, ttnn.BufferType.L1)
truth = {
    "chips": list(mesh.get_device_ids()),
    "size": t.buffer_num_pages() * t.buffer_page_size(),
    "memory_view_l1": v.num_banks * v.total_bytes_allocated_per_bank,
}
ttnn.deallocate(t)
ttnn.close_mesh_device(mesh)
out = os.environ.get("TRACER_GROUND_TRUTH")
if out:
    with open(out, "w") as f:
        json.dump(truth, f)
