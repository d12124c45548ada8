"""Allocate N tensors on the 2x4 mock mesh (DRAM and L1, tile and row-major, one height-sharded
L1 tensor), report what tt-metal says, then hold them (for `tracer snapshot`).

The tensors stay allocated until the file named by --release exists (or 120 s pass).

Ground truth (--truth FILE, written once the tensors are held): pid, chips, the number of
buffers, requested bytes per type (from the tensors' own page counts and sizes), and
`ttnn.get_memory_view` per type (num_banks * total_bytes_allocated_per_bank, per chip).

usage: held_buffers.py [--count N] [--truth F] [--release F]
"""
import json
import os
import sys
import time

import ttnn

TYPES = {"DRAM": ttnn.BufferType.DRAM, "L1": ttnn.BufferType.L1}


def arg(args, name, default):
    return args[args.index(name) + 1] if name in args else default


def main(args):
    count = int(arg(args, "--count", "20"))
    truth_path = arg(args, "--truth", None)
    release = arg(args, "--release", "")
    mesh = ttnn.open_mesh_device(ttnn.MeshShape(2, 4))
    dram, l1 = ttnn.DRAM_MEMORY_CONFIG, ttnn.L1_MEMORY_CONFIG
    shapes = [
        ([1, 1, 64, 64], ttnn.TILE_LAYOUT, dram),
        ([3, 37, 45], ttnn.ROW_MAJOR_LAYOUT, dram),
        ([1, 1, 32, 320], ttnn.TILE_LAYOUT, l1),
        ([50, 50], ttnn.ROW_MAJOR_LAYOUT, l1),
        ([1, 1, 256, 128], ttnn.TILE_LAYOUT, dram),
    ]
    tensors, requested = [], {k: 0 for k in TYPES}
    sharded = ttnn.create_sharded_memory_config(
        (1, 1, 256, 64),
        core_grid=ttnn.CoreGrid(y=2, x=4),
        strategy=ttnn.ShardStrategy.HEIGHT,
    )
    plan = [(s, lay, mem) for i in range(count) for s, lay, mem in [shapes[i % len(shapes)]]]
    plan.append(([1, 1, 256, 64], ttnn.TILE_LAYOUT, sharded))
    for shape, layout, mem in plan:
        t = ttnn.allocate_tensor_on_device(ttnn.Shape(shape), ttnn.bfloat16, layout, mesh, mem)
        tensors.append(t)
        kind = "DRAM" if mem == dram else "L1"
        requested[kind] += t.buffer_num_pages() * t.buffer_page_size()
    view = {}
    for name, t in TYPES.items():
        v = ttnn.get_memory_view(mesh, t)
        view[name] = v.num_banks * v.total_bytes_allocated_per_bank
    truth = {
        "pid": os.getpid(),
        "chips": list(mesh.get_device_ids()),
        "buffers": len(tensors),
        "requested": requested,
        "memory_view": view,
    }
    if truth_path:
        with open(truth_path + ".tmp", "w") as f:
            json.dump(truth, f)
        os.rename(truth_path + ".tmp", truth_path)
    print(json.dumps(truth), flush=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (release and os.path.exists(release)):
        time.sleep(0.05)
    for t in tensors:
        ttnn.deallocate(t)
    ttnn.close_mesh_device(mesh)


if __name__ == "__main__":
    main(sys.argv[1:])
