"""Which query tile makes tiled local attention fastest: 2D tiles per grid and kernel, 1D blocks per window.

For every (grid, kernel_size) it times ``neighborhood_attention_2d`` forward + backward (with the relative
position bias) at each candidate tile side, and for every (tokens, window) ``local_attention_1d`` at each
candidate query block; the candidates of one row are compiled in one process and timed in interleaved
rounds, so their ratios are measured side by side. Batch 4, 4 heads x 64 channels, float32, as
``tools/attention_bench.py``. It prints the median ms per candidate, the fastest, and what
``tfvit.layers.local_tiles.default_tile`` / ``local_attention_1d``'s default choose, with their cost
relative to the fastest:

    python -m tools.local_tile_bench [--grids 8 16 24 32 48 64] [--kernels 3 5 7] [--rounds 5]
"""

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tools.measure import interleaved, module_command  # noqa: E402

TILES = (4, 6, 8, 12, 16, 24, 32, 64)


def child(args):
    import numpy as np
    import tensorflow as tf

    from tfvit.layers import local
    from tfvit.layers.local_tiles import default_tile

    rng = np.random.default_rng(0)
    heads, dim = args.heads, 64
    if args.kind == "2d":
        grid, k = args.size, args.kernel
        tokens = grid * grid
        # Tiles at least the grid all give one whole-grid tile: time it once, as the grid.
        candidates = sorted({min(t, grid) for t in TILES})
        bias = tf.Variable(rng.normal(size=(heads, 2 * k - 1, 2 * k - 1)).astype("float32") * 0.02)
        chosen = min(default_tile((grid, grid), k), grid)

        def attend(q, kk, v, tile):
            return local.neighborhood_attention_2d(q, kk, v, (grid, grid), k, bias=bias, tile=tile)
    else:
        tokens, window = args.size, args.kernel
        half = window // 2
        candidates = sorted({max(1, b) for b in (half // 2, half, 2 * half, 4 * half)})
        bias = None
        chosen = local._band_block(window)

        def attend(q, kk, v, block):
            return local.local_attention_1d(q, kk, v, window, block=block)

    q, kk, v = (tf.constant(rng.normal(size=(args.batch, heads, tokens, dim)).astype("float32")) for _ in range(3))
    sources = [q, kk, v] + ([bias] if bias is not None else [])

    def make_step(size):
        @tf.function
        def step():
            with tf.GradientTape() as tape:
                tape.watch([q, kk, v])
                loss = tf.reduce_sum(tf.square(attend(q, kk, v, size)))
            return tape.gradient(loss, sources)
        return step

    steps = {size: make_step(size) for size in candidates}
    times = {size: [] for size in candidates}
    for step in steps.values():
        [t.numpy() for t in step()]
    for _ in range(args.rounds):
        for size, step in steps.items():
            start = time.perf_counter()
            [t.numpy() for t in step()]
            times[size].append(1000 * (time.perf_counter() - start))
    print(json.dumps({"ms": {str(s): float(np.median(t)) for s, t in times.items()}, "chosen": chosen}))


def report(title, rows, fixed_sizes):
    """One line per row, then, for each fixed size in every row, its worst cost relative to the row's
    fastest (a size larger than a row's grid counts as the whole grid)."""
    print(f"\n{title}\n")
    worst = dict.fromkeys(fixed_sizes, 1.0)
    for label, result in rows:
        ms = {int(s): t for s, t in result["ms"].items()}
        best = min(ms, key=ms.get)
        cells = ", ".join(f"{s}: {t:.1f}" for s, t in sorted(ms.items()))
        chosen = result["chosen"]
        print(f"{label}: ms by size {{{cells}}}; fastest {best}; default {chosen} "
              f"({ms[chosen] / ms[best]:.2f}x the fastest)")
        for size in fixed_sizes:
            worst[size] = max(worst[size], ms[min(size, max(ms))] / ms[best])
    if fixed_sizes:
        print("worst over the rows, relative to each row's fastest: "
              + ", ".join(f"size {s}: {w:.2f}x" for s, w in worst.items()))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grids", type=int, nargs="+", default=[8, 16, 24, 32, 48, 64])
    parser.add_argument("--kernels", type=int, nargs="+", default=[3, 5, 7])
    parser.add_argument("--tokens", type=int, nargs="+", default=[256, 1024, 4096])
    parser.add_argument("--windows", type=int, nargs="+", default=[9, 25, 49])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--kind", choices=["2d", "1d"], help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--kernel", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)

    def measure(kind, size, kernel):  # one child: its candidates are interleaved inside it
        command = module_command("tools.local_tile_bench", "--child", "--kind", kind, "--size", size,
                                 "--kernel", kernel, "--batch", args.batch, "--heads", args.heads,
                                 "--rounds", args.rounds)
        return interleaved([(None, command)], rounds=1, progress=False)[None][0]

    rows_2d = [(f"grid {g}x{g}, k={k}", measure("2d", g, k)) for k in args.kernels for g in args.grids if k <= g]
    report(f"neighborhood_attention_2d, forward + backward, batch {args.batch}, {args.heads} heads x 64, "
           f"median of {args.rounds} interleaved rounds; size = tile side", rows_2d, TILES)
    rows_1d = [(f"N={n}, window={w}", measure("1d", n, w)) for w in args.windows for n in args.tokens]
    report("local_attention_1d, the same; size = query block (candidates: window // 4, // 2, 1x, 2x)", rows_1d, ())


if __name__ == "__main__":
    main()
