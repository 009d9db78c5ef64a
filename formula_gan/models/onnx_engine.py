"""ONNX Runtime sessions for formula-gan's graphs (``onnx_files``): the CPU provider, the
caller's thread count, and one line for a graph this runtime cannot run.

Threads: ``intra_op_num_threads`` is what the caller gives (synthesis: the cores the browsers
leave; reading: torch's thread count, as the torch engine would use), one inter-op thread
(the graphs are chains), and no spinning: idle ONNX Runtime threads otherwise spin against
Chromium and the other stages, as OpenMP's do (see methods/gan.py's ``cpu_threads_for``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from formula_gan.models.onnx_files import OnnxFile, OnnxFileError, require


def session(graph: OnnxFile, threads: int) -> Any:
    """An ``onnxruntime.InferenceSession`` of a checked graph on the CPU with ``threads`` threads."""
    ort = require("onnxruntime")
    if threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3  # errors only: its warnings about unused initializers are noise
    try:
        return ort.InferenceSession(graph.graph, options, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime's own exception types (Fail, InvalidGraph, ...) are not importable stably
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        if graph.opset and ("opset" in first.lower() or "version" in first.lower()):
            raise OnnxFileError(f"{graph.name}: ONNX opset {graph.opset} cannot be run by the installed onnxruntime "
                                f"{ort.__version__}: upgrade it (pip install -U onnxruntime) or export the file again "
                                "with this installation") from err
        raise OnnxFileError(f"{graph.name}: onnxruntime {ort.__version__} cannot load it ({first[:300]})") from err


def run(sess: Any, feeds: dict[str, torch.Tensor | np.ndarray]) -> list[torch.Tensor]:
    """The session's outputs as CPU tensors, fed CPU tensors (no copies either way)."""
    arrays = {k: (v.numpy() if isinstance(v, torch.Tensor) else v) for k, v in feeds.items()}
    return [torch.from_numpy(out) for out in sess.run(None, arrays)]
