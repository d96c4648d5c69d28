"""Feed validation (trtlab.feeds): casts that change values are refused naming the input; value-preserving ones pass.

Expected outputs come from numpy on the original values, so a silent wrap-around or overflow would show."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import trtlab
from trtlab.errors import InputError, LossyCastError
from trtlab.precision.calibration import calibrate


def _model(elem: int, op: str = "Identity", name: str = "feeds") -> onnx.ModelProto:
    inits = []
    if op == "MatMul":
        inits = [numpy_helper.from_array(np.eye(4, dtype=np.float32), "w")]
        node = helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")
    else:
        node = helper.make_node(op, ["x"], ["y"], name="op")
    g = helper.make_graph([node], name, [helper.make_tensor_value_info("x", elem, ["batch", 4])],
                          [helper.make_tensor_value_info("y", elem, ["batch", 4])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


@pytest.fixture
def int32_engine(tmp_path):
    return trtlab.Session(_model(TensorProto.INT32), workspace=tmp_path).build(batch=1)


@pytest.fixture
def fp16_engine(tmp_path):
    return trtlab.Session(_model(TensorProto.FLOAT16, "Relu"), workspace=tmp_path).build(batch=1)


def test_int64_beyond_int32_is_refused_naming_input_and_range(int32_engine):
    x = np.array([[1, 2, 3, 2**31 + 5]], np.int64)
    with pytest.raises(LossyCastError, match=r"input 'x' is int64 with values in \[1, 2147483653\], outside "
                                             r"int32's range \[-2147483648, 2147483647\]"):
        int32_engine.run({"x": x})


def test_int64_that_fits_int32_is_accepted_unchanged(int32_engine):
    x = np.array([[-7, 0, 2**31 - 1, -(2**31)]], np.int64)
    y = int32_engine.run({"x": x})["y"]
    assert y.dtype == np.int32
    np.testing.assert_array_equal(y.astype(np.int64), x)


def test_python_ints_are_accepted(int32_engine):
    y = int32_engine.run({"x": [[1, 2, 3, 4]]})["y"]
    np.testing.assert_array_equal(y, np.array([[1, 2, 3, 4]], np.int32))


def test_float32_overflowing_float16_is_refused(fp16_engine):
    x = np.array([[1.0, 70000.0, -2.0, 3.0]], np.float32)
    with pytest.raises(LossyCastError, match=r"input 'x' is float32 with values in \[-2\.0, 70000\.0\]; 1 value\(s\) "
                                             r"lie beyond float16's largest finite value 65504 and would become inf"):
        fp16_engine.run({"x": x})


def test_float32_in_float16_range_is_accepted(fp16_engine):
    x = np.array([[1.5, 65504.0, -2.0, np.inf]], np.float32)  # inf stays inf: no finite value changes
    y = fp16_engine.run({"x": x})["y"]
    np.testing.assert_array_equal(y, np.maximum(x, 0).astype(np.float16))


def test_int64_not_exact_in_float32_is_refused(tmp_path):
    eng = trtlab.Session(_model(TensorProto.FLOAT, "Relu"), workspace=tmp_path).build(batch=1)
    with pytest.raises(LossyCastError, match=r"input 'x' is int64 .*float32 cannot hold exactly"):
        eng.run({"x": np.array([[2**24 + 1, 0, 0, 0]], np.int64)})
    np.testing.assert_array_equal(eng.run({"x": np.array([[3, -4, 5, 2**24]], np.int64)})["y"],
                                  np.array([[3, 0, 5, 2**24]], np.float32))
    with pytest.raises(LossyCastError, match="float64 .*beyond float32's largest finite value"):
        eng.run({"x": np.array([[1e300, 0, 0, 0]])})


def test_every_entry_point_refuses_the_same_lossy_feed(tmp_path):
    """Engine.run, compare, calibrate and evaluate share one validation: each refuses the overflowing batch."""
    model = _model(TensorProto.FLOAT, "MatMul")
    bad = {"x": np.array([[1e300, 0.0, 0.0, 0.0]])}
    s = trtlab.Session(model, workspace=tmp_path)
    with pytest.raises(LossyCastError, match="batch 0: input 'x'"):
        s.compare(data=[bad], batch=1)
    with pytest.raises(LossyCastError, match="calibration batch 0: input 'x'"):
        calibrate(model, [bad], method="minmax")
    with pytest.raises(LossyCastError, match="evaluate: batch 0: input 'x'"):
        s.evaluate([bad], [np.array([0])], precisions=["fp32"], batch=1)
    with pytest.raises(InputError, match="evaluate: batch 0 is a list"):
        s.evaluate([[1, 2]], [np.array([0])], precisions=["fp32"], batch=1)
    with pytest.raises(InputError, match="evaluate: batch 0: input 'x' is missing"):
        s.evaluate([{}], [np.array([0])], precisions=["fp32"], batch=1)
    ok = {"x": np.array([[1.0, 2.0, 3.0, 4.0]])}  # float64, exact in float32
    assert s.compare(data=[ok], batch=1).batches == 1
