"""A seeded mix of real ttnn ops on the 2x4 mock mesh (matmul, add, relu, softmax, layer_norm,
transpose, layout changes, moves to height/width/block-sharded L1 and back), with explicit
deallocations, and ground truth after every step.

Usage: real_ops.py [--seed N] [--ops N] [--interleaved] [--hold-at K]

With --hold-at K the workload stops after step K (programs loaded, tensors live): it writes the
file named by $REAL_OPS_READY and waits for the file named by $REAL_OPS_GO (a tracer attaches
in between).

Every op runs at least once, then a seeded mix. `--interleaved` leaves out sharded outputs
(height/width/block-sharded L1, height/width-sharded DRAM tensors).

Ground truth (TRACER_GROUND_TRUTH=FILE), one entry per step, taken after the step (and a pause,
see below): `t_ns` (CLOCK_MONOTONIC, the clock of tracer's events), the op, the workload's own
count of live tensors, `ttnn.get_memory_view` per buffer type (one figure for the mesh: its
chips' allocators move in lockstep), and per chip the circular-buffer bytes tt-metal's SHM
tracker publishes for this process (record of this PID, u64 at +0x30; header chip id at 0x28;
records of 0x78 bytes from 0x350, pid at +0x08). tt-metal refreshes that figure when a program
registers with a device, at most every 100 ms per device (it skips updates in between), so the
workload pauses 120 ms before each op.
"""
import glob
import json
import os
import random
import struct
import sys
import time

import ttnn

TYPES = {"DRAM": ttnn.BufferType.DRAM, "L1": ttnn.BufferType.L1}
RECORDS, RECORD_LEN, PID, CB, CHIP = 0x350, 0x78, 0x08, 0x30, 0x28


def arg(name, default):
    a = sys.argv[1:]
    return int(a[a.index(name) + 1]) if name in a else default


def shm_cb_bytes():
    out = {}
    for path in glob.glob("/dev/shm/tt_device_*_memory"):
        try:
            data = open(path, "rb").read()
        except OSError:
            continue
        chip = struct.unpack_from("<I", data, CHIP)[0]
        for off in range(RECORDS, len(data) - RECORD_LEN + 1, RECORD_LEN):
            if struct.unpack_from("<Q", data, off + PID)[0] == os.getpid():
                out[str(chip)] = struct.unpack_from("<Q", data, off + CB)[0]
    return out


def memory_view(mesh):
    out = {}
    for name, t in TYPES.items():
        v = ttnn.get_memory_view(mesh, t)
        out[name] = v.num_banks * v.total_bytes_allocated_per_bank
    return out


def dram_sharded(kind, shape):
    """A DRAM sharded memory config over 4 DRAM banks."""
    h, w = shape[-2], shape[-1]
    grid = ttnn.CoreRangeSet({ttnn.CoreRange(ttnn.CoreCoord(0, 0), ttnn.CoreCoord(3, 0))})
    if kind == "dram_height":
        spec = ttnn.ShardSpec(grid, [h // 4, w], ttnn.ShardOrientation.ROW_MAJOR)
        layout = ttnn.TensorMemoryLayout.HEIGHT_SHARDED
    else:
        spec = ttnn.ShardSpec(grid, [h, w // 4], ttnn.ShardOrientation.ROW_MAJOR)
        layout = ttnn.TensorMemoryLayout.WIDTH_SHARDED
    return ttnn.MemoryConfig(layout, ttnn.BufferType.DRAM, spec)


def sharded(kind, shape, mesh):
    """An L1 sharded memory config over a grid that divides `shape` (tiles of 32)."""
    h, w = shape[-2], shape[-1]
    if kind == "height":
        grid = ttnn.CoreRangeSet({ttnn.CoreRange(ttnn.CoreCoord(0, 0), ttnn.CoreCoord(3, 0))})
        spec = ttnn.ShardSpec(grid, [h // 4, w], ttnn.ShardOrientation.ROW_MAJOR)
        layout = ttnn.TensorMemoryLayout.HEIGHT_SHARDED
    elif kind == "width":
        grid = ttnn.CoreRangeSet({ttnn.CoreRange(ttnn.CoreCoord(0, 0), ttnn.CoreCoord(1, 0))})
        spec = ttnn.ShardSpec(grid, [h, w // 2], ttnn.ShardOrientation.ROW_MAJOR)
        layout = ttnn.TensorMemoryLayout.WIDTH_SHARDED
    else:
        grid = ttnn.CoreRangeSet({ttnn.CoreRange(ttnn.CoreCoord(0, 0), ttnn.CoreCoord(1, 1))})
        spec = ttnn.ShardSpec(grid, [h // 2, w // 2], ttnn.ShardOrientation.ROW_MAJOR)
        layout = ttnn.TensorMemoryLayout.BLOCK_SHARDED
    return ttnn.MemoryConfig(layout, ttnn.BufferType.L1, spec)


def main():
    rng = random.Random(arg("--seed", 1))
    n_ops = arg("--ops", 16)
    hold_at = arg("--hold-at", 0)
    mesh = ttnn.open_mesh_device(ttnn.MeshShape(2, 4))
    chips = list(mesh.get_device_ids())
    steps = []
    live = []
    counts = {"tensors_allocated": 0, "tensors_deallocated": 0}

    def new(shape, memory=ttnn.DRAM_MEMORY_CONFIG, layout=ttnn.TILE_LAYOUT):
        t = ttnn.allocate_tensor_on_device(ttnn.Shape(shape), ttnn.bfloat16, layout, mesh, memory)
        counts["tensors_allocated"] += 1
        return t

    def record(op):
        steps.append(
            {
                "op": op,
                "t_ns": time.monotonic_ns(),
                "live_tensors": len(live),
                "memory_view": memory_view(mesh),
                "cb": shm_cb_bytes(),
                **counts,
            }
        )
        print(f"real_ops: step {len(steps)} op={op}", file=sys.stderr, flush=True)

    def drop(t):
        ttnn.deallocate(t)
        counts["tensors_deallocated"] += 1

    shapes = [[1, 1, 128, 128], [1, 1, 256, 128], [1, 1, 128, 256]]
    ops = ["matmul", "add", "relu", "softmax", "layer_norm", "transpose", "to_l1",
           "height", "width", "block", "dram_height", "dram_width", "row_major", "free"]
    if "--interleaved" in sys.argv[1:]:
        ops = [o for o in ops if o not in ("height", "width", "block", "dram_height", "dram_width")]
    # Every op once (in a seeded order), then a seeded mix.
    first = rng.sample(ops, len(ops))
    for n in range(max(n_ops, len(ops))):
        op = first[n] if n < len(first) else rng.choice(ops)
        shape = rng.choice(shapes)
        time.sleep(0.12)
        a = new(shape)
        if op == "matmul":
            b = new([1, 1, shape[-1], 128])
            out = ttnn.matmul(a, b, memory_config=rng.choice([ttnn.DRAM_MEMORY_CONFIG, ttnn.L1_MEMORY_CONFIG]))
            drop(b)
        elif op == "add":
            b = new(shape, ttnn.L1_MEMORY_CONFIG)
            out = ttnn.add(a, b)
            drop(b)
        elif op == "relu":
            out = ttnn.relu(a, memory_config=ttnn.L1_MEMORY_CONFIG)
        elif op == "softmax":
            out = ttnn.softmax(a, dim=-1)
        elif op == "layer_norm":
            out = ttnn.layer_norm(a)
        elif op == "transpose":
            out = ttnn.transpose(a, -2, -1)
        elif op == "to_l1":
            out = ttnn.to_memory_config(a, ttnn.L1_MEMORY_CONFIG)
        elif op in ("height", "width", "block"):
            out = ttnn.to_memory_config(a, sharded(op, shape, mesh))
        elif op in ("dram_height", "dram_width"):
            out = new(shape, dram_sharded(op, shape))
        elif op == "row_major":
            out = ttnn.to_layout(a, ttnn.ROW_MAJOR_LAYOUT)
        else:
            out = None
        drop(a)
        if out is not None:
            live.append(out)
        # Keep a few live: free some at random (the oldest first, or a random one).
        while len(live) > 4 or (live and rng.random() < 0.25):
            drop(live.pop(rng.randrange(len(live))))
        record(op)
        if len(steps) == hold_at:
            with open(os.environ["REAL_OPS_READY"], "w") as f:
                f.write(str(os.getpid()))
            while not os.path.exists(os.environ["REAL_OPS_GO"]):
                time.sleep(0.02)
    while live:
        drop(live.pop())
    time.sleep(0.12)
    record("free_all")
    ttnn.close_mesh_device(mesh)
    out = os.environ.get("TRACER_GROUND_TRUTH")
    if out:
        with open(out, "w") as f:
            json.dump({"chips": chips, "steps": steps}, f)


if __name__ == "__main__":
    main()
