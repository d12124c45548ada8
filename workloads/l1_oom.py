"""Allocates L1 tensors on a 2x4 mesh until tt-metal's allocator refuses (out of memory).

Ground truth (TRACER_GROUND_TRUTH=FILE, JSON): the mesh's chips, the size of each tensor, the
number that fit, tt-metal's exception text, and `ttnn.get_memory_view` after every step and at
the moment of the refusal. Then every tensor is deallocated and the mesh closed.

Options (argv): --shape R C   tensor shape (bf16, tile layout), default 1024 1024
"""
import json
import os
import sys

import ttnn


def reserved(mesh, t):
    v = ttnn.get_memory_view(mesh, t)
    return v.num_banks * v.total_bytes_allocated_per_bank


def main():
    args = sys.argv[1:]
    rows, cols = 1024, 1024
    if "--shape" in args:
        i = args.index("--shape")
        rows, cols = int(args[i + 1]), int(args[i + 2])
    mesh = ttnn.open_mesh_device(ttnn.MeshShape(2, 4))
    chips = list(mesh.get_device_ids())
    l1 = ttnn.L1_MEMORY_CONFIG
    tensors, samples, sizes, ids = [], [reserved(mesh, ttnn.BufferType.L1)], [], []
    error = None
    for _ in range(100000):
        try:
            t = ttnn.allocate_tensor_on_device(
                ttnn.Shape([1, 1, rows, cols]), ttnn.bfloat16, ttnn.TILE_LAYOUT, mesh, l1
            )
        except Exception as e:  # tt-metal's TT_THROW surfaces as RuntimeError
            error = str(e)
            break
        tensors.append(t)
        sizes.append(t.buffer_num_pages() * t.buffer_page_size())
        ids.append(t.buffer_address())
        samples.append(reserved(mesh, ttnn.BufferType.L1))
    at_oom = reserved(mesh, ttnn.BufferType.L1)
    print(f"{len(tensors)} L1 tensors fit; then: {(error or '').splitlines()[0][:200]}", flush=True)
    truth = {
        "chips": chips,
        "allocated": len(tensors),
        "sizes": sizes,
        "buffer_ids": ids,
        "error": error,
        "l1_at_oom": at_oom,
        "l1_samples": samples,
        "l1_max": max(samples),
    }
    for t in tensors:
        ttnn.deallocate(t)
    truth["l1_after_free"] = reserved(mesh, ttnn.BufferType.L1)
    if os.environ.get("TRACER_GROUND_TRUTH"):
        with open(os.environ["TRACER_GROUND_TRUTH"], "w") as f:
            json.dump(truth, f)
    ttnn.close_mesh_device(mesh)


if __name__ == "__main__":
    main()
