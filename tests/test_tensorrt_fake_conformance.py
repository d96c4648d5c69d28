"""The TensorRT fake (tests/test_tensorrt_fakes.py) against the real `tensorrt_rtx_bindings`: every class, method,
property and enum member the fake offers exists in the real bindings, with the same parameter names and enum values.

pybind11 methods have no `inspect.signature`; their signatures are the first line of `__doc__`
(`name(self: T, arg: type = default) -> ret`), or one numbered line per overload after "Overloaded function.".

Where full TensorRT (`tensorrt`) differs from TensorRT-RTX: `ComputeCapability` and `IRuntimeCache`, and
`IRuntimeConfig.create_runtime_cache` / `set_runtime_cache`, exist only in TensorRT-RTX (full TensorRT 10.x
builds for the GPU it runs on and its IRuntimeConfig holds only the allocation strategy); the rest of the fake's
surface carries the same names in both (trtlab's `_import.TrtApi` uses the RTX-only parts only when `is_rtx`).
"""
from __future__ import annotations

import enum
import inspect
import re
from typing import Any

import pytest

import test_tensorrt_fakes as fakes
from conftest import tensorrt_rtx_bindings

trt = tensorrt_rtx_bindings(module_level=True)  # skips here without it; fails under CI=true

# the fake's stand-ins for objects TensorRT creates (not constructible from Python), and the real class of each
STAND_INS = {fakes.FakeEngine: "ICudaEngine", fakes.FakeContext: "IExecutionContext",
             fakes.FakeRuntimeConfig: "IRuntimeConfig", fakes.FakeRuntimeCache: "IRuntimeCache",
             fakes.FakeInspector: "EngineInspector"}
# attributes of the stand-ins that model real properties (the others are the fake's own bookkeeping)
PROPERTIES = {fakes.FakeEngine: ("num_io_tensors", "num_optimization_profiles"),
              fakes.FakeContext: ("profiler", "active_optimization_profile"),
              fakes.FakeInspector: ("execution_context",)}
# what the runtime calls, so none of it can drop out of the check unnoticed
CALLED = {fakes.FakeEngine: {"get_tensor_name", "get_tensor_mode", "get_tensor_dtype", "get_tensor_format",
                             "get_tensor_shape", "is_shape_inference_io", "get_tensor_profile_shape",
                             "create_execution_context", "create_runtime_config", "create_engine_inspector"},
          fakes.FakeContext: {"set_optimization_profile_async", "set_input_shape", "get_tensor_shape",
                              "set_tensor_address", "get_tensor_address", "set_output_allocator",
                              "get_output_allocator", "execute_v2", "execute_async_v3"}}


# ---- reading real signatures ----------------------------------------------------------------------------------
Param = tuple[str, bool]  # (name, has a default)


def _split_top(text: str, sep: str = ",") -> list[str]:
    """Split at `sep` outside brackets and quotes (defaults such as <Enum.X: 0> or [1, 2] stay whole)."""
    parts, depth, quote, cur = [], 0, "", []
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "([{<":
            depth += 1
        elif ch in ")]}>":
            depth -= 1
        elif ch == sep and depth == 0:
            parts.append("".join(cur))
            cur = []
            continue
        cur.append(ch)
    if "".join(cur).strip():
        parts.append("".join(cur))
    return [p.strip() for p in parts]


def _params_of(line: str, name: str) -> list[Param] | None:
    """Parameters (without self) of one pybind11 signature line `name(self: T, a: int = 1) -> r`."""
    m = re.match(rf"\s*(?:\d+\.\s*)?{re.escape(name)}\(", line)
    if not m:
        return None
    depth, i = 1, m.end()
    while depth and i < len(line):
        depth += {"(": 1, ")": -1}.get(line[i], 0)
        i += 1
    params = []
    for part in _split_top(line[m.end():i - 1]):
        if part.startswith("*"):
            return None  # the "(*args, **kwargs)" umbrella line of an overload set
        pname = re.split(r"[:=]", part, maxsplit=1)[0].strip()
        params.append((pname, len(_split_top(part, "=")) > 1))
    if params and params[0][0] == "self":
        params = params[1:]
    return params


def real_overloads(owner: Any, name: str) -> list[list[Param]]:
    """Every accepted parameter list of `owner.name` in the real bindings ([] if it has none readable)."""
    obj = inspect.getattr_static(owner, name)
    try:
        sig = inspect.signature(getattr(owner, name))
        return [[(p.name, p.default is not p.empty) for p in sig.parameters.values()
                 if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]]
    except (TypeError, ValueError):
        pass
    doc = getattr(obj, "__doc__", None) or ""
    out = [p for p in (_params_of(line, name) for line in doc.splitlines()) if p is not None]
    return out


def fake_params(func: Any) -> list[Param]:
    sig = inspect.signature(func)
    bad = [p.name for p in sig.parameters.values() if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD, p.KEYWORD_ONLY)]
    assert not bad, f"{func.__qualname__}: the fake must spell out its parameters, not {bad}"
    return [(p.name, p.default is not p.empty) for p in sig.parameters.values() if p.name != "self"]


def call_accepted(fake: list[Param], overloads: list[list[Param]]) -> list[str]:
    """Each way the fake can be called (its required parameters, plus each optional one in turn) must be a
    call some real overload accepts by the same names; returns the calls no overload accepts."""
    required = sum(1 for _, d in fake if not d)
    missing = []
    for k in range(required, len(fake) + 1):
        names = [n for n, _ in fake[:k]]
        if not any([n for n, _ in real[:k]] == names and len(real) >= k and all(d for _, d in real[k:])
                   for real in overloads):
            missing.append(f"({', '.join(names)})")
    return missing


# ---- the checks -------------------------------------------------------------------------------------------------
def _public_methods(cls: type) -> dict[str, Any]:
    out = {}
    for klass in reversed(cls.__mro__[:-1]):  # without object
        for name, value in vars(klass).items():
            if not name.startswith("_") and inspect.isfunction(value):
                out[name] = value
    return out


def check_class(fake: type, real: type, properties: tuple[str, ...] = (), with_init: bool = False) -> list[str]:
    """What `fake` offers that `real` lacks or spells differently."""
    problems = []
    methods = _public_methods(fake)
    if with_init:
        methods["__init__"] = fake.__init__
    for name, func in sorted(methods.items()):
        where = f"{real.__name__}.{name}"
        if not hasattr(real, name):
            problems.append(f"{where}: no such method in {trt.__name__}")
            continue
        overloads = real_overloads(real, name)
        if not overloads:
            problems.append(f"{where}: no readable signature in {trt.__name__}")
            continue
        for call in call_accepted(fake_params(func), overloads):
            problems.append(f"{where}{call}: the fake accepts it, {trt.__name__} has only "
                            + " | ".join("(" + ", ".join(n + ("=" if d else "") for n, d in o) + ")"
                                         for o in overloads))
    for name in properties:
        if not isinstance(inspect.getattr_static(real, name, None), property):
            problems.append(f"{real.__name__}.{name}: not a property in {trt.__name__}")
    for name, value in vars(fake).items():
        if isinstance(value, type) and issubclass(value, enum.Enum):
            problems += check_enum(value, getattr(real, name, None), f"{real.__name__}.{name}")
    return problems


def check_enum(fake: type[enum.Enum], real: Any, where: str) -> list[str]:
    if real is None or not hasattr(real, "__members__"):
        return [f"{where}: no such enum in {trt.__name__}"]
    members = dict(real.__members__)
    out = []
    for m in fake:
        if m.name not in members:
            out.append(f"{where}.{m.name}: no such member in {trt.__name__} (it has {sorted(members)})")
        elif int(members[m.name]) != int(m.value):
            out.append(f"{where}.{m.name} = {m.value} in the fake, {int(members[m.name])} in {trt.__name__}")
    return out


def check_module(fake_module: Any) -> list[str]:
    """Every name of the fake module exists in the real one; its classes and enums as check_class/check_enum say."""
    problems = []
    for name, value in sorted(vars(fake_module).items()):
        if not hasattr(trt, name):
            problems.append(f"{name}: no such name in {trt.__name__}")
        elif isinstance(value, type) and issubclass(value, enum.Enum):
            problems += check_enum(value, getattr(trt, name), name)
        elif isinstance(value, type):
            problems += check_class(value, getattr(trt, name), with_init=True)
    return problems


# ---- tests ----------------------------------------------------------------------------------------------------
def test_the_fake_module_matches_the_real_bindings():
    module = fakes.make_module(fakes.FakeCudart())
    assert {"Runtime", "ILogger", "IProfiler", "TensorIOMode", "LayerInformationFormat",
            "ComputeCapability"} <= set(vars(module))
    assert check_module(module) == []


@pytest.mark.parametrize("fake", list(STAND_INS), ids=lambda c: c.__name__)
def test_each_stand_in_matches_its_real_class(fake):
    real = getattr(trt, STAND_INS[fake])
    assert _public_methods(fake), f"{fake.__name__} offers no methods to check"
    assert check_class(fake, real, PROPERTIES.get(fake, ())) == []


@pytest.mark.parametrize("fake", list(CALLED), ids=lambda c: c.__name__)
def test_every_call_of_the_runtime_is_checked(fake):
    assert CALLED[fake] <= set(_public_methods(fake))


def test_the_stand_ins_cover_what_trtlab_calls():
    # every real class the fake stands in for is named here, so a new fake class without a STAND_INS entry fails
    offered = {name for name, v in vars(fakes).items() if isinstance(v, type) and name.startswith("Fake")}
    assert offered - {"FakeCudart"} == {c.__name__ for c in STAND_INS}


def test_the_checker_reads_pybind_signatures_and_overloads():
    assert real_overloads(trt.IExecutionContext, "set_tensor_address") == [[("name", False), ("memory", False)]]
    create = real_overloads(trt.ICudaEngine, "create_execution_context")
    assert [("strategy", True)] in create and [("runtime_config", True)] in create
    assert real_overloads(trt.Runtime, "__init__") == [[("logger", False)]]
    assert _params_of("f(self: T, a: x.E = <E.S: 0>, b: list[int] = [1, 2]) -> None", "f") == [("a", True),
                                                                                               ("b", True)]


def test_a_wrong_fake_entry_fails_the_check():
    class WrongContext:
        profiler = None

        def set_input_shape(self, tensor, shape):  # real: (name, shape)
            return True

        def execute_async_v3(self, stream):  # real: (stream_handle)
            return True

        def execute_v4(self, bindings):  # no such method
            return True

        def get_tensor_shape(self, name, profile=0):  # real takes no profile
            return ()

    problems = check_class(WrongContext, trt.IExecutionContext, ("profiler", "batch_size"))
    text = "\n".join(problems)
    assert "IExecutionContext.set_input_shape(tensor, shape)" in text
    assert "IExecutionContext.execute_async_v3(stream)" in text
    assert "IExecutionContext.execute_v4: no such method" in text
    assert "IExecutionContext.get_tensor_shape(name, profile)" in text
    assert "IExecutionContext.get_tensor_shape(name)" not in text  # the call without the extra argument is fine
    assert "IExecutionContext.batch_size: not a property" in text
    assert len(problems) == 5, problems

    class Mode(enum.Enum):
        INPUT = 1
        OUTPUT = 3  # real: 2
        BOTH = 4    # no such member
    wrong = check_enum(Mode, trt.TensorIOMode, "TensorIOMode")
    assert wrong == ["TensorIOMode.OUTPUT = 3 in the fake, 2 in tensorrt_rtx_bindings",
                     f"TensorIOMode.BOTH: no such member in tensorrt_rtx_bindings (it has "
                     f"{sorted(trt.TensorIOMode.__members__)})"]

    class Logger:
        class Severity(enum.Enum):
            FATAL = 0

        def log(self, level, message):  # real: (severity, msg)
            pass
    text = "\n".join(check_class(Logger, trt.ILogger))
    assert "ILogger.log(level, message)" in text and "ILogger.Severity.FATAL: no such member" in text


# ---- the cuda-python half of the fake (FakeCudart) against cuda.bindings.runtime ------------------------------
@pytest.fixture(scope="module")
def cudart():
    from conftest import installed
    return installed("cuda.bindings.runtime", "cuda-python (cuda-bindings)", 'pip install -e ".[test]"')


def _cudart_calls(fake: type) -> dict[str, Any]:
    return {n: v for n, v in vars(fake).items() if n.startswith("cuda") and inspect.isfunction(v)}


def check_cudart(fake: type, runtime: Any) -> list[str]:
    """What a FakeCudart-like class offers that cuda.bindings.runtime lacks or spells differently."""
    problems = []
    for name, func in sorted(_cudart_calls(fake).items()):
        real = getattr(runtime, name, None)
        if real is None:
            problems.append(f"{name}: no such function in cuda.bindings.runtime")
            continue
        overloads = [[(p.name, p.default is not p.empty) for p in inspect.signature(real).parameters.values()]]
        for call in call_accepted(fake_params(func), overloads):
            problems.append(f"{name}{call}: the fake accepts it, cuda.bindings.runtime has "
                            f"({', '.join(n for n, _ in overloads[0])})")
    return problems


def test_the_fake_cudart_matches_cuda_bindings(cudart):
    assert len(_cudart_calls(fakes.FakeCudart)) >= 20
    assert check_cudart(fakes.FakeCudart, cudart) == []
    for e in (fakes.cudaError_t, fakes.cudaMemcpyKind, fakes.cudaStreamCaptureMode):
        assert check_enum(e, getattr(cudart, e.__name__), e.__name__) == []
    assert isinstance(cudart.cudaStream_t, type)
    # cudaGetDeviceProperties' fields that trtlab reads exist on the real cudaDeviceProp
    _, props = fakes.FakeCudart().cudaGetDeviceProperties(0)
    real_props = cudart.cudaDeviceProp()
    assert [f for f in vars(props) if not hasattr(real_props, f)] == []


def test_the_fake_cudart_returns_tuples_like_cuda_bindings(cudart):
    """cuda-python returns (cudaError_t, *values) of a fixed length whatever the error: calls that are safe
    without a GPU show the real length, which the fake must match."""
    fake = fakes.FakeCudart()
    for name, args in (("cudaGetDeviceCount", ()), ("cudaGetDevice", ()), ("cudaStreamCreate", ()),
                       ("cudaEventCreate", ()), ("cudaMalloc", (16,)), ("cudaGetDeviceProperties", (0,)),
                       ("cudaGetErrorName", (0,))):
        real = getattr(cudart, name)(*args)
        mine = getattr(fake, name)(*args)
        assert isinstance(real, tuple) and isinstance(mine, tuple), name
        assert len(mine) == len(real), (name, real, mine)
        assert isinstance(real[0], cudart.cudaError_t) and int(mine[0]) in {int(v) for v in cudart.cudaError_t}


def test_a_wrong_cudart_entry_fails_the_check(cudart):
    class WrongCudart:
        def cudaMalloc(self, nbytes):  # real: (size)
            return 0, 0

        def cudaMemcpyAsync(self, dst, src, count, kind):  # real also takes the stream
            return (0,)

        def cudaStreamCreateFast(self):  # no such function
            return 0, 0

    assert check_cudart(WrongCudart, cudart) == [
        "cudaMalloc(nbytes): the fake accepts it, cuda.bindings.runtime has (size)",
        "cudaMemcpyAsync(dst, src, count, kind): the fake accepts it, cuda.bindings.runtime has "
        "(dst, src, count, kind, stream)",
        "cudaStreamCreateFast: no such function in cuda.bindings.runtime"]


# ---- trtlab's implementations of TensorRT's application-implemented classes -------------------------------------
def documented_callbacks(real: type) -> dict[str, list[str]]:
    """Methods an application implements, as the class docstring shows them (`def name(self, a, b):`): pybind11
    exposes no signature for methods that exist only as C++ virtuals."""
    doc = real.__doc__ or ""
    return {m.group(1): [p.strip() for p in m.group(2).split(",")[1:] if p.strip()]
            for m in re.finditer(r"def (\w+)\(([^)]*)\):", doc) if m.group(1) != "__init__"}


def check_callbacks(impl: Any, real: type) -> list[str]:
    """What `impl` (an instance of trtlab's subclass) lacks or spells differently from the documented callbacks."""
    problems = []
    documented = documented_callbacks(real)
    for name, params in sorted(documented.items()):
        method = getattr(type(impl), name, None)
        if method is None or method is getattr(real, name, None):
            problems.append(f"{real.__name__}.{name}: not implemented by trtlab's {type(impl).__name__}")
            continue
        mine = [p for p in inspect.signature(method).parameters if p != "self"]
        if mine != params:
            problems.append(f"{real.__name__}.{name}({', '.join(mine)}): documented as ({', '.join(params)})")
    return problems


def _trtlab_callbacks() -> dict[str, Any]:
    from trtlab.backends.tensorrt._import import TrtApi
    from trtlab.backends.tensorrt.logger import shared_logger
    from trtlab.backends.tensorrt.outputs import make_output_allocator
    from trtlab.backends.tensorrt.runtime import make_profiler
    api = TrtApi(trt, trt.__name__, "tensorrt-rtx", trt.__version__)
    return {"IOutputAllocator": make_output_allocator(api, None), "IProfiler": make_profiler(api),
            "ILogger": shared_logger(api)}


@pytest.mark.parametrize("real", ["IOutputAllocator", "IProfiler", "ILogger"])
def test_trtlab_implements_the_documented_callbacks(real):
    impl = _trtlab_callbacks()[real]
    assert isinstance(impl, getattr(trt, real))  # a subclass of the real class, constructed as documented
    assert documented_callbacks(getattr(trt, real)), f"{real}'s docstring shows no method to implement"
    assert check_callbacks(impl, getattr(trt, real)) == []


def test_the_documented_output_allocator_callbacks_are_the_ones_the_fake_calls():
    assert documented_callbacks(trt.IOutputAllocator) == {
        "reallocate_output": ["tensor_name", "memory", "size", "alignment"],
        "reallocate_output_async": ["tensor_name", "memory", "size", "alignment", "stream"],
        "notify_shape": ["tensor_name", "shape"]}
    src = inspect.getsource(fakes.FakeContext.execute_async_v3)
    assert "reallocate_output_async(t.name, " in src and "notify_shape(t.name, " in src


def test_a_wrong_callback_fails_the_check():
    class Alloc(trt.IOutputAllocator):
        def __init__(self):
            trt.IOutputAllocator.__init__(self)

        def reallocate_output_async(self, name, memory, size, alignment, stream):  # documented: tensor_name
            return 0

        def notify_shape(self, tensor_name, shape):
            pass
    assert check_callbacks(Alloc(), trt.IOutputAllocator) == [
        "IOutputAllocator.reallocate_output: not implemented by trtlab's Alloc",
        "IOutputAllocator.reallocate_output_async(name, memory, size, alignment, stream): documented as "
        "(tensor_name, memory, size, alignment, stream)"]
