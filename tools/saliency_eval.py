"""Measure how well each saliency method points at the evidence, per model family: the tables of docs/saliency.md.

    python -m tools.saliency_eval pointing                   # synthetic tasks: pointing game, class-specificity
    python -m tools.saliency_eval defaults                   # the options of occlusion, RISE, IG, SmoothGrad
    python -m tools.saliency_eval cifar --data-dir ../shared/data   # deletion / insertion AUC, sanity, figure

``pointing`` trains the small model of every family (tools/saliency_tasks.py) on each task (colour, shape,
position; the training sizes of saliency_tasks.TRAINING, seeded) and scores every method that applies on
held-out images: the pointing game (hit = the map's maximum inside the 6x6 evidence, no tolerance; chance
3.5%) and class-specificity (images holding two classes' evidence; each class's map must point at its own).
``defaults`` scores the alternatives to the defaults of occlusion, RISE, Integrated Gradients and SmoothGrad
on the colour task (pointing game, the peak's distance to the square's centre, the share of the map's mass on
the square). ``cifar`` trains a ViT, a Swin and a ResNet on the CIFAR-10 files in ``--data-dir`` and reports
the deletion and insertion AUC of each method on test images against random maps (Petsiuk et al. 2018), the
cascading-randomisation check (Adebayo et al. 2018) and a figure of the maps. Trained models are kept under
``--cache`` so that a rerun measures without training again.
All print markdown tables and write them, with the raw figures as JSON, to ``--out`` after every row, so an
interrupted run loses at most the row it was measuring; a rerun with the same settings keeps the rows already
measured and goes on with the rest (``--fresh`` measures everything again).
"""

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from tools import saliency_tasks as tasks  # noqa: E402

# Grad-CAM targets tried per family, besides each method's own default: the measurement behind GRADCAM_TARGETS.
CAM_TARGETS = {
    "cnn": [None],
    "vit_token": [None, "patch_embed", "blocks.0"],
    "vit_mean": [None, "patch_embed", "blocks.0"],
    "vit_local": [None, "patch_embed", "blocks.0"],
    "vit_performer": [None, "patch_embed", "blocks.0"],
    "swin": [None, "patch_embed"],
}


def _boxes(corners, patch=tasks.PATCH):
    corners = np.asarray(corners)
    return np.concatenate([corners, corners + patch], axis=-1)


def method_runs(model, family):
    """(label, function(model, images, class_index)) for every method to score on ``model``."""
    from tfvit import vis

    runs = []
    for target in CAM_TARGETS[family]:
        label = "gradcam (tfvit.vis.gradcam default)" if target is None else f"gradcam @ {target}"
        runs.append((label, lambda m, x, c, t=target: vis.gradcam(m, x, class_index=c, layer=t)))
    for name in vis.applicable_methods(model):
        if name in ("gradcam", "scorecam"):  # Grad-CAM is above; Score-CAM costs a forward per channel
            continue
        # Rollout explains the image, not a class: explain refuses a class_index for it.
        runs.append((name, lambda m, x, c, n=name: vis.explain(
            m, x, class_index=None if n in vis.NOT_CLASS_SPECIFIC else c, method=n)))
    return runs


def _cached(path, make):
    if os.path.exists(path):
        return keras.saving.load_model(path, compile=False)
    model = make()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    model.save(path)
    return model


def pointing(args):
    from tfvit.vis import class_specificity, explain, model_family, pointing_hits

    settings = {"images": args.images, "pairs": args.pairs}
    rows = _measured(args, "pointing", settings)
    for row in rows:  # rows measured before AUTO last changed: their auto column follows today's choice
        _auto_from_measured(row)
    if rows:
        _write(args.out, "pointing", settings, rows, pointing_tables(rows, settings))
    for task in args.tasks:
        if all(_row(rows, task=task, family=f) for f in args.families):
            continue
        train_images, train_labels, _ = tasks.make_task(task, tasks.TRAINING[task][0], seed=0)
        images, labels, corners = tasks.make_task(task, args.images, seed=1)
        evidence = labels > 0
        pair_images, pair_classes, pair_corners = tasks.make_pairs(task, args.pairs, seed=2)
        for family in args.families:
            if _row(rows, task=task, family=family):
                continue
            start = time.perf_counter()
            model = _cached(os.path.join(args.cache, f"{task}_{family}.keras"),
                            lambda: tasks.train(family, task, train_images, train_labels))
            accuracy = float((np.argmax(model.predict(images, verbose=0), -1) == labels).mean())
            row = {"task": task, "family": family, "explain_family": model_family(model), "accuracy": accuracy,
                   "methods": {}}
            for label, run in method_runs(model, family) + [("auto", lambda m, x, c: explain(m, x, class_index=c))]:
                if label == "auto" and _auto_from_measured(row):
                    continue
                began = time.perf_counter()
                maps = run(model, images[evidence], labels[evidence])
                hits = float(pointing_hits(maps, _boxes(corners[evidence])).mean())
                specific = class_specificity(lambda x, c, m=model, r=run: r(m, x, c), pair_images, pair_classes,
                                             _boxes(pair_corners))
                row["methods"][label] = {"pointing": hits, "specificity": specific,
                                         "seconds": time.perf_counter() - began}
            rows.append(row)
            print(f"[{task} / {family}] accuracy {accuracy:.3f}; "
                  + ", ".join(f"{k} {v['pointing']:.2f}/{v['specificity']:.2f}" for k, v in row["methods"].items())
                  + f"  ({time.perf_counter() - start:.0f} s)", flush=True)
            _write(args.out, "pointing", settings, rows, pointing_tables(rows, settings))
    print(pointing_tables(rows, settings))


def _auto_from_measured(row):
    """Fill the auto column from AUTO's method when it was measured with its defaults (explain() runs exactly
    that, deterministically); whether it was."""
    from tfvit.vis import AUTO

    name = AUTO[row["explain_family"]]
    if name in row["methods"]:
        row["methods"]["auto"] = dict(row["methods"][name])
    return name in row["methods"]


def pointing_tables(rows, settings):
    """One markdown table: a row per (task, family), a cell per method, "pointing / class-specificity"."""
    by_methods = sorted(rows, key=lambda r: -len(r["methods"]))  # the fullest row's order first
    methods = list(dict.fromkeys(m for row in by_methods for m in row["methods"]))
    lines = [f"Pointing game / class-specificity: {settings['images']} held-out images per task (the ones holding "
             f"evidence are scored), {settings['pairs']} two-class images (two class maps each); chance 0.035. "
             "n/a: the method does not apply (or that target was not tried); auto: what explain() runs, "
             "tfvit.vis.AUTO (RISE for the transformer families, Grad-CAM for the CNN).", "",
             "| task | family | accuracy | " + " | ".join(methods) + " |", "|---" * (3 + len(methods)) + "|"]
    for row in rows:
        cells = [f"{row['methods'][m]['pointing']:.2f}/{row['methods'][m]['specificity']:.2f}"
                 if m in row["methods"] else "n/a" for m in methods]
        lines.append(f"| {row['task']} | {row['family']} | {row['accuracy']:.2f} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# --- The defaults of the perturbation and path methods -----------------------------------------------------

# (method, options) alternatives to each default, scored on the colour task: the measurement behind the
# defaults of occlusion (kernel, window), RISE (fill, score), Integrated Gradients (baseline) and SmoothGrad.
DEFAULT_CHOICES = [
    ("occlusion", {}), ("occlusion", {"kernel": "box"}), ("occlusion", {"window": 6}), ("occlusion", {"window": 12}),
    ("occlusion", {"fill": 0.0}),
    ("rise", {}), ("rise", {"fill": 0.0}), ("rise", {"score": "probability"}), ("rise", {"num_masks": 500}),
    ("integrated_gradients", {}), ("integrated_gradients", {"baseline": "black"}),
    ("integrated_gradients", {"baseline": 0.5}),
    ("smoothgrad", {}), ("smoothgrad", {"samples": 0}),
]


def peak_distance(maps, corners, patch=tasks.PATCH):
    """Distance in pixels from each map's maximum to the centre of its patch (top-left ``corners``)."""
    maps = np.asarray(maps)
    rows, cols = np.divmod(maps.reshape(len(maps), -1).argmax(axis=1), maps.shape[2])
    centre = np.asarray(corners) + (patch - 1) / 2
    return np.hypot(rows - centre[:, 0], cols - centre[:, 1])


def mass_inside(maps, corners, patch=tasks.PATCH):
    """The share of each map's total inside its patch."""
    maps = np.asarray(maps, np.float64)
    inside = [m[r:r + patch, c:c + patch].sum() for m, (r, c) in zip(maps, corners)]
    return np.asarray(inside) / np.maximum(maps.reshape(len(maps), -1).sum(axis=1), 1e-12)


def defaults(args):
    from tfvit.vis import explain, pointing_hits

    settings = {"images": args.images}
    rows = _measured(args, "defaults", settings)
    train_images, train_labels, _ = tasks.make_task("colour", tasks.TRAINING["colour"][0], seed=0)
    images, labels, corners = tasks.make_task("colour", args.images, seed=1)
    evidence = labels > 0
    images, labels, corners = images[evidence], labels[evidence], corners[evidence]
    for family in args.families:
        model = _cached(os.path.join(args.cache, f"colour_{family}.keras"),
                        lambda: tasks.train(family, "colour", train_images, train_labels))
        for method, options in DEFAULT_CHOICES:
            label = method + "".join(f", {k}={v}" for k, v in options.items())
            if _row(rows, family=family, choice=label):
                continue
            began = time.perf_counter()
            maps = explain(model, images, class_index=labels, method=method, **options)
            rows.append({"family": family, "choice": label,
                         "pointing": float(pointing_hits(maps, _boxes(corners)).mean()),
                         "peak_distance": float(peak_distance(maps, corners).mean()),
                         "mass_inside": float(mass_inside(maps, corners).mean()),
                         "seconds": time.perf_counter() - began})
            print(f"[colour / {family}] {label}: " + ", ".join(f"{k} {rows[-1][k]:.2f}" for k in
                  ("pointing", "peak_distance", "mass_inside")), flush=True)
            _write(args.out, "defaults", settings, rows, defaults_table(rows, settings))
    print(defaults_table(rows, settings))


def defaults_table(rows, settings):
    families = list(dict.fromkeys(r["family"] for r in rows))
    lines = [f"Colour task, the held-out squares among {settings['images']} images; each cell: pointing game / "
             "mean distance of the peak to the square's centre (pixels) / share of the map's mass on the square.",
             "", "| method, options | " + " | ".join(families) + " |", "|---" * (1 + len(families)) + "|"]
    for choice in dict.fromkeys(r["choice"] for r in rows):
        cells = []
        for family in families:
            r = _row(rows, family=family, choice=choice)
            cells.append(f"{r['pointing']:.2f} / {r['peak_distance']:.2f} / {r['mass_inside']:.2f}" if r else "")
        lines.append(f"| {choice} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# --- CIFAR-10: deletion / insertion, sanity, figure ------------------------------------------------------------

CIFAR_MODELS = {
    "vit": ("vit_cifar_patch4_32", {"drop_path_rate": 0.0}),
    "swin": ("swin_cifar_patch2_window4_32", {"drop_path_rate": 0.0}),
    "resnet": ("resnet18_cifar", {}),
}


def _cifar_model(kind, train, epochs, cache):
    import tfvit

    def make():
        name, overrides = CIFAR_MODELS[kind]
        keras.utils.set_random_seed(0)
        model = tfvit.create_model(name, **overrides)
        model.compile(optimizer=keras.optimizers.AdamW(1e-3, weight_decay=0.05),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
        began = time.perf_counter()
        model.fit(*train, batch_size=128, epochs=epochs, verbose=2)
        print(f"trained {name} in {time.perf_counter() - began:.0f} s", flush=True)
        return model

    return _cached(os.path.join(cache, f"cifar10_{kind}_n{len(train[1])}_e{epochs}.keras"), make)


def _cifar_options(name, args):
    return {"num_masks": args.rise_masks} if name == "rise" else {}


def _cifar_row(model, kind, test_images, all_test, rng, args):
    """Test accuracy and the deletion / insertion AUC of every method (and of random maps) on one model."""
    from tfvit import vis

    accuracy = float((np.argmax(model.predict(all_test[0], verbose=0), -1) == all_test[1]).mean())
    row = {"model": kind, "family": vis.model_family(model), "accuracy": accuracy, "methods": {}, "sanity": {}}
    for name in ["random"] + [n for n in vis.applicable_methods(model) if n != "scorecam"]:
        began = time.perf_counter()
        if name == "random":
            maps = rng.uniform(size=test_images.shape[:3]).astype(np.float32)
        else:
            maps = vis.explain(model, test_images, method=name, **_cifar_options(name, args))
        curves = vis.deletion_insertion(model, test_images, maps)
        row["methods"][name] = {"deletion": float(curves["deletion_auc"].mean()),
                                "insertion": float(curves["insertion_auc"].mean()),
                                "seconds": time.perf_counter() - began}
        print(f"[cifar10 / {kind}] {name}: deletion {row['methods'][name]['deletion']:.3f}, insertion "
              f"{row['methods'][name]['insertion']:.3f} ({row['methods'][name]['seconds']:.0f} s)", flush=True)
    return row


def cifar(args):
    from tfvit import data, vis

    info = data.dataset_info("cifar10")

    def arrays(split, limit=None):
        images, labels = data.load_arrays("cifar10", split, data_dir=args.data_dir, limit=limit)
        images = ((images.astype(np.float32) / 255.0 - np.asarray(info.mean)) / np.asarray(info.std))
        return images.astype(np.float32), labels

    settings = {"train_images": args.train_images, "epochs": args.epochs, "images": args.images,
                "sanity_images": args.sanity_images, "rise_masks": args.rise_masks}
    train = arrays("train", limit=args.train_images)
    test_images, test_labels = arrays("test", limit=args.images)
    all_test = arrays("test")
    rng = np.random.default_rng(0)
    rows, figure_maps, figure_labels = _measured(args, "cifar", settings), [], []
    for kind in args.models:
        model = _cifar_model(kind, train, args.epochs, args.cache)
        auto = vis.AUTO[vis.model_family(model)]
        shown = test_images[:args.figure_images]
        figure_maps += [vis.explain(model, shown), vis.gradcam(model, shown)]
        figure_labels += [f"{kind}\nexplain (auto:\n{auto})", f"{kind}\ngradcam\n(default target)"]
        row = _row(rows, model=kind)
        if row is None:
            row = _cifar_row(model, kind, test_images, all_test, rng, args)
            rows.append(row)
            _write(args.out, "cifar", settings, rows, cifar_tables(rows, settings))
        for name in dict.fromkeys([auto, "gradcam"]):
            if name in row["sanity"]:
                continue
            row["sanity"][name] = vis.cascading_randomisation(
                model, test_images[:args.sanity_images],
                lambda m, x, n=name: vis.explain(m, x, method=n, **_cifar_options(n, args)))
            print(f"[cifar10 / {kind}] sanity {name}: "
                  + ", ".join(f"{layer} {r:.2f}" for layer, r in row["sanity"][name]), flush=True)
            _write(args.out, "cifar", settings, rows, cifar_tables(rows, settings))
    titles = [info.class_name(int(i)) for i in test_labels[:args.figure_images]]
    if args.figure:
        vis.overlay_grid(test_images[:args.figure_images], figure_maps, path=args.figure, titles=titles,
                         row_labels=figure_labels, mean=info.mean, std=info.std)
        print(f"figure: {args.figure}")
    print(cifar_tables(rows, settings))


def cifar_tables(rows, settings):
    lines = [f"Models trained on the first {settings['train_images'] or 50000} CIFAR-10 training images for "
             f"{settings['epochs']} epochs; test accuracy on all 10000 test images.", "",
             f"### Deletion (lower is better) / insertion (higher is better) AUC, {settings['images']} CIFAR-10 "
             f"test images (RISE with {settings['rise_masks']} masks, here and in the randomisation check)",
             "", "| model | test acc | method | deletion | insertion | s |", "|---|---|---|---|---|---|"]
    for row in rows:
        for name, m in row["methods"].items():
            lines.append(f"| {row['model']} | {row['accuracy']:.3f} | {name} | {m['deletion']:.3f} | "
                         f"{m['insertion']:.3f} | {m['seconds']:.0f} |")
    lines += ["", "### Cascading randomisation: rank correlation with the trained model's maps, top-down", ""]
    for row in rows:
        for name, steps in row["sanity"].items():
            lines.append(f"- {row['model']} / {name}: " + ", ".join(f"{layer} {r:.2f}" for layer, r in steps))
    return "\n".join(lines) + "\n"


def _measured(args, name, settings):
    """The rows of an earlier run with the same settings, to go on from (none with ``--fresh``)."""
    path = os.path.join(args.out, f"{name}.json")
    if args.fresh or not os.path.exists(path):
        return []
    with open(path) as f:
        earlier = json.load(f)
    if not isinstance(earlier, dict) or earlier.get("settings") != settings:
        return []
    print(f"going on from {path}: {len(earlier['rows'])} rows measured with these settings", flush=True)
    return earlier["rows"]


def _row(rows, **keys):
    return next((r for r in rows if all(r.get(k) == v for k, v in keys.items())), None)


def _write(out, name, settings, rows, tables):
    """Write the JSON and the tables through temporary files, so an interruption never leaves half a file."""
    os.makedirs(out, exist_ok=True)
    for suffix, text in ((".json", json.dumps({"settings": settings, "rows": rows}, indent=1)), (".md", tables)):
        path = os.path.join(out, name + suffix)
        with open(path + ".partial", "w") as f:
            f.write(text)
        os.replace(path + ".partial", path)


def _comma(values):
    return [v for v in values.split(",") if v]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    a = sub.add_parser("pointing", help="pointing game and class-specificity on the synthetic tasks")
    a.add_argument("--tasks", type=_comma, default=list(tasks.TASKS))
    a.add_argument("--families", type=_comma, default=list(tasks.FAMILIES))
    a.add_argument("--images", type=int, default=120, help="held-out images per task (the class-0 ones hold no "
                   "evidence and are not scored)")
    a.add_argument("--pairs", type=int, default=40, help="two-class images for class-specificity")
    d = sub.add_parser("defaults", help="the defaults of occlusion, RISE, Integrated Gradients, SmoothGrad")
    d.add_argument("--families", type=_comma, default=["vit_token", "swin"])
    d.add_argument("--images", type=int, default=120, help="held-out images (the class-0 ones are not scored)")
    b = sub.add_parser("cifar", help="deletion / insertion AUC, randomisation check and figure on CIFAR-10")
    b.add_argument("--data-dir", default=os.environ.get("TFVIT_DATA_DIR"))
    b.add_argument("--models", type=_comma, default=list(CIFAR_MODELS))
    b.add_argument("--train-images", type=int, default=None, help="train on the first N training images (all)")
    b.add_argument("--epochs", type=int, default=10)
    b.add_argument("--images", type=int, default=100, help="test images scored")
    b.add_argument("--sanity-images", type=int, default=16)
    b.add_argument("--rise-masks", type=int, default=2000, help="RISE's masks per image (its default: 2000)")
    b.add_argument("--figure-images", type=int, default=8)
    b.add_argument("--figure", default="docs/images/saliency_cifar10.png")
    for q in (a, b, d):
        q.add_argument("--cache", default="logs/saliency_eval/models")
        q.add_argument("--out", default="logs/saliency_eval")
        q.add_argument("--fresh", action="store_true", help="measure again the rows an earlier run wrote")
    args = p.parse_args(argv)
    bad = [f for f in getattr(args, "families", []) if f not in tasks.FAMILIES]
    bad += [t for t in getattr(args, "tasks", []) if t not in tasks.TASKS]
    bad += [m for m in getattr(args, "models", []) if m not in CIFAR_MODELS]
    if bad:
        sys.exit(f"saliency_eval: unknown {bad}; tasks {tasks.TASKS}, families {tuple(tasks.FAMILIES)}, "
                 f"CIFAR models {tuple(CIFAR_MODELS)}.")
    {"pointing": pointing, "defaults": defaults, "cifar": cifar}[args.command](args)


if __name__ == "__main__":
    main()
