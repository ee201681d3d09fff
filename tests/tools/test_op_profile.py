"""tools/op_profile.py's aggregation of a profiler trace, on a hand-built XSpace with known durations."""

import tools.op_profile as op_profile


def trace(xla=False):
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    space = xplane_pb2.XSpace()
    plane = space.planes.add(name="/host:CPU")
    names = {1: "model/blocks.0/mlp/fc1/MatMul:_MklMatMul", 2: "Process", 3: "model/blocks.0/mlp/mul:Mul",
             4: "model/blocks.1/mlp/mul:Mul", 5: "one_step_on_data", 6: "MemoryAllocation",
             7: "ExecutorState::ProcessAsync::Start",
             8: "multiply_convert_fusion", 9: "BlockUntilReady"}
    for key, name in names.items():
        plane.event_metadata[key].id = key
        plane.event_metadata[key].name = name
    ms = 10 ** 9  # picoseconds
    # (event, start ms, duration ms); "Process" wraps the ops; MemoryAllocation is inside the first MatMul
    first = [(2, 0, 9), (1, 0, 5), (6, 1, 2), (3, 6, 2)]
    if xla:  # a nested cluster after the Mul: its launch, a fused loop inside it, then the wait
        first += [(7, 9, 1), (8, 9.2, 0.5), (9, 10, 3)]
    for thread, events in (("tf_Compute/1", first), ("tf_Compute/2", [(1, 0, 3), (4, 3, 1)]),
                           ("python", [(5, 0, 50), (1, 0, 7)])):  # not a compute thread: ignored
        line = plane.lines.add(name=thread)
        for key, start, duration in events:
            line.events.add(metadata_id=key, offset_ps=int(start * ms), duration_ps=int(duration * ms))
    return space


def test_sums_compute_thread_ops_by_type_and_skips_wrappers_nested_events_and_other_threads():
    by_type, by_name = op_profile.op_times(trace(), by_name_types={"Mul"})
    assert dict(by_type) == {"_MklMatMul": 8.0, "Mul": 3.0}
    assert dict(by_name) == {"model/blocks.N/mlp/mul:Mul": 3.0}


def test_a_nested_xla_cluster_is_one_row_of_its_outermost_events():
    by_type, _ = op_profile.op_times(trace(xla=True))
    assert dict(by_type) == {"_MklMatMul": 8.0, "Mul": 3.0, op_profile.XLA_CLUSTERS: 4.0}


def test_shares_table_reports_per_step_times_and_shares():
    by_type, _ = op_profile.op_times(trace())
    table = op_profile.format_shares(by_type, steps=2, top=5).splitlines()
    assert table[1].split() == ["all", "ops", "5.5", "100.0%"]
    assert table[2].split() == ["_MklMatMul", "4.0", "72.7%"] and table[3].split() == ["Mul", "1.5", "27.3%"]


def test_rejects_zero_steps():
    import pytest

    with pytest.raises(SystemExit):
        op_profile.parse_args(["--steps", "0"])
