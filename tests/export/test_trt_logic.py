"""TensorRT logic that has no CPU equivalent, checked here without TensorRT: the 10/11 recipe,
the trtexec line, dtype mapping and the engine session against a small fake of NVIDIA's
engine / execution-context interface (names and return types as documented for TensorRT 10).

The fake context really reads its input from and writes its output to the addresses it is
given (CPU tensors here), so a missing or wrong binding shows up as wrong numbers."""

from __future__ import annotations

import ctypes
import enum
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from dna_zoo.export.format_trt import trtexec_command
from dna_zoo.export.options import ExportOptions
from dna_zoo.export.trt import (
    EngineError,
    EngineSession,
    apply_recipe,
    build_recipe,
    torch_dtype,
    trt_major,
)


class IOMode(enum.Enum):
    INPUT = 1
    OUTPUT = 2


class DataType(enum.Enum):  # the member names of tensorrt.DataType
    FLOAT = 0
    HALF = 1
    INT8 = 2
    INT32 = 3
    BOOL = 4
    UINT8 = 5
    BF16 = 7
    INT64 = 8
    FP8 = 9


def fake_trt(*, flags=("FP16", "INT8", "TF32"), strongly_typed=False, version="10.3.0"):
    ncf = SimpleNamespace(**({"STRONGLY_TYPED": 1} if strongly_typed else {}))
    return SimpleNamespace(
        __version__=version,
        TensorIOMode=IOMode,
        BuilderFlag=SimpleNamespace(**{f: f for f in flags}),
        NetworkDefinitionCreationFlag=ncf,
    )


class FakeConfig:
    def __init__(self) -> None:
        self.flags = {"TF32"}  # TensorRT enables TF32 by default

    def set_flag(self, f) -> None:
        self.flags.add(f)

    def clear_flag(self, f) -> None:
        self.flags.discard(f)


def _view(ptr: int, shape, dtype: torch.dtype) -> np.ndarray:
    np_dtype = torch.empty(0, dtype=dtype).numpy().dtype
    n = int(np.prod(shape)) * np_dtype.itemsize
    return np.ctypeslib.as_array((ctypes.c_byte * n).from_address(ptr)).view(np_dtype).reshape(shape)


class FakeContext:
    """out[b, j] = sum(x[b]) + j, computed from the bound input address into the output address."""

    def __init__(self, engine: FakeEngine) -> None:
        self.e, self.shape, self.addr, self.runs = engine, None, {}, []
        self.fail_address = self.fail_execute = False

    def set_input_shape(self, name, shape) -> bool:
        lo, _, hi = self.e.get_tensor_profile_shape(name, 0)
        if not lo[0] <= shape[0] <= hi[0] or tuple(shape[1:]) != tuple(hi[1:]):
            return False
        self.shape = tuple(shape)
        return True

    def get_tensor_shape(self, name):
        if name == "input":
            return self.shape or self.e.get_tensor_shape(name)
        return (self.shape[0] if self.shape else -1, self.e.classes)

    def set_tensor_address(self, name, ptr) -> bool:
        if self.fail_address:
            return False
        self.addr[name] = ptr
        return True

    def execute_async_v3(self, stream_handle) -> bool:
        if self.fail_execute:
            return False
        x = _view(self.addr["input"], self.shape, torch_dtype(self.e.dtypes["input"])).astype(np.float64)
        out_type = torch_dtype(self.e.dtypes["output"])
        out = _view(self.addr["output"], (self.shape[0], self.e.classes), out_type)
        out[:] = x.reshape(self.shape[0], -1).sum(1)[:, None] + np.arange(self.e.classes)
        self.runs.append(self.shape[0])
        return True


class FakeEngine:
    num_io_tensors = 2
    classes = 5

    def __init__(self, *, max_batch: int = 8, static: int | None = None, dtype=DataType.FLOAT) -> None:
        self.max, self.static = max_batch, static
        self.dtypes = {"input": dtype, "output": dtype}
        self.context = FakeContext(self)

    def get_tensor_name(self, i: int) -> str:
        return ["input", "output"][i]

    def get_tensor_mode(self, name):
        return IOMode.INPUT if name == "input" else IOMode.OUTPUT

    def get_tensor_dtype(self, name):
        return self.dtypes[name]

    def get_tensor_shape(self, name):
        b = self.static if self.static is not None else -1
        return (b, 3, 4, 4) if name == "input" else (b, self.classes)

    def get_tensor_profile_shape(self, name, profile_index):
        lo = self.static or 1
        hi = self.static or self.max
        return ((lo, 3, 4, 4), (lo, 3, 4, 4), (hi, 3, 4, 4))

    def create_execution_context(self):
        return self.context


STREAM = SimpleNamespace(cuda_stream=0, synchronize=lambda: None)


def session(engine: FakeEngine) -> EngineSession:
    return EngineSession(engine, trt=fake_trt(), device="cpu", stream=STREAM)


def expected(x: torch.Tensor, classes: int = FakeEngine.classes) -> torch.Tensor:
    return x.double().reshape(len(x), -1).sum(1)[:, None] + torch.arange(classes)


# --- versions and recipes -------------------------------------------------------------------
@pytest.mark.parametrize(("version", "major"), [("10.3.0.30", 10), ("10.16.0", 10), ("11.1.0", 11)])
def test_major_version_is_read(version, major):
    assert trt_major(version) == major


def test_old_or_unreadable_tensorrt_is_refused():
    with pytest.raises(EngineError, match="older than 10"):
        trt_major("8.6.1")
    with pytest.raises(EngineError, match="cannot read"):
        trt_major("unknown")


@pytest.mark.parametrize(
    ("major", "precision", "set_flags", "strongly_typed", "fp16_onnx"),
    [
        (10, "fp32", (), False, False),
        (10, "fp16", ("FP16",), False, False),
        (10, "int8", ("INT8", "FP16"), False, False),
        (11, "fp32", (), True, False),
        (11, "fp16", (), True, True),  # FP16 from an fp16 graph
        (11, "int8", (), True, False),  # Q/DQ: INT8 with no flag
    ],
)
def test_recipe_per_tensorrt_line(major, precision, set_flags, strongly_typed, fp16_onnx):
    r = build_recipe(major, precision)
    assert (r.set_flags, r.strongly_typed, r.fp16_onnx) == (set_flags, strongly_typed, fp16_onnx)
    assert r.tf32 == (precision != "fp32")  # fp32 engines are built without TF32
    assert r.record()["tf32"] is r.tf32


def test_tf32_is_cleared_for_fp32_and_flags_set_on_10():
    cfg = FakeConfig()
    assert apply_recipe(fake_trt(), cfg, build_recipe(10, "fp32")) == 0
    assert cfg.flags == set()
    cfg = FakeConfig()
    apply_recipe(fake_trt(), cfg, build_recipe(10, "int8"))
    assert cfg.flags == {"TF32", "INT8", "FP16"}


def test_tensorrt_11_builds_strongly_typed_without_precision_flags():
    trt11 = fake_trt(flags=("TF32",), strongly_typed=True, version="11.1.0")  # FP16/INT8 removed
    for precision in ("fp16", "int8"):
        cfg = FakeConfig()
        assert apply_recipe(trt11, cfg, build_recipe(11, precision)) == 1 << 1
        assert cfg.flags == {"TF32"}
    cfg = FakeConfig()
    apply_recipe(trt11, cfg, build_recipe(11, "fp32"))
    assert cfg.flags == set()
    with pytest.raises(EngineError, match=r"no BuilderFlag\.FP16"):  # a 10.x recipe on an 11.x module
        apply_recipe(trt11, FakeConfig(), build_recipe(10, "fp16"))


SHAPES = {"min": [1, 3, 64, 64], "opt": [4, 3, 64, 64], "max": [16, 3, 64, 64]}


@pytest.mark.parametrize(
    ("major", "precision", "present", "absent"),
    [
        (10, "fp32", ["--noTF32"], ["--fp16", "--int8", "--stronglyTyped"]),
        (10, "fp16", ["--fp16"], ["--stronglyTyped", "--noTF32"]),
        (10, "int8", ["--int8", "--fp16"], ["--stronglyTyped"]),
        (11, "fp32", ["--stronglyTyped", "--noTF32"], ["--fp16", "--int8"]),
        (11, "fp16", ["--stronglyTyped"], ["--fp16", "--int8"]),
        (11, "int8", ["--stronglyTyped"], ["--fp16", "--int8"]),
    ],
)
def test_trtexec_line_per_tensorrt_line(major, precision, present, absent):
    opts = ExportOptions(
        dynamic=True, batch=4, max_batch=16, half=precision == "fp16", int8=precision == "int8"
    )
    args = trtexec_command("m.trt.onnx", "m.engine", opts, SHAPES, major=major).split()
    assert args[:3] == ["trtexec", "--onnx=m.trt.onnx", "--saveEngine=m.engine"]
    assert "--maxShapes=input:16x3x64x64" in args
    for flag in present:
        assert flag in args
    for flag in absent:
        assert flag not in args


# --- running an engine ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("trt_type", "dtype"),
    [
        (DataType.FLOAT, torch.float32),
        (DataType.HALF, torch.float16),
        (DataType.BF16, torch.bfloat16),
        (DataType.INT8, torch.int8),
        (DataType.INT32, torch.int32),
        (DataType.INT64, torch.int64),
        (DataType.BOOL, torch.bool),
    ],
)
def test_engine_dtypes_map_to_torch(trt_type, dtype):
    assert torch_dtype(trt_type) is dtype


def test_unknown_engine_dtype_is_an_error():
    with pytest.raises(EngineError, match="FP8"):
        torch_dtype(DataType.FP8)


def test_batches_above_the_profile_max_are_split():
    engine = FakeEngine(max_batch=8)
    s = session(engine)
    assert s.max_batch == 8
    x = torch.randn(20, 3, 4, 4)
    torch.testing.assert_close(s(x).double(), expected(x))
    assert engine.context.runs == [8, 8, 4]


def test_static_engine_takes_its_batch():
    engine = FakeEngine(static=2)
    s = session(engine)
    assert s.max_batch == 2
    x = torch.randn(2, 3, 4, 4)
    torch.testing.assert_close(s(x).double(), expected(x))


def test_io_dtypes_come_from_the_engine():
    engine = FakeEngine(dtype=DataType.HALF)
    s = session(engine)
    x = torch.randn(3, 3, 4, 4)
    buffers = s.bind([x])
    assert buffers["input"].dtype == torch.float16 and buffers["output"].dtype == torch.float16
    out = s(x)
    assert out.dtype == torch.float32  # results are handed on as float32
    torch.testing.assert_close(out.double(), expected(x.half()), rtol=2e-3, atol=2e-2)


def test_refused_input_shape_is_an_error():
    s = session(FakeEngine(static=2))
    with pytest.raises(EngineError, match=r"shape \(3, 3, 4, 4\)"):
        s.bind([torch.randn(3, 3, 4, 4)])


def test_refused_tensor_address_is_an_error():
    engine = FakeEngine()
    engine.context.fail_address = True
    with pytest.raises(EngineError, match="address"):
        session(engine)(torch.randn(2, 3, 4, 4))


def test_failed_execution_is_an_error_not_garbage():
    engine = FakeEngine()
    engine.context.fail_execute = True
    with pytest.raises(EngineError, match="execute_async_v3 failed"):
        session(engine)(torch.randn(2, 3, 4, 4))
    assert engine.context.runs == []
