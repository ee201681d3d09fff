"""The resume state on disk: written whole or not at all, verified when read, and a damaged newest state
passed over for the one before it (tfvit/training/resume_state.py)."""

import json
import os

import numpy as np
import pytest

from tfvit.training import resume_state
from tfvit.training.resume_state import latest_state, read_variables, state_folders, verify, write_state


def arrays(epoch):
    return [np.full((64, 8), epoch, "float32"), np.arange(5) + epoch]


def saved(tmp_path, epochs=3):
    for epoch in range(1, epochs + 1):
        write_state(tmp_path, epoch, arrays(epoch), {"callbacks": [], "fit_starts": [0]})
    return tmp_path


def test_states_are_written_whole_and_the_two_newest_kept(tmp_path):
    saved(tmp_path, 4)
    assert [e for e, _ in state_folders(tmp_path)] == [4, 3]
    epoch, folder, state = latest_state(tmp_path)
    assert epoch == 4 and state["fit_starts"] == [0] and state["variables"]["bytes"] > 0
    for stored, expected in zip(read_variables(folder), arrays(4), strict=True):
        np.testing.assert_array_equal(stored, expected)


def truncate(folder):
    path = os.path.join(folder, "variables.npz")
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)


def zero(folder):
    path = os.path.join(folder, "variables.npz")
    size = os.path.getsize(path)
    with open(path, "wb") as f:
        f.write(b"\0" * size)


def flip_a_byte(folder):
    path = os.path.join(folder, "variables.npz")
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 1
    open(path, "wb").write(bytes(data))


def remove_variables(folder):
    os.remove(os.path.join(folder, "variables.npz"))


def empty_state(folder):
    open(os.path.join(folder, "state.json"), "w").close()


def state_without_checksum(folder):
    path = os.path.join(folder, "state.json")
    state = json.load(open(path))
    del state["variables"]
    json.dump(state, open(path, "w"))


DAMAGE = {"truncated variables.npz": (truncate, "variables.npz has"),
          "zeroed variables.npz": (zero, "does not match the checksum"),
          "one byte changed": (flip_a_byte, "does not match the checksum"),
          "missing variables.npz": (remove_variables, "variables.npz is missing"),
          "empty state.json": (empty_state, "state.json cannot be read"),
          "state.json without its checksum": (state_without_checksum, "state.json cannot be read")}


@pytest.mark.parametrize("damage", DAMAGE, ids=list(DAMAGE))
def test_a_damaged_newest_state_falls_back_to_the_one_before_and_says_so(tmp_path, damage):
    spoil, reason = DAMAGE[damage]
    saved(tmp_path)
    spoil(os.path.join(tmp_path, "epoch-0003"))
    messages = []
    epoch, folder, _ = latest_state(tmp_path, report=messages.append)
    assert epoch == 2 and folder.endswith("epoch-0002")
    (message,) = messages
    assert reason in message and "epoch-0003" in message and "continuing from the state of epoch 2" in message
    with pytest.raises(resume_state.DamagedState):
        verify(os.path.join(tmp_path, "epoch-0003"))
    # Training epoch 3 again replaces the damaged state.
    write_state(tmp_path, 3, arrays(3), {"callbacks": []})
    assert latest_state(tmp_path, report=messages.append)[0] == 3 and len(messages) == 1


def test_without_any_good_state_the_run_starts_from_the_beginning(tmp_path):
    saved(tmp_path, 2)
    empty_state(os.path.join(tmp_path, "epoch-0002"))
    remove_variables(os.path.join(tmp_path, "epoch-0001"))
    messages = []
    assert latest_state(tmp_path, report=messages.append) == (0, None, None)
    assert len(messages) == 2 and all("starts from epoch 1" in m for m in messages)
    assert latest_state(tmp_path / "never-written", report=messages.append) == (0, None, None)


def test_a_save_killed_halfway_leaves_the_previous_state_and_is_cleared_by_the_next(tmp_path, monkeypatch):
    saved(tmp_path, 2)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # as if the process stopped in the middle of writing the new state

    monkeypatch.setattr(resume_state.os, "rename", killed)
    with pytest.raises(KeyboardInterrupt):
        write_state(tmp_path, 3, arrays(3), {"callbacks": []})
    monkeypatch.undo()
    assert latest_state(tmp_path)[0] == 2
    # A real kill cannot clean up: leave a partial folder as one would, and the next save removes it.
    os.makedirs(tmp_path / ".epoch-0003.abc.partial")
    write_state(tmp_path, 3, arrays(3), {"callbacks": []})
    assert sorted(os.listdir(tmp_path)) == ["epoch-0002", "epoch-0003"]
