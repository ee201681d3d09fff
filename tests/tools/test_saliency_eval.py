"""The saliency measurement's own arithmetic and bookkeeping (tools.saliency_eval): the peak distance and mass
figures of its ``defaults`` table against brute force, and the results file that lets an interrupted run go
on. Nothing here trains a model."""

import argparse
import json
import os

import numpy as np

import tools.saliency_eval as saliency_eval


def _brute_peak_distance(saliency_map, corner, patch):
    best = max(((saliency_map[r, c], -(r * saliency_map.shape[1] + c), r, c)
                for r in range(saliency_map.shape[0]) for c in range(saliency_map.shape[1])))
    _, _, row, col = best  # the first maximum in row-major order, as argmax
    centre_row, centre_col = corner[0] + (patch - 1) / 2, corner[1] + (patch - 1) / 2
    return ((row - centre_row) ** 2 + (col - centre_col) ** 2) ** 0.5


def test_peak_distance_and_mass_inside_match_brute_force():
    rng = np.random.default_rng(0)
    maps = rng.uniform(size=(5, 12, 12)).astype(np.float32)
    maps[1, 3, 4] = maps[1, 7, 9] = 2.0  # a tie: the first maximum counts
    corners = rng.integers(0, 12 - 6 + 1, size=(5, 2))
    expected = [_brute_peak_distance(m, c, 6) for m, c in zip(maps, corners)]
    np.testing.assert_allclose(saliency_eval.peak_distance(maps, corners, patch=6), expected, rtol=1e-12)
    inside = [sum(float(m[r, c]) for r in range(12) for c in range(12)
                  if k[0] <= r < k[0] + 6 and k[1] <= c < k[1] + 6) / float(m.astype(np.float64).sum())
              for m, k in zip(maps, corners)]
    np.testing.assert_allclose(saliency_eval.mass_inside(maps, corners, patch=6), inside, rtol=1e-9)


def test_a_peak_at_the_patch_centre_is_half_a_pixel_off_for_an_even_patch():
    saliency_map = np.zeros((1, 10, 10))
    saliency_map[0, 5, 5] = 1.0  # patch rows / cols 3..8: centre 5.5
    assert saliency_eval.peak_distance(saliency_map, [[3, 3]], patch=6)[0] == np.hypot(0.5, 0.5)


def _args(out, fresh=False):
    return argparse.Namespace(out=str(out), fresh=fresh)


def test_rows_written_are_taken_up_again_only_with_the_same_settings(tmp_path):
    rows = [{"task": "colour", "family": "cnn", "accuracy": 0.9, "methods": {}}]
    saliency_eval._write(str(tmp_path), "pointing", {"images": 120, "pairs": 40}, rows, "table\n")
    assert sorted(os.listdir(tmp_path)) == ["pointing.json", "pointing.md"]  # no .partial left behind
    assert (tmp_path / "pointing.md").read_text() == "table\n"
    assert saliency_eval._measured(_args(tmp_path), "pointing", {"images": 120, "pairs": 40}) == rows
    assert saliency_eval._measured(_args(tmp_path), "pointing", {"images": 300, "pairs": 40}) == []
    assert saliency_eval._measured(_args(tmp_path, fresh=True), "pointing", {"images": 120, "pairs": 40}) == []
    assert saliency_eval._row(rows, task="colour", family="cnn") is rows[0]
    assert saliency_eval._row(rows, task="colour", family="swin") is None


def test_a_results_file_of_the_old_layout_is_not_taken_up(tmp_path):
    (tmp_path / "pointing.json").write_text(json.dumps([{"task": "colour"}]))  # a bare list: no settings
    assert saliency_eval._measured(_args(tmp_path), "pointing", {"images": 120, "pairs": 40}) == []


def test_the_auto_column_is_the_measured_method_that_auto_runs():
    from tfvit.vis import AUTO

    measured = {"pointing": 1.0, "specificity": 0.95}
    transformer = {"explain_family": "swin", "methods": {AUTO["swin"]: measured, "auto": {"pointing": 0.0}}}
    assert saliency_eval._auto_from_measured(transformer) and transformer["methods"]["auto"] == measured
    cnn = {"explain_family": "cnn", "methods": {"occlusion": measured}}  # AUTO's Grad-CAM was not measured
    assert not saliency_eval._auto_from_measured(cnn) and "auto" not in cnn["methods"]
