"""A ttnn process to attach to mid-run (attach tests, attach-latency benchmark).

Phase 1 allocates DRAM tensors on a 2x4 mesh, then writes the --ready file and waits for the
--go file (the tracer attaches in between). Phase 2 allocates DRAM and L1 tensors, frees some
tensors from phase 1 (buffers the tracer never saw allocated) and one from phase 2, writes the
ground truth, and ends with the mesh still open (os._exit), so what the process held at exit
is what tt-metal reports at the end.

Phase-1 tensors are (1,1,1024,1024) bf16 tiles: 2 MiB per chip, a whole number of pages per DRAM
bank, so the allocator reserves exactly their size (the figure seeded from the SHM tracker).

Ground truth (--truth FILE or $TRACER_GROUND_TRUTH): what the workload did, from its own buffer
sizes, and `ttnn.get_memory_view` per chip type before and after.

With --odd-l1 (or ATTACH_TARGET_ODD_L1=1), phase 2 also allocates a row-major L1 tensor of 3 pages of 80 bytes: pages that
are not a multiple of the allocator's minimum block, on fewer pages than banks.

usage: attach_target.py [--ready F] [--go F] [--before N] [--after N] [--free-before K] [--odd-l1]
                        [--truth F]
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


def arg(args, name, default):
    return args[args.index(name) + 1] if name in args else default


def alloc(mesh, shape, mem, layout=ttnn.TILE_LAYOUT):
    t = ttnn.allocate_tensor_on_device(ttnn.Shape(shape), ttnn.bfloat16, layout, mesh, mem)
    kind = "DRAM" if mem == ttnn.DRAM_MEMORY_CONFIG else "L1"
    return t, kind, t.buffer_num_pages() * t.buffer_page_size()


def requested(tensors):
    out = {k: 0 for k in TYPES}
    for _, kind, size in tensors:
        out[kind] += size
    return out


def run(args):
    ready, go = arg(args, "--ready", None), arg(args, "--go", None)
    before, after = int(arg(args, "--before", "3")), int(arg(args, "--after", "4"))
    free_before = int(arg(args, "--free-before", "1"))
    truth_path = arg(args, "--truth", os.environ.get("TRACER_GROUND_TRUTH"))

    mesh = ttnn.open_mesh_device(ttnn.MeshShape(2, 4))
    chips = list(mesh.get_device_ids())
    old = [alloc(mesh, [1, 1, 1024, 1024], ttnn.DRAM_MEMORY_CONFIG) for _ in range(before)]
    before_truth = {"tensors": before, "requested": requested(old), "memory_view": memory_view(mesh)}
    print(f"pid {os.getpid()} ready: {before} tensors allocated", flush=True)
    if ready:
        with open(ready, "w") as f:
            f.write(str(os.getpid()))
    while go and not os.path.exists(go):
        time.sleep(0.02)

    new = []
    for i in range(after):
        if i % 2 == 0:
            new.append(alloc(mesh, [1, 1, 512, 1024], ttnn.DRAM_MEMORY_CONFIG))
        else:
            new.append(alloc(mesh, [1, 1, 64, 64 * (i + 1)], ttnn.L1_MEMORY_CONFIG))
    if "--odd-l1" in args or os.environ.get("ATTACH_TARGET_ODD_L1"):
        new.append(alloc(mesh, [1, 1, 3, 40], ttnn.L1_MEMORY_CONFIG, ttnn.ROW_MAJOR_LAYOUT))
    freed_old = old[:free_before]
    for t, _, _ in freed_old:
        ttnn.deallocate(t)
    freed_new = new[:1]
    for t, _, _ in freed_new:
        ttnn.deallocate(t)
    live_old, live_new = old[free_before:], new[1:]
    truth = {
        "pid": os.getpid(),
        "chips": chips,
        "before": before_truth,
        "after": {
            "allocations": len(new),
            "deallocations": len(freed_new),
            "pre_attach_frees": len(freed_old),
            "pre_attach_free_requested": sum(s for _, _, s in freed_old),
        },
        "live_buffers": len(live_old) + len(live_new),
        "live_requested": requested(live_old + live_new),
        "live_requested_since_attach": requested(live_new),
        "memory_view_at_end": memory_view(mesh),
    }
    if truth_path:
        with open(truth_path, "w") as f:
            json.dump(truth, f)
    print(f"pid {os.getpid()} done: {truth['memory_view_at_end']}", flush=True)
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    run(sys.argv[1:])
