"""The seed scenario on an 8-chip mock mesh (bundled demo and test workload).

An (8,8,512,512) bfloat16 tensor split over the 8 chips of a 2x4 mesh is 4 MiB per chip; it is
allocated as its per-chip shard (1,8,512,512) on every chip of the mesh, which is the device
memory the split tensor occupies. A few more DRAM and L1 tensors follow (tile and row-major,
sizes that are not bank-aligned), then everything is deallocated explicitly.

Ground truth: with TRACER_GROUND_TRUTH=FILE the workload writes, as JSON, what it did and what
tt-metal itself reports (`ttnn.get_memory_view`) at the moments the tests compare with.

Options (argv): --leave N     keep the last N tensors allocated
                --exit-open   end the process with os._exit while the mesh is still open
                --close-with-live  close the mesh without deallocating the kept tensors
"""
import json
import os
import sys
import time

import ttnn

TYPES = {"DRAM": ttnn.BufferType.DRAM, "L1": ttnn.BufferType.L1}


def memory_view(mesh):
    out = {}
    for name, t in TYPES.items():
        v = ttnn.get_memory_view(mesh, t)
        out[name] = v.num_banks * v.total_bytes_allocated_per_bank
    return out


def main():
    args = sys.argv[1:]
    leave = int(args[args.index("--leave") + 1]) if "--leave" in args else 0
    exit_open = "--exit-open" in args
    close_with_live = "--close-with-live" in args

    mesh = ttnn.open_mesh_device(ttnn.MeshShape(2, 4))
    chips = list(mesh.get_device_ids())
    print(f"mesh 2x4 opened: chips {chips}", flush=True)
    dram = ttnn.DRAM_MEMORY_CONFIG
    l1 = ttnn.L1_MEMORY_CONFIG
    plan = [
        ("seed shard (1,8,512,512) bf16 tile", [1, 8, 512, 512], ttnn.TILE_LAYOUT, dram),
        ("DRAM (1,1,1024,1024) bf16 tile", [1, 1, 1024, 1024], ttnn.TILE_LAYOUT, dram),
        ("DRAM (100,100) bf16 row-major", [100, 100], ttnn.ROW_MAJOR_LAYOUT, dram),
        ("DRAM (3,37,45) bf16 row-major", [3, 37, 45], ttnn.ROW_MAJOR_LAYOUT, dram),
        ("L1 (1,1,64,64) bf16 tile", [1, 1, 64, 64], ttnn.TILE_LAYOUT, l1),
        ("L1 (1,1,32,320) bf16 tile", [1, 1, 32, 320], ttnn.TILE_LAYOUT, l1),
        ("L1 (50,50) bf16 row-major", [50, 50], ttnn.ROW_MAJOR_LAYOUT, l1),
    ]
    tensors, record = [], []
    views = []
    for name, shape, layout, mem in plan:
        t = ttnn.allocate_tensor_on_device(ttnn.Shape(shape), ttnn.bfloat16, layout, mesh, mem)
        tensors.append(t)
        record.append({
            "name": name,
            "type": "DRAM" if mem == dram else "L1",
            "buffer_id": t.buffer_address(),
            "size": t.buffer_num_pages() * t.buffer_page_size(),
        })
        views.append(memory_view(mesh))
        print(f"allocated {name}: {record[-1]['size']} bytes per chip at {record[-1]['buffer_id']}", flush=True)

    at_peak = memory_view(mesh)
    freed = 0
    for t in tensors[: len(tensors) - leave]:
        ttnn.deallocate(t)
        freed += 1
        views.append(memory_view(mesh))
    at_end = memory_view(mesh)
    truth = {
        "chips": chips,
        "tensors": record,
        "allocations": len(tensors),
        "deallocations": freed,
        "memory_view_at_peak": at_peak,
        "memory_view_at_end": at_end,
        "memory_view_max": {k: max(v[k] for v in views) for k in TYPES},
        "kept": record[len(tensors) - leave:],
    }
    if os.environ.get("TRACER_GROUND_TRUTH"):
        with open(os.environ["TRACER_GROUND_TRUTH"], "w") as f:
            json.dump(truth, f)
    print(f"deallocated {freed} tensors; tt-metal reports per chip: {at_end}", flush=True)
    if exit_open:
        sys.stdout.flush()
        # A tracer with --python-stacks reads the code objects of the last allocations' frames
        # from this process: give it a moment before they vanish with it.
        time.sleep(0.2)
        os._exit(0)
    if close_with_live:
        ttnn.close_mesh_device(mesh)
        return
    ttnn.close_mesh_device(mesh)


if __name__ == "__main__":
    main()
