"""A small real model on the 2x4 mock mesh (or another, --mesh): an MLP block, an attention
block and a seeded mix of random real ops (needs the linking compiler stand-in of
scripts/setup.sh; kernels compute nothing, every buffer and circular buffer is the runtime's
own).

Weights are DRAM tensors replicated on every chip (allocate_tensor_on_device on a mesh puts
one copy on every chip); activations live in L1, interleaved and height/width/block sharded,
tile and row-major. Ops: matmul, linear, add (with broadcast), relu, softmax, layer_norm,
transpose, to_layout, to_memory_config, and an explicit ttnn.deallocate for every tensor the
workload creates. layer_norm only ever sees interleaved inputs (a sharded input segfaults the
runtime on the mock).

Ground truth (TRACER_GROUND_TRUTH=FILE, JSON, written at the end): after EVERY step (op,
allocation or deallocation) a record in "steps" with
  op, what            the ttnn call and the role of its result
  memory_view         per chip id, per buffer type DRAM and L1:
                      num_banks * total_bytes_allocated_per_bank of ttnn.get_memory_view(mesh,
                      type). A mesh has one lock-step allocator, and these releases expose no
                      per-chip IDevice to Python (MeshDevice has no get_devices), so the view
                      is the mesh's and the same number is recorded for every chip.
  shm                 per chip id, this process' record in tt-metal's SHM tracker (see below):
                      DRAM, L1, L1_SMALL, TRACE and CB bytes on that chip (an independent,
                      really per-chip source; {} when TT_METAL_SHM_TRACKING_DISABLED=1)
  live                the workload's own count of the tensors it holds and their buffer bytes
                      per chip by type (buffer_num_pages * buffer_page_size; a sharded buffer
                      reserves more in the allocator, see memory_view). Buffers an op makes
                      and frees internally are not counted here.
  allocations, deallocations
                      tensors the workload has created / deallocated so far (each is one
                      buffer per chip: multiply by len(chips) for per-mesh buffer counts)
  program_cache_entries, seconds
On stderr, one line per step: `real_model: step N op=NAME`.

tt-metal's SHM tracker (on unless TT_METAL_SHM_TRACKING_DISABLED=1) keeps one file per chip,
/dev/shm/tt_device_<chip unique id>_memory, a DeviceMemoryRegion (layout version 3 in ttnn
0.75.0 and 0.81.1; tt_metal/impl/profiler/memory_stats_shm.hpp). Little-endian offsets:
  0x00 u32 version (3)      0x04 u32 num_active_processes   0x08 u64 last_update_timestamp
  0x10 u32 reference_count  0x18 u64 board_serial  0x20 u64 asic_id  0x28 u32 device_id (chip)
  0x30 u64 total DRAM, 0x38 L1, 0x40 L1_SMALL, 0x48 TRACE, 0x50 CB (all processes)
  0x58 ChipStats[16], 0x30 bytes each: u32 chip_id, u32 is_remote, u64 DRAM, L1, L1_SMALL,
       TRACE, CB
  0x358 ProcessStats[64], 0x78 bytes each: +0x00 i32 pid (0 = free), +0x08 u64 DRAM,
       +0x10 L1, +0x18 L1_SMALL, +0x20 TRACE, +0x28 CB, +0x30 u64 last_update_timestamp,
       +0x38 char process_name[64]
  (sizeof 0x2180 with the struct's 64-byte alignment). Counted "from 0x350", the CB word is
  the u64 at +0x30 of a 0x78-byte stride: the same address, 0x380 + 0x78 * slot.
The CB word is Device::get_total_cb_allocated(): per core, the union of the L1 address ranges
of the circular buffers of every program of this process still registered on the chip
(programs in the program cache stay registered), summed over cores. It is refreshed only
when a program registers or unregisters on the chip, and at most once per 100 ms per chip
(a refresh inside that window is dropped, never retried), so the workload sleeps --settle
seconds (default 0.11) before every op. Ops that use 0.81.1's dataflow buffers instead of
circular buffers (matmul, relu, softmax, ... there) add nothing to it.

Options (argv): --seed N    seed of the random op mix (default 0)
                --ops N     number of random ops after the model (default 24)
                --settle S  seconds to sleep before each op (default 0.11; 0 = none)
                --mesh RxC  mesh shape (default 2x4; 8x4 or 4x8 with the 32-chip
                            fixtures/tt-cluster/blackhole_galaxy_32chip.yaml)
"""
import importlib.metadata
import json
import os
import random
import struct
import sys
import time

import ttnn

TYPES = {"DRAM": ttnn.BufferType.DRAM, "L1": ttnn.BufferType.L1}
TILE, RM = ttnn.TILE_LAYOUT, ttnn.ROW_MAJOR_LAYOUT
DRAM, L1 = ttnn.DRAM_MEMORY_CONFIG, ttnn.L1_MEMORY_CONFIG
TML = ttnn.TensorMemoryLayout

SHM_GLOB_DIR = "/dev/shm"
SHM_VERSION = 3
SHM_PROCESSES = 0x358
SHM_PROCESS_SIZE = 0x78
SHM_MAX_PROCESSES = 64


def shm_per_chip(pid):
    """This process' SHM tracker record on every chip: {chip id: {type: bytes}}."""
    out = {}
    try:
        names = os.listdir(SHM_GLOB_DIR)
    except OSError:
        return out
    for name in names:
        if not (name.startswith("tt_device_") and name.endswith("_memory")):
            continue
        try:
            with open(os.path.join(SHM_GLOB_DIR, name), "rb") as f:
                b = f.read()
        except OSError:
            continue
        if len(b) < SHM_PROCESSES + SHM_PROCESS_SIZE * SHM_MAX_PROCESSES:
            continue
        if struct.unpack_from("<I", b, 0)[0] != SHM_VERSION:
            continue
        chip = struct.unpack_from("<I", b, 0x28)[0]
        for slot in range(SHM_MAX_PROCESSES):
            o = SHM_PROCESSES + slot * SHM_PROCESS_SIZE
            if struct.unpack_from("<i", b, o)[0] == pid:
                dram, l1, l1_small, trace, cb = struct.unpack_from("<5Q", b, o + 0x08)
                out[str(chip)] = {"DRAM": dram, "L1": l1, "L1_SMALL": l1_small, "TRACE": trace, "CB": cb}
                break
    return out


def sharded(layout, grid_end, shard):
    grid = ttnn.CoreRangeSet({ttnn.CoreRange(ttnn.CoreCoord(0, 0), ttnn.CoreCoord(*grid_end))})
    spec = ttnn.ShardSpec(grid, shard, ttnn.ShardOrientation.ROW_MAJOR)
    return ttnn.MemoryConfig(layout, ttnn.BufferType.L1, spec)


class Run:
    def __init__(self, mesh, settle):
        self.mesh = mesh
        self.chips = list(mesh.get_device_ids())
        self.settle = settle
        self.pid = os.getpid()
        self.live = {}  # id(tensor) -> (tensor, buffer type, bytes per chip)
        self.allocations = 0
        self.deallocations = 0
        self.steps = []

    def view(self):
        per_type = {}
        for name, t in TYPES.items():
            v = ttnn.get_memory_view(self.mesh, t)
            per_type[name] = v.num_banks * v.total_bytes_allocated_per_bank
        return {str(c): dict(per_type) for c in self.chips}

    def record(self, op, what, seconds):
        live_bytes = {"DRAM": 0, "L1": 0}
        for _, kind, size in self.live.values():
            live_bytes[kind] += size
        step = {
            "step": len(self.steps),
            # CLOCK_MONOTONIC, the clock of tracer's events: a test replays a recording to here.
            "t_ns": time.monotonic_ns(),
            "op": op,
            "what": what,
            "memory_view": self.view(),
            "shm": shm_per_chip(self.pid),
            "live": {"tensors": len(self.live), "bytes": live_bytes},
            "allocations": self.allocations,
            "deallocations": self.deallocations,
            "program_cache_entries": self.mesh.num_program_cache_entries(),
            "seconds": round(seconds, 4),
        }
        self.steps.append(step)
        print(f"real_model: step {step['step']} op={op}", file=sys.stderr, flush=True)

    def op(self, name, what, fn):
        """Runs one ttnn call that returns a new tensor, accounts it, records the step."""
        if self.settle:
            time.sleep(self.settle)
        t0 = time.monotonic()
        t = fn()
        seconds = time.monotonic() - t0
        kind = "DRAM" if t.memory_config().buffer_type == ttnn.BufferType.DRAM else "L1"
        self.live[id(t)] = (t, kind, t.buffer_num_pages() * t.buffer_page_size())
        self.allocations += 1
        self.record(name, what, seconds)
        return t

    def alloc(self, what, shape, layout, mem):
        return self.op(
            "allocate_tensor_on_device",
            what,
            lambda: ttnn.allocate_tensor_on_device(ttnn.Shape(shape), ttnn.bfloat16, layout, self.mesh, mem),
        )

    def free(self, t, what=""):
        if self.settle:
            time.sleep(self.settle)
        del self.live[id(t)]
        t0 = time.monotonic()
        ttnn.deallocate(t)
        self.deallocations += 1
        self.record("deallocate", what, time.monotonic() - t0)


def model(run):
    """An MLP block then an attention block over 64 tokens of width 256."""
    D, H, N = 256, 512, 64
    w = {}
    for name, shape in [
        ("mlp.w1", [1, 1, D, H]), ("mlp.b1", [1, 1, 1, H]), ("mlp.w2", [1, 1, H, D]),
        ("mlp.b2", [1, 1, 1, D]), ("attn.wq", [1, 1, D, D]), ("attn.wk", [1, 1, D, D]),
        ("attn.wv", [1, 1, D, D]), ("attn.wo", [1, 1, D, D]),
    ]:
        w[name] = run.alloc(name, shape, TILE, DRAM)

    x_rm = run.alloc("input (row-major, DRAM)", [1, 1, N, D], RM, DRAM)
    x_tile = run.op("to_layout", "input tilized", lambda: ttnn.to_layout(x_rm, TILE))
    run.free(x_rm, "input (row-major, DRAM)")
    x = run.op("to_memory_config", "input to L1", lambda: ttnn.to_memory_config(x_tile, L1))
    run.free(x_tile, "input tilized")

    # MLP: layer_norm(x + fc2(relu(fc1(x) + b1)) + b2)
    h = run.op("matmul", "mlp.fc1", lambda: ttnn.matmul(x, w["mlp.w1"], memory_config=L1))
    hb = run.op("add", "mlp.fc1 + b1", lambda: ttnn.add(h, w["mlp.b1"], memory_config=L1))
    run.free(h, "mlp.fc1")
    a = run.op("relu", "mlp.act", lambda: ttnn.relu(hb, memory_config=L1))
    run.free(hb, "mlp.fc1 + b1")
    y = run.op("linear", "mlp.fc2 + b2", lambda: ttnn.linear(a, w["mlp.w2"], bias=w["mlp.b2"], memory_config=L1))
    run.free(a, "mlp.act")
    r = run.op("add", "mlp residual", lambda: ttnn.add(y, x, memory_config=L1))
    run.free(y, "mlp.fc2 + b2")
    run.free(x, "input to L1")
    n = run.op("layer_norm", "mlp.norm", lambda: ttnn.layer_norm(r, memory_config=L1))
    run.free(r, "mlp residual")

    # The activation through the three sharding schemes, an op on each.
    hs = run.op("to_memory_config", "height-sharded",
                lambda: ttnn.to_memory_config(n, sharded(TML.HEIGHT_SHARDED, (1, 0), [32, D])))
    run.free(n, "mlp.norm")
    hr = run.op("relu", "relu height-sharded", lambda: ttnn.relu(hs))
    run.free(hs, "height-sharded")
    ws = run.op("to_memory_config", "width-sharded",
                lambda: ttnn.to_memory_config(hr, sharded(TML.WIDTH_SHARDED, (3, 0), [N, 64])))
    run.free(hr, "relu height-sharded")
    wa = run.op("add", "add width-sharded", lambda: ttnn.add(ws, ws))
    run.free(ws, "width-sharded")
    bs = run.op("to_memory_config", "block-sharded",
                lambda: ttnn.to_memory_config(wa, sharded(TML.BLOCK_SHARDED, (1, 1), [32, 128])))
    run.free(wa, "add width-sharded")
    bm = run.op("softmax", "softmax block-sharded", lambda: ttnn.softmax(bs, dim=-1))
    run.free(bs, "block-sharded")
    x1 = run.op("to_memory_config", "back to L1 interleaved", lambda: ttnn.to_memory_config(bm, L1))
    run.free(bm, "softmax block-sharded")

    # Attention: x1 + wo(softmax(q k^T) v)
    q = run.op("matmul", "attn.q", lambda: ttnn.matmul(x1, w["attn.wq"], memory_config=L1))
    k = run.op("matmul", "attn.k", lambda: ttnn.matmul(x1, w["attn.wk"], memory_config=L1))
    v = run.op("matmul", "attn.v", lambda: ttnn.matmul(x1, w["attn.wv"], memory_config=L1))
    kt = run.op("transpose", "attn.k^T", lambda: ttnn.transpose(k, -2, -1, memory_config=L1))
    run.free(k, "attn.k")
    s = run.op("matmul", "attn.scores", lambda: ttnn.matmul(q, kt, memory_config=L1))
    run.free(q, "attn.q")
    run.free(kt, "attn.k^T")
    p = run.op("softmax", "attn.probs", lambda: ttnn.softmax(s, dim=-1, memory_config=L1))
    run.free(s, "attn.scores")
    o = run.op("matmul", "attn.context", lambda: ttnn.matmul(p, v, memory_config=L1))
    run.free(p, "attn.probs")
    run.free(v, "attn.v")
    op_ = run.op("matmul", "attn.out", lambda: ttnn.matmul(o, w["attn.wo"], memory_config=L1))
    run.free(o, "attn.context")
    out = run.op("add", "attn residual", lambda: ttnn.add(op_, x1, memory_config=L1))
    run.free(op_, "attn.out")
    run.free(x1, "back to L1 interleaved")
    out_rm = run.op("to_layout", "output row-major (L1)", lambda: ttnn.to_layout(out, RM))
    run.free(out, "attn residual")
    run.free(out_rm, "output row-major (L1)")
    return w


def random_ops(run, seed, count):
    """A seeded mix of real ops on [1,1,128,128] bf16 tensors (a pool of at most 8)."""
    rng = random.Random(seed)
    S = 128
    configs = {
        "DRAM": DRAM,
        "L1": L1,
        "L1 height-sharded": sharded(TML.HEIGHT_SHARDED, (3, 0), [32, S]),
        "L1 width-sharded": sharded(TML.WIDTH_SHARDED, (3, 0), [S, 32]),
        "L1 block-sharded": sharded(TML.BLOCK_SHARDED, (1, 1), [64, 64]),
    }
    weight = run.alloc("random.weight", [1, 1, S, S], TILE, DRAM)
    pool = []  # (tensor, config name, layout)

    def interleaved(e):
        return e[1] in ("DRAM", "L1")

    def pick(cond=lambda e: True):
        cands = [e for e in pool if cond(e)]
        return rng.choice(cands) if cands else None

    done = 0
    while done < count:
        kind = rng.choice(["allocate", "deallocate", "matmul", "add", "relu", "softmax",
                           "layer_norm", "transpose", "to_memory_config", "to_layout"])
        if len(pool) >= 8:
            kind = "deallocate"
        elif not pool:
            kind = "allocate"
        tile = lambda e: e[2] == TILE
        if kind == "allocate":
            mem = rng.choice(["DRAM", "L1"])
            layout = rng.choice([TILE, RM])
            t = run.alloc(f"random {mem} {'tile' if layout == TILE else 'row-major'}", [1, 1, S, S], layout, configs[mem])
            pool.append((t, mem, layout))
        elif kind == "deallocate":
            e = pick()
            # By identity: a ttnn.Tensor's == is the elementwise ttnn.eq op.
            pool[:] = [x for x in pool if x is not e]
            run.free(e[0], f"random {e[1]}")
        else:
            out_mem = rng.choice(["DRAM", "L1"])
            if kind == "matmul":
                e = pick(lambda e: tile(e))
                if e is None:
                    continue
                t = run.op(kind, f"{e[1]} x weight -> {out_mem}",
                           lambda: ttnn.matmul(e[0], weight, memory_config=configs[out_mem]))
                res = (t, out_mem, TILE)
            elif kind == "add":
                e = pick()
                # Two interleaved tensors of one layout, or a sharded tensor with itself.
                f = (pick(lambda f: interleaved(f) and f[2] == e[2]) if interleaved(e) else None) or e
                t = run.op(kind, f"{e[1]} + {f[1]}", lambda: ttnn.add(e[0], f[0]))
                res = (t, t_config(t, e, f), e[2])
            elif kind == "relu":
                e = pick()
                t = run.op(kind, e[1], lambda: ttnn.relu(e[0]))
                res = (t, e[1], e[2])
            elif kind == "softmax":
                e = pick(lambda e: tile(e))
                if e is None:
                    continue
                t = run.op(kind, e[1], lambda: ttnn.softmax(e[0], dim=-1))
                res = (t, e[1], TILE)
            elif kind == "layer_norm":
                # Never a sharded input: layer_norm of a sharded tensor segfaults on the mock.
                e = pick(lambda e: tile(e) and interleaved(e))
                if e is None:
                    continue
                t = run.op(kind, f"{e[1]} -> {out_mem}",
                           lambda: ttnn.layer_norm(e[0], memory_config=configs[out_mem]))
                res = (t, out_mem, TILE)
            elif kind == "transpose":
                e = pick(lambda e: tile(e) and interleaved(e))
                if e is None:
                    continue
                t = run.op(kind, f"{e[1]} -> {out_mem}",
                           lambda: ttnn.transpose(e[0], -2, -1, memory_config=configs[out_mem]))
                res = (t, out_mem, TILE)
            elif kind == "to_memory_config":
                e = pick(lambda e: tile(e))
                if e is None:
                    continue
                target = rng.choice([c for c in configs if c != e[1]])
                t = run.op(kind, f"{e[1]} -> {target}", lambda: ttnn.to_memory_config(e[0], configs[target]))
                res = (t, target, TILE)
            else:  # to_layout
                e = pick(interleaved)
                if e is None:
                    continue
                layout = RM if e[2] == TILE else TILE
                t = run.op(kind, f"{e[1]} -> {'row-major' if layout == RM else 'tile'}",
                           lambda: ttnn.to_layout(e[0], layout))
                res = (t, e[1], layout)
            pool.append(res)
        done += 1
    for e in pool:
        run.free(e[0], f"random {e[1]} (end)")
    run.free(weight, "random.weight")


def t_config(t, e, f):
    """The config name of an add's result: sharded like its input, else its buffer type."""
    if not (e[1] in ("DRAM", "L1")):
        return e[1]
    return "DRAM" if t.memory_config().buffer_type == ttnn.BufferType.DRAM else "L1"


def main():
    args = sys.argv[1:]

    def opt(name, default, conv):
        return conv(args[args.index(name) + 1]) if name in args else default

    seed = opt("--seed", 0, int)
    count = opt("--ops", 24, int)
    settle = opt("--settle", 0.11, float)
    rows, cols = opt("--mesh", (2, 4), lambda v: tuple(int(x) for x in v.split("x")))

    started = time.monotonic()
    mesh = ttnn.open_mesh_device(ttnn.MeshShape(rows, cols))
    run = Run(mesh, settle)
    weights = model(run)
    random_ops(run, seed, count)
    for name, t in weights.items():
        run.free(t, name)
    assert not run.live, "every tensor the workload made is deallocated"
    ttnn.close_mesh_device(mesh)

    truth = {
        "release": importlib.metadata.version("ttnn"),
        "pid": run.pid,
        "chips": run.chips,
        "mesh": [rows, cols],
        "seed": seed,
        "ops": count,
        "settle": settle,
        "allocations": run.allocations,
        "deallocations": run.deallocations,
        "buffers_allocated": run.allocations * len(run.chips),
        "buffers_freed": run.deallocations * len(run.chips),
        "memory_view_is_per_mesh": True,
        "seconds": round(time.monotonic() - started, 2),
        "steps": run.steps,
    }
    out = os.environ.get("TRACER_GROUND_TRUTH")
    if out:
        with open(out, "w") as f:
            json.dump(truth, f)
    print(f"real_model: {len(run.steps)} steps in {truth['seconds']} s", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
