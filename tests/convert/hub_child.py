"""What tests/convert/test_hub.py runs in a fresh process, where HF_HOME and HF_HUB_OFFLINE (which the hub
client reads once, at import) are the test's: each case's logits or error, written to an .npz and a .json.

    python -m tests.convert.hub_child IMAGES.npz OUT_PREFIX

Every socket connection the process tries is recorded (and refused), so the test can tell that nothing
reached for the network.
"""

import json
import socket
import sys
import time

import numpy as np

ATTEMPTS = []
_connect = socket.socket.connect


def _recording_connect(sock, address):
    ATTEMPTS.append(repr(address))
    return _connect(sock, address)


socket.socket.connect = _recording_connect

import tfvit  # noqa: E402  (after the patch: the hub client opens its connections through it)

# Small architectures of the checkpoints test_hub.py writes, as overrides of registry configurations.
SMALL_VIT = dict(image_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=4, mlp_ratio=2.0)
SMALL_SWIN = dict(image_size=28, patch_size=2, embed_dim=16, depths=(2, 2, 2), num_heads=(2, 2, 4), window_size=4)


def _logits(model, images):
    return np.asarray(model(images, training=False), dtype=np.float32)


def main(images_path, out):
    images = dict(np.load(images_path))
    logits, results = {}, {}

    def case(name, build, images_key=None):
        started = time.perf_counter()
        before = len(ATTEMPTS)
        try:
            model = build()
            if images_key:
                logits[name] = _logits(model, images[images_key])
            preprocessing = getattr(model, "preprocessing", None)
            results[name] = {"ok": True, "preprocessing": preprocessing.to_dict() if preprocessing else None}
        except Exception as error:  # the test asserts on the type and the message
            results[name] = {"ok": False, "type": type(error).__name__, "message": str(error)}
        results[name].update(seconds=time.perf_counter() - started, connections=ATTEMPTS[before:])

    case("vit", lambda: tfvit.create_model("vit_tiny_patch16_224", pretrained="hf-hub:acme/tiny-vit", **SMALL_VIT),
         "vit")
    case("vit_v1", lambda: tfvit.create_model("vit_tiny_patch16_224", pretrained="hf-hub:acme/tiny-vit@v1",
                                              **SMALL_VIT), "vit")
    case("vit_from_pretrained", lambda: tfvit.convert.from_pretrained("hf-hub:acme/tiny-vit"), "vit")
    case("swin", lambda: tfvit.create_model("swin_tiny_patch4_window7_224", pretrained="hf-hub:acme/tiny-swin",
                                            **SMALL_SWIN), "swin")
    case("registry_default", lambda: tfvit.create_model("vit_tiny_patch16_224", pretrained=True), "imagenet")
    case("missing", lambda: tfvit.create_model("vit_tiny_patch16_224", pretrained="hf-hub:acme/not-cached"))
    case("pickle_only", lambda: tfvit.create_model("vit_tiny_patch16_224", pretrained="hf-hub:acme/pickled-vit",
                                                   **SMALL_VIT))
    np.savez(out + ".npz", **logits)
    with open(out + ".json", "w") as f:
        json.dump(results, f)


if __name__ == "__main__":
    main(*sys.argv[1:])
