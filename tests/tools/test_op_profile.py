"""tools/op_profile.py's aggregation of a profiler trace, on a hand-built XSpace with known durations."""

import tools.op_profile as op_profile


def trace():
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    space = xplane_pb2.XSpace()
    plane = space.planes.add(name="/host:CPU")
    names = {1: "model/blocks.0/mlp/fc1/MatMul:_MklMatMul", 2: "Process", 3: "model/blocks.0/mlp/mul:Mul",
             4: "model/blocks.1/mlp/mul:Mul", 5: "one_step_on_data"}
    for key, name in names.items():
        plane.event_metadata[key].id = key
        plane.event_metadata[key].name = name
    ms = 10 ** 9  # picoseconds
    for thread, events in (("tf_Compute/1", [(2, 9), (1, 5), (3, 2)]), ("tf_Compute/2", [(1, 3), (4, 1)]),
                           ("python", [(5, 50), (1, 7)])):  # not a compute thread: ignored
        line = plane.lines.add(name=thread)
        for key, duration in events:
            line.events.add(metadata_id=key, duration_ps=duration * ms)
    return space


def test_sums_compute_thread_ops_by_type_and_skips_wrappers_and_other_threads():
    by_type, by_name = op_profile.op_times(trace(), by_name_types={"Mul"})
    assert dict(by_type) == {"_MklMatMul": 8.0, "Mul": 3.0}
    assert dict(by_name) == {"model/blocks.N/mlp/mul:Mul": 3.0}


def test_shares_table_reports_per_step_times_and_shares():
    by_type, _ = op_profile.op_times(trace())
    table = op_profile.format_shares(by_type, steps=2, top=5).splitlines()
    assert table[1].split() == ["all", "ops", "5.5", "100.0%"]
    assert table[2].split() == ["_MklMatMul", "4.0", "72.7%"] and table[3].split() == ["Mul", "1.5", "27.3%"]


def test_rejects_zero_steps():
    import pytest

    with pytest.raises(SystemExit):
        op_profile.parse_args(["--steps", "0"])
