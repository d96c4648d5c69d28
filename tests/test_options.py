"""Build options are checked against what the backend declares: a typo is refused with its close matches, a value
outside the declared choices is refused, and every option a backend's build reads is declared."""
from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

import trtlab
from trtlab.config import PRECISION_OPTIONS
from trtlab.errors import ConfigError, UnknownOptionError

PACKAGE = Path(trtlab.__file__).parent


def _options_read(*files: Path) -> set[str]:
    """Names read with config.option("name", ...) (or self.config.option) in the given source files."""
    names = set()
    for f in files:
        for node in ast.walk(ast.parse(f.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "option"
                    and node.args and isinstance(node.args[0], ast.Constant)):
                names.add(node.args[0].value)
    return names


@pytest.fixture
def session(tmp_path):
    return trtlab.Session(trtlab.zoo.mlp(), workspace=tmp_path)


def test_typo_in_a_build_argument_is_refused_with_the_close_match(session):
    with pytest.raises(UnknownOptionError, match=r"unknown build option 'precison' for backend onnxruntime "
                                                 r"\(did you mean 'precision'\?\)\. Its options are .*graph_optimization"):
        session.build(batch=1, precison="fp16")
    assert session.engines().empty  # nothing was built with the typo dropped
    with pytest.raises(UnknownOptionError, match=r"did you mean 'graph_optimization'"):
        session.build(batch=1, graph_optimisation="basic")


def test_declared_choices_are_checked(session):
    with pytest.raises(ConfigError, match=r"graph_optimization='fast' is not valid: choose from 'disable', 'basic'"):
        session.build(batch=1, graph_optimization="fast")
    with pytest.raises(ConfigError, match=r"cuda_options\['prefer_nhwc'\]='2' is not valid"):
        session.make_config(batch=1, cuda_options={"prefer_nhwc": "2"})
    with pytest.raises(ConfigError, match=r"io_binding='yes' is not valid: choose from True, False"):
        session.build(batch=1, io_binding="yes")


def test_declared_options_build(session):
    """What the backend declares is accepted, and the spelled-right precision builds what it says."""
    x = {"input": np.random.default_rng(0).standard_normal((1, 64)).astype(np.float32)}
    eng = session.build(batch=1, precision="fp16", keep_io_types=False, cpu_mem_arena=False)
    assert eng.config.option("cpu_mem_arena") is False
    assert eng.run({"input": x["input"].astype(np.float16)})[eng.outputs[0].name].dtype == np.float16


def test_sweep_and_tune_refuse_unknown_arguments_before_running(session):
    with pytest.raises(UnknownOptionError, match="'executer'"):
        session.sweep(batch=[1], executer="ray")
    with pytest.raises(ConfigError, match="graph_optimization='bogus'"):
        session.sweep(batch=[1], options={"graph_optimization": ["all", "bogus"]})
    with pytest.raises(UnknownOptionError, match="'executer'"):
        session.tune(budget_s=1, executer="ray")
    assert session.engines().empty and session.results().empty


def test_every_option_the_onnxruntime_build_reads_is_declared():
    from trtlab.backends.onnxruntime import OnnxRuntimeBackend
    read = _options_read(PACKAGE / "backends" / "onnxruntime.py")
    assert read and read <= set(OnnxRuntimeBackend().options())


def test_every_option_the_precision_transform_reads_is_declared():
    read = _options_read(PACKAGE / "precision" / "__init__.py")
    assert read and read <= set(PRECISION_OPTIONS)


@pytest.fixture
def rtx_session(tmp_path):
    pytest.importorskip("tensorrt_rtx_bindings", reason="TensorRT-RTX wheels (tensorrt-rtx-cu13-bindings) absent")
    return trtlab.Session(trtlab.zoo.mlp(), backend="tensorrt-rtx", workspace=tmp_path)


def test_tensorrt_rtx_options_are_checked(rtx_session):
    with pytest.raises(UnknownOptionError, match=r"'opt_levl' for backend tensorrt-rtx \(did you mean 'opt_level'\?\)"):
        rtx_session.make_config(batch=1, compute_capability="8.9", opt_levl=2)
    with pytest.raises(UnknownOptionError, match="'graph_optimization' for backend tensorrt-rtx"):  # an ORT option
        rtx_session.make_config(batch=1, graph_optimization="all")
    with pytest.raises(ConfigError, match=r"compute_capability='9\.0' is not valid: choose from .*'8\.9'"):
        rtx_session.make_config(batch=1, compute_capability=["8.6", "9.0"])
    config = rtx_session.make_config(batch=1, compute_capability=["8.6", "sm120"], opt_level=2, mode="execute")
    assert config.option("opt_level") == 2


def test_every_option_the_tensorrt_build_reads_is_declared():
    pytest.importorskip("tensorrt_rtx_bindings", reason="TensorRT-RTX wheels (tensorrt-rtx-cu13-bindings) absent")
    from trtlab.backends import get_backend
    read = _options_read(*(PACKAGE / "backends" / "tensorrt").glob("*.py"))
    assert read and read <= set(get_backend("tensorrt-rtx").options())
