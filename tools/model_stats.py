"""Parameters and MACs of tfvit's registry models, as a table.

    python -m tools.model_stats                       # every registry model at its own input size
    python -m tools.model_stats 'swin_*' --image-size 384
    python -m tools.model_stats vit_base_patch16_224 --summary

MACs count every multiply-add of matrix products and convolutions (attention included), the
convention of the papers' "FLOPs" columns; see tfvit/models/stats.py.
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

import tfvit  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("patterns", nargs="*", default=["*"], help="registry names or shell patterns (default: all)")
    parser.add_argument("--image-size", type=int, help="input size (default: each model's own)")
    parser.add_argument("--in-channels", type=int, help="input channels (default: each model's own)")
    parser.add_argument("--num-classes", type=int, help="classes (default: each model's own)")
    parser.add_argument("--summary", action="store_true", help="also print each model's Keras summary")
    args = parser.parse_args(argv)

    names = []
    for pattern in args.patterns:
        found = tfvit.list_models(pattern)
        if not found:
            tfvit.models.model_config(pattern)  # raises a ValueError with suggestions
        names += [n for n in found if n not in names]

    width = max([len("model")] + [len(n) for n in names])
    header = f"{'model':<{width}} {'input':>10} {'classes':>7} {'params (M)':>11} {'GMACs':>8}  description"
    print(header)
    print("-" * len(header))
    for name in names:
        model = tfvit.create_model(
            name, image_size=args.image_size, in_channels=args.in_channels, num_classes=args.num_classes
        )
        result = tfvit.stats(model)
        _, description, _ = tfvit.models.model_config(name)
        size = "x".join(str(s) for s in result.input_shape)
        classes = model.output_shape[-1]
        print(f"{name:<{width}} {size:>10} {classes:>7} {result.params / 1e6:>11.2f} {result.macs / 1e9:>8.3f}  {description}",
              flush=True)
        if args.summary:
            model.summary(line_length=120)
        del model
        keras.backend.clear_session()


if __name__ == "__main__":
    main()
