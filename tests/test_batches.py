"""iter_batches: the one reading of `data` that calibration, compare, the lab and evaluate share."""
from __future__ import annotations

import numpy as np
import pytest

import trtlab.zoo as zoo
from trtlab import Session
from trtlab.batches import iter_batches
from trtlab.errors import InputError


def make(i):
    return {"x": np.full((1, 2), float(i), np.float32)}


def test_every_form_of_data():
    batches, total = iter_batches(None, make, default=2)
    assert total == 2 and [float(b["x"][0, 0]) for b in batches] == [0.0, 1.0]
    batches, total = iter_batches(np.int64(3), make)
    assert total == 3 and len(list(batches)) == 3
    one = {"x": np.zeros((1, 2), np.float32)}
    batches, total = iter_batches(one, make)
    assert total == 1 and list(batches)[0] is one
    listed = [one, one]
    batches, total = iter_batches(listed, make)
    assert batches is listed and total == 2
    gen = (b for b in listed)
    batches, total = iter_batches(gen, make)
    assert batches is gen and total is None  # consumed lazily, never copied


def test_random_batches_are_made_one_at_a_time():
    made = []
    batches, _ = iter_batches(3, lambda i: made.append(i) or make(i))
    assert made == []
    next(iter(batches))
    assert made == [0]


@pytest.mark.parametrize("data, make_random, default, match", [
    (None, make, None, "no data"),
    (True, make, 1, "not True"),
    (0, make, 1, "positive number"),
    (4, None, 1, "data=4"),
    (3.5, make, 1, "not float"),
    ("x.npy", make, 1, "not str"),
])
def test_bad_data_is_an_input_error(data, make_random, default, match):
    with pytest.raises(InputError, match=match):
        iter_batches(data, make_random, default)


def test_evaluate_refuses_data_it_cannot_read_with_a_named_error(tmp_path):
    s = Session(zoo.mlp(), workspace=tmp_path)
    with pytest.raises(InputError, match="dict of inputs or an iterable of dicts"):
        s.evaluate(5, [np.zeros(4, np.int64)], precisions=["fp32"])
    with pytest.raises(InputError, match="no data"):
        s.evaluate(None, [np.zeros(4, np.int64)], precisions=["fp32"])
