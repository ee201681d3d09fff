"""How a batch of B examples splits into the micro-batches of N-step gradient accumulation.

One name for the concept across tfvit: ``accum`` is N, the number of micro-batches per optimizer update
(``--accum`` on the command line, ``RunConfig.accum``, ``GradientAccumulationModel(model, accum=N)``).
A micro-batch holds m = ceil(B / N) examples; ceil(B / m) of them are non-empty (fewer than N when N
does not divide B, e.g. B = 10, N = 4: m = 3 and three micro-batches), the last one zero-padded to m.
Plain integer arithmetic, so it serves Python ints, TensorFlow and JAX tensors alike.
"""


def micro_batch_size(batch_size, accum):
    """m = ceil(B / N): examples per micro-batch when a batch of ``batch_size`` is split ``accum`` ways."""
    return -(-batch_size // accum)


def micro_batch_layout(batch_size, accum):
    """(m, count, padded): the micro-batch size, the number of non-empty micro-batches (<= ``accum``) and
    count * m, the batch size after zero-padding."""
    micro = micro_batch_size(batch_size, accum)
    count = -(-batch_size // micro)
    return micro, count, count * micro
