"""``torch.compile`` of a model's training loss with SAR, for ``gpu_check.py``.

The compiled function is the whole loss (``forward_train``, CE, auxiliary CE, SAR with
``validate=False``, so it has no host-device sync); ``backward`` and the SGD step stay eager, as
in a usual compiled training loop. Graph breaks and graphs are read from Dynamo's counters,
first with the ``eager`` backend (tracing only, seconds), then with the real one.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from _gpu_measure import (
    autocast,
    build_model,
    build_sar,
    free_memory,
    interleaved_ms,
    make_batch,
    make_step,
    ratio,
    sgd,
    training_loss,
)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0][:300] if text else ''}"


def _dynamo_counts() -> dict:
    from torch._dynamo.utils import counters

    reasons = [key.strip().splitlines()[0][:200] for key in counters["graph_break"]]
    return {
        "graphs": int(counters["stats"]["unique_graphs"]),
        "graph_breaks": int(sum(counters["graph_break"].values())),
        "break_reasons": reasons[:8],
    }


def measure_compile(cfg: dict, emit: Callable[[dict], None]) -> dict:
    """Compile time, graphs, graph breaks, agreement with eager and eager / compiled step time.

    ``emit`` receives the partial result after each stage, so a run stopped by its time budget
    still tells how far compilation got.
    """
    from torch._dynamo.utils import counters

    device = torch.device(cfg["device"])
    amp = autocast(device, cfg["amp"])
    name, classes, crop = cfg["compile_model"], cfg["compile_classes"], tuple(cfg["compile_crop"])
    result = {
        "model": name, "crop": list(crop), "classes": classes, "batch": cfg["batch"],
        "backend": cfg["compile_backend"], "amp": cfg["amp"], "compiles": False,
        "stage": "building",
    }  # fmt: skip
    free_memory(device)
    images, labels = make_batch(cfg["batch"], crop, classes, device)
    model = build_model(name, classes, device)
    sar = build_sar(model, classes, device, validate=False)
    optimizer = sgd([model, sar])

    def loss_fn(images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return training_loss(model, sar, images, labels, amp)

    if cfg["compile_backend"] != "eager":
        # Dynamo alone first (backend "eager": no code generation): graphs and graph breaks
        # in seconds, even where the real backend's compilation does not fit the budget.
        torch._dynamo.reset()
        counters.clear()
        result["stage"] = "tracing"
        emit(result)
        try:
            torch.compile(loss_fn, backend="eager")(images, labels)
            result.update(traced=True, **_dynamo_counts())
        except Exception as err:
            result.update(traced=False, trace_error=_first_line(err))
        emit(result)
    torch._dynamo.reset()
    counters.clear()
    compiled_loss = torch.compile(loss_fn, backend=cfg["compile_backend"])
    result["stage"] = "compiling"
    emit(result)
    optimizer.zero_grad(set_to_none=True)
    start = time.perf_counter()
    try:
        loss_compiled = compiled_loss(images, labels)
        loss_compiled.backward()  # compiles the backward graph too
        _sync(device)
    except Exception as err:  # a failed compile is a result of this check, not a crash
        result.update(stage="failed", error=_first_line(err), **_dynamo_counts())
        emit(result)
        return result
    result.update(compiles=True, compile_s=time.perf_counter() - start, **_dynamo_counts())
    with torch.no_grad():  # same weights; BN uses batch statistics and SAR's gate is closed
        loss_eager = loss_fn(images, labels)
    result["loss_rel_diff"] = abs(float(loss_compiled.detach()) - float(loss_eager)) / max(
        abs(float(loss_eager)), 1e-30
    )
    result["stage"] = "timing"
    emit(result)
    fns = {
        "eager": make_step(model, sar, optimizer, images, labels, amp),
        "compiled": make_step(model, sar, optimizer, images, labels, amp, compiled_loss),
    }
    times = interleaved_ms(fns, device, cfg["warmup"], cfg["steps"])
    graphs_before = result["graphs"]
    result.update(
        eager_ms=times["eager"], compiled_ms=times["compiled"],
        speedup=ratio(times["eager"], times["compiled"]),
        recompiled=_dynamo_counts()["graphs"] > graphs_before, stage="done",
    )  # fmt: skip
    emit(result)
    return result
