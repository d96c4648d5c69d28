"""fp16 on real detectors: Resize converts (ONNX defines it for float16; only its roi/scales stay float32), and a
BatchNormalization whose statistics fp16 cannot hold stays fp32 with a note saying which and why. Checked against
plain ONNX Runtime of the fp32 model on the real photo, and against ONNX's own schemas."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto

import trtlab

pytestmark = pytest.mark.corpus


def _output_types(model: onnx.ModelProto, op_type: str) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {vi.name: vi.type.tensor_type.elem_type for vi in inferred.graph.value_info}
    return {n.name: types.get(n.output[0]) for n in inferred.graph.node if n.op_type == op_type}


@pytest.mark.parametrize("model_id", ["ppocr_det", "nudenet"])
def test_resize_is_fp16_in_the_built_model(fetched, tmp_path, model_id):
    m = fetched(model_id)
    opset = next(i.version for i in onnx.load(str(m.path), load_external_data=False).opset_import
                 if i.domain in ("", "ai.onnx"))
    schema = onnx.defs.get_schema("Resize", opset)
    assert "tensor(float16)" in schema.type_constraints[0].allowed_type_strs  # ONNX allows fp16 X/Y here
    assert schema.inputs[2].type_str == "tensor(float)"  # ... and fixes scales to float32
    s = trtlab.Session(str(m.path), workspace=tmp_path)
    engine = s.build("fp16", shapes=m.shapes())
    resize = _output_types(engine.variant.model, "Resize")
    assert resize and set(resize.values()) == {TensorProto.FLOAT16}, resize
    assert not any("Resize" in n for n in engine.variant.notes), engine.variant.notes


def test_ppocr_det_fp16_keeps_the_batchnorm_fp16_cannot_hold_and_stays_close_to_fp32(fetched, tmp_path):
    m = fetched("ppocr_det")
    s = trtlab.Session(str(m.path), workspace=tmp_path)
    engine = s.build("fp16", shapes=m.shapes())
    notes = [n for n in engine.variant.notes if "p2o.BatchNormalization.1" in n]
    assert notes and "variance reaches 9.79e+07" in notes[0] and "65504" in notes[0], engine.variant.notes
    bn = _output_types(engine.variant.model, "BatchNormalization")
    assert bn.pop("p2o.BatchNormalization.1") == TensorProto.FLOAT
    assert set(bn.values()) == {TensorProto.FLOAT16}  # the other BatchNormalizations are converted
    so = ort.SessionOptions()
    so.log_severity_level = 3
    ref = ort.InferenceSession(str(m.path), so, providers=["CPUExecutionProvider"])
    for feeds in m.feeds():
        want = ref.run(None, feeds)[0]
        got = engine.run(feeds)[ref.get_outputs()[0].name]
        assert np.isfinite(got).all()
        assert np.abs(got - want).max() < 0.05  # the probability map in [0, 1]: 0.024 measured (1.0 before)
        assert not np.array_equal(got, want)
