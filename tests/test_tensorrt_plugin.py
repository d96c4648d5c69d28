"""Plugin lifecycle tracer. TensorRT-RTX 1.7 cannot build a Python plugin on this CPU machine (its network has no
add_plugin_v3 and the ONNX parser's plugin fallback aborts the process after create_plugin), so the callbacks are
driven here in the order the IPluginV3 documentation gives, by a small driver standing in for TensorRT."""
from __future__ import annotations

import numpy as np
import pytest

from trtlab.backends.tensorrt.plugin_tracer import TRACE_COLUMNS, trace_plugin
from trtlab.errors import ConfigError

from conftest import tensorrt_rtx_bindings

try:
    import tensorrt_rtx_bindings as trt
    BASES = (trt.IPluginV3, trt.IPluginV3OneCore, trt.IPluginV3OneBuild, trt.IPluginV3OneRuntime)
    CREATOR_BASE = trt.IPluginCreatorV3One
except ImportError:  # the tracer itself needs no TensorRT
    trt = None
    BASES, CREATOR_BASE = (object,), object


class ScalePlugin(*BASES):
    def __init__(self, scale=1.0):
        for base in BASES:
            if base is not object:
                base.__init__(self)
        self.scale, self.num_outputs, self.plugin_name, self.plugin_version = float(scale), 1, "Scale", "1"
        self.plugin_namespace = ""

    def get_capability_interface(self, type):
        return self

    def get_output_data_types(self, input_types):
        return [input_types[0]]

    def get_output_shapes(self, inputs, shape_inputs, expr_builder):
        return [inputs[0]]

    def configure_plugin(self, inp, out):
        pass

    def supports_format_combination(self, pos, in_out, num_inputs):
        return True

    def get_workspace_size(self, inp, out):
        return 0

    def get_valid_tactics(self):
        return [1, 2]

    def set_tactic(self, tactic):
        self.tactic = tactic

    def on_shape_change(self, inp, out):
        pass

    def enqueue(self, input_desc, output_desc, inputs, outputs, workspace, stream):
        outputs[0][...] = inputs[0] * self.scale

    def attach_to_context(self, context):
        return self.clone()

    def get_fields_to_serialize(self):
        return {"scale": self.scale}

    def clone(self):
        return ScalePlugin(self.scale)

    def destroy(self):
        pass


class ScaleCreator(CREATOR_BASE):
    def __init__(self):
        if CREATOR_BASE is not object:
            CREATOR_BASE.__init__(self)

    def create_plugin(self, name, fc, phase):
        return ScalePlugin(fc["scale"])


def drive(creator, tracer):
    """What TensorRT does with an IPluginV3 from parsing to inference (IPluginV3 docs; FAQ 16 for V2)."""
    x = np.arange(4, dtype=np.float32)
    phase = tracer.phase
    with phase("parse"):
        p = _parse(creator, x)
    with phase("build"):
        fields = _build(p, x)
    with phase("deserialize"):
        r = creator.create_plugin("scale_node", fields, "RUNTIME")
        r.set_tactic(2)
    with phase("infer"):
        # each execution context gets its own clone (FAQ 16's 'why clone()')
        c = r.attach_to_context(None)
        c.on_shape_change([], [])
        y = np.empty_like(x)
        c.enqueue([], [], [x], [y], 0, 0)
        c.destroy()
    with phase("teardown"):
        r.destroy()
        p.destroy()
    return y


def _parse(creator, x):
    # parse: the creator makes the network's plugin, which TensorRT queries for shapes and types
    p = creator.create_plugin("scale_node", {"scale": 2.0}, "BUILD")
    p.get_capability_interface("CORE")
    p.get_output_data_types(["FLOAT"])
    p.get_output_shapes([x.shape], [], None)
    return p


def _build(p, x):
    # build: clones configured and timed per tactic, then the build clone is serialized and destroyed
    b = p.clone()
    b.supports_format_combination(0, [], 1)
    b.supports_format_combination(1, [], 1)
    b.configure_plugin([], [])
    b.get_workspace_size([], [])
    for tactic in b.get_valid_tactics():
        b.set_tactic(tactic)
        b.enqueue([], [], [x], [np.empty_like(x)], 0, 0)
    fields = b.get_fields_to_serialize()
    b.destroy()
    return fields


def test_trace_table_follows_the_lifecycle():
    creator = ScaleCreator()
    with trace_plugin(ScalePlugin, ScaleCreator) as tracer:
        y = drive(creator, tracer)
    np.testing.assert_array_equal(y, np.arange(4) * 2.0)
    t = tracer.table()
    assert list(t.columns) == TRACE_COLUMNS and t["seq"].tolist() == list(range(len(t)))
    assert t["callback"].tolist()[:5] == ["create_plugin", "get_capability_interface", "get_output_data_types",
                                         "get_output_shapes", "clone"]
    assert t["object"].iloc[0] == "#1" and t["result"].iloc[0] == "#2"      # creator #1 made plugin #2
    assert t["result"].iloc[1] == "#2"                                       # capability interface is itself
    assert t[t["callback"] == "clone"]["result"].tolist()[0] == "#3"
    assert t[t["callback"] == "set_tactic"]["detail"].tolist() == ["tactic=1", "tactic=2", "tactic=2"]
    assert (t["callback"] == "enqueue").sum() == 3
    objs = tracer.objects().set_index("object")
    assert objs.loc["#3", "made_by"] == "clone of #2" and objs.loc["#3", "destroyed"]
    assert objs.loc["#4", "made_by"] == "create_plugin of #1"
    # attach_to_context clones inside: the table shows the nested clone and what attach_to_context returned
    assert objs.loc["#5", "made_by"] == "clone of #4" and objs.loc["#5", "phases"] == ["infer"]
    assert t[t["callback"] == "attach_to_context"][["object", "result"]].values.tolist() == [["#4", "#5"]]
    assert list(dict.fromkeys(t["phase"])) == ["parse", "build", "deserialize", "infer", "teardown"]
    assert objs.loc[["#2", "#3", "#4", "#5"], "destroyed"].all()
    assert "ScalePlugin::clone() #2 --> #3" in tracer.text()


def test_phases_threads_and_restore():
    creator = ScaleCreator()
    tracer = trace_plugin(ScalePlugin, ScaleCreator)
    with tracer.phase("parse"):
        p = creator.create_plugin("n", {"scale": 1.0}, "BUILD")
    with tracer.phase("build"):
        p.clone()
    assert tracer.table()["phase"].tolist() == ["parse", "build"]
    tracer.restore()
    p.clone()
    assert len(tracer.table()) == 2 and "__trtlab_wrapped__" not in dir(ScalePlugin.clone)
    with pytest.raises(ConfigError, match="takes a plugin or creator class"):
        tracer.instrument(p)


def test_rtx_network_has_no_python_plugin_layer():
    trt = tensorrt_rtx_bindings()  # skips here without it; fails under CI=true
    # the reason this tracer is exercised by a driver here: if a future RTX adds add_plugin_v3, build it for real
    assert not hasattr(trt.INetworkDefinition, "add_plugin_v3")
