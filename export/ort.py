"""ONNX Runtime CPU sessions and their thread pools: the one place both export and latency use.

Two ways a session gets its threads:

- per session (the default): ``intra_op_num_threads`` threads of its own, optionally pinned
  to distinct cores;
- ORT's process-wide pool (``shared_pool=True``): one pool of ``threads`` threads for every
  session of the process, as an application with one model has, so sessions timed in turn
  do not fight with each other's spinning workers. ORT allows setting it only once, before
  the first session; once it is set, every later session must use it
  (``use_per_session_threads = False``), whoever makes the session.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from dna_zoo.errors import DataError

log = logging.getLogger(__name__)

_GLOBAL_POOL: list[int] = []  # [threads] once set here, [-1] once setting it failed


def global_pool_active() -> bool:
    """True once this process set ORT's shared thread pool (later sessions must use it)."""
    return bool(_GLOBAL_POOL) and _GLOBAL_POOL[0] > 0


def use_global_pool(threads: int) -> bool:
    """Set ORT's process-wide pool to ``threads`` threads (once, before the first session);
    False when it was set to another size, or it can no longer be set."""
    if _GLOBAL_POOL:
        return _GLOBAL_POOL[0] == threads
    try:
        from onnxruntime.capi import _pybind_state

        _pybind_state.set_global_thread_pool_sizes(threads, 1)
    except Exception as e:  # the ORT environment exists already (sessions made elsewhere)
        log.debug("no shared ORT thread pool: %s", e)
        _GLOBAL_POOL.append(-1)
        return False
    _GLOBAL_POOL.append(threads)
    return True


def allowed_cpus() -> list[int]:
    """The CPUs this process may run on."""
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return list(range(os.cpu_count() or 1))


def session_options(threads: int | None, *, shared_pool: bool = False, pin_threads: bool = False) -> Any:
    """``SessionOptions`` for a CPU session: sequential execution, all graph optimizations,
    ``threads`` intra-op threads (``None``: ORT's default), one inter-op thread."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    if shared_pool and not use_global_pool(threads or 1) and global_pool_active():
        log.warning("ORT's shared thread pool has another size than %s threads; using it", threads)
    if global_pool_active():
        so.use_per_session_threads = False
        return so
    if threads:
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
    if pin_threads and threads and threads > 1:
        cpus = allowed_cpus()
        if len(cpus) >= threads:
            # ORT pins the threads it creates (threads - 1; the caller's thread runs too);
            # processor ids in this string count from 1.
            aff = ";".join(str(c + 1) for c in cpus[1:threads])
            so.add_session_config_entry("session.intra_op_thread_affinities", aff)
    return so


def cpu_session(path: str | Path, options: Any = None, *, threads: int | None = None) -> Any:
    """An ``InferenceSession`` on the CPU (``options`` from :func:`session_options`, or made
    from ``threads``); a file ORT cannot load is a :class:`DataError`."""
    import onnxruntime as ort

    so = options if options is not None else session_options(threads)
    try:
        return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    except Exception as e:  # ORT raises its own Fail/InvalidGraph/... types
        raise DataError(
            f"ONNX Runtime cannot load {path}: {str(e).splitlines()[0][:200]}",
            hint="the file may be corrupt; export it again (with --force)",
        ) from e
