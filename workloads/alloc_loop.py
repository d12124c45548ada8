"""Allocate and deallocate one mesh tensor N times; print the loop's own timing as JSON.

Used by the benchmark: the loop is timed by the workload itself, so every configuration
(untraced, bare uprobe, tracer, SHM tracker) is measured the same way. Besides the whole loop,
it times each chunk of CHUNK pairs: on a shared VM a whole loop's time carries whatever else
ran meanwhile (a steal, a collection, another process), and the median chunk does not.

usage: alloc_loop.py N [ROWS COLS [OUT]]   (OUT: also write the timing JSON to this file)
       alloc_loop.py --serve ROWS COLS     (blocks on request: the benchmark's in-process
                                            comparison, see below)

With --serve the process waits for a line on stdin before it opens the mesh (so whoever
launched it can start tracing it first), then runs one timed block of N pairs per line "N" it
reads, answering each with a JSON line; it closes the mesh at end of input. One process, one
memory layout: the configurations the benchmark switches between blocks differ only in what
they switch.
"""
import json
import sys
import time

import ttnn

CHUNK = 100
shape = ttnn.Shape([1, 1, 32, 32])


def pair(mesh):
    t = ttnn.allocate_tensor_on_device(shape, ttnn.bfloat16, ttnn.TILE_LAYOUT, mesh, ttnn.DRAM_MEMORY_CONFIG)
    ttnn.deallocate(t)


def timed(mesh, n):
    """Runs n pairs; returns (whole seconds, median seconds per pair over full chunks)."""
    chunks = []
    clock = time.perf_counter
    start = clock()
    done = 0
    while done < n:
        k = min(CHUNK, n - done)
        t0 = clock()
        for _ in range(k):
            # Inline, not pair(): a Python call per pair would add a microsecond to each.
            t = ttnn.allocate_tensor_on_device(shape, ttnn.bfloat16, ttnn.TILE_LAYOUT, mesh, ttnn.DRAM_MEMORY_CONFIG)
            ttnn.deallocate(t)
        if k == CHUNK:
            chunks.append(clock() - t0)
        done += k
    elapsed = clock() - start
    chunks.sort()
    median_pair = chunks[len(chunks) // 2] / CHUNK if chunks else elapsed / max(n, 1)
    return elapsed, median_pair


def open_warm(rows, cols):
    mesh = ttnn.open_mesh_device(ttnn.MeshShape(rows, cols))
    # Warm up (first allocations build caches).
    for _ in range(10):
        pair(mesh)
    return mesh


def serve(rows, cols):
    if not sys.stdin.readline():
        return
    mesh = open_warm(rows, cols)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        n = int(line)
        elapsed, median_pair = timed(mesh, n)
        print(json.dumps({"pairs": n, "seconds": elapsed, "median_chunk_pair_seconds": median_pair}), flush=True)
    ttnn.close_mesh_device(mesh)


def main():
    if sys.argv[1] == "--serve":
        serve(int(sys.argv[2]), int(sys.argv[3]))
        return
    n = int(sys.argv[1])
    rows, cols = (int(sys.argv[2]), int(sys.argv[3])) if len(sys.argv) > 3 else (2, 4)
    mesh = open_warm(rows, cols)
    # On stderr, so the timing line stays the last line of stdout (the loss test waits for it).
    print("alloc_loop: timed loop starts", file=sys.stderr, flush=True)
    elapsed, median_pair = timed(mesh, n)
    chips = len(mesh.get_device_ids())
    ttnn.close_mesh_device(mesh)
    result = json.dumps({"pairs": n, "seconds": elapsed, "chips": chips, "median_chunk_pair_seconds": median_pair, "chunk": CHUNK})
    print(result, flush=True)
    if len(sys.argv) > 4:
        with open(sys.argv[4], "w") as f:
            f.write(result + "\n")


main()
