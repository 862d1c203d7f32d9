"""``%gpuinfo``: the GPUs and the PyTorch build as THIS kernel sees them.

``%load_ext jupyter_gpuenv`` registers it (our provisioners load it in every kernel).
``%gpuinfo`` displays an HTML table in notebooks and plain text elsewhere;
``%gpuinfo --json`` returns a dict. Without a GPU, NVML or torch it says so in one
sentence and shows what is known; it never ends in a traceback.

Runs inside kernels: standard library only (IPython is there by definition),
Python >= 3.8.
"""

from __future__ import annotations

import html
import shlex
from typing import Any

from . import GPUINFO_USAGE
from .gpu_snapshot import human_bytes
from .kernel_view import KernelGpuInfo, gather
from .previous_exit import previous_exit_sentence

USAGE = GPUINFO_USAGE


class GpuInfoDisplay:
    """Displays as HTML in notebooks (``_repr_html_``) and as text elsewhere."""

    def __init__(self, info: KernelGpuInfo) -> None:
        self.info = info

    def __repr__(self) -> str:
        return render_text(self.info)

    def _repr_html_(self) -> str:
        return render_html(self.info)


def _size(value: int | None) -> str:
    return "n/a" if value is None else human_bytes(value)


def _driver_line(info: KernelGpuInfo) -> str | None:
    parts = []
    if info.driver_version:
        parts.append(f"NVIDIA driver {info.driver_version}")
    if info.cuda_driver_version:
        parts.append(f"CUDA driver {info.cuda_driver_version}")
    return " · ".join(parts) or None


def _torch_line(info: KernelGpuInfo) -> str:
    torch = info.torch
    if torch.error:
        return f"PyTorch: {torch.error}"
    if not torch.installed:
        return "PyTorch: not installed in this environment"
    parts = [f"PyTorch {torch.version} ({torch.build})"]
    if torch.cudnn:
        parts.append(f"cuDNN {torch.cudnn}")
    parts.append(f"torch.cuda.is_available(): {torch.cuda_available}")
    return " · ".join(parts)


def _visibility_line(info: KernelGpuInfo) -> str | None:
    parts = [f"Swarm assigned {kind} {ids}" for kind, ids in info.scheduled_gpus.items()]
    if info.nvidia_visible_devices is not None:
        parts.append(f"NVIDIA_VISIBLE_DEVICES={info.nvidia_visible_devices}")
    if info.cuda_visible_devices is not None:
        parts.append(f"CUDA_VISIBLE_DEVICES={info.cuda_visible_devices}")
    return " · ".join(parts) or None


def _verdict_line(info: KernelGpuInfo) -> str | None:
    if not info.verdict:
        return None
    return f"Compatibility: {info.verdict} — {info.verdict_message}"


DEVICE_HEADERS = ("cuda", "nvml", "name", "memory used / total", "this kernel", "cc")


def _device_rows(info: KernelGpuInfo) -> list[tuple[str, ...]]:
    return [
        (
            str(d.cuda_index),
            str(d.nvml_index),
            d.name or "n/a",
            f"{_size(d.memory_used)} / {_size(d.memory_total)}",
            _size(d.own_memory) if d.own_memory is not None else "-",
            d.compute_capability or "n/a",
        )
        for d in info.devices
    ]


def render_text(info: KernelGpuInfo) -> str:
    """Plain-text report (terminals, logs, ``text/plain``)."""
    lines = [info.headline + ("" if info.available else ".")]
    for extra in (_driver_line(info), _visibility_line(info)):
        if extra:
            lines.append(extra)
    rows = _device_rows(info)
    if rows:
        table = [DEVICE_HEADERS, *rows]
        widths = [max(len(row[i]) for row in table) for i in range(len(DEVICE_HEADERS))]
        for row in table:
            lines.append("  " + "  ".join(c.ljust(widths[i]) for i, c in enumerate(row)).rstrip())
    lines.append(_torch_line(info))
    if info.torch.arch_list:
        lines.append("Arch list: " + " ".join(info.torch.arch_list))
    verdict = _verdict_line(info)
    if verdict:
        lines.append(verdict)
    lines.extend(f"Note: {note}" for note in info.notes)
    previous = previous_exit_sentence(info.previous_exit)
    if previous:
        lines.append(previous)
    return "\n".join(lines)


def render_html(info: KernelGpuInfo) -> str:
    """HTML report for notebook frontends (theme-neutral, no scripts)."""
    esc = html.escape
    out = [f"<div class='gpuenv-gpuinfo'><p><b>{esc(info.headline)}</b></p>"]
    for extra in (_driver_line(info), _visibility_line(info)):
        if extra:
            out.append(f"<p>{esc(extra)}</p>")
    rows = _device_rows(info)
    if rows:
        out.append("<table><thead><tr>")
        out.extend(f"<th>{esc(h)}</th>" for h in DEVICE_HEADERS)
        out.append("</tr></thead><tbody>")
        for row in rows:
            out.append("<tr>" + "".join(f"<td>{esc(cell)}</td>" for cell in row) + "</tr>")
        out.append("</tbody></table>")
    out.append(f"<p>{esc(_torch_line(info))}</p>")
    if info.torch.arch_list:
        out.append(f"<p>Arch list: <code>{esc(' '.join(info.torch.arch_list))}</code></p>")
    verdict = _verdict_line(info)
    if verdict:
        out.append(f"<p class='gpuenv-verdict-{esc(info.verdict or '')}'>{esc(verdict)}</p>")
    out.extend(f"<p><i>Note: {esc(note)}</i></p>" for note in info.notes)
    previous = previous_exit_sentence(info.previous_exit)
    if previous:
        out.append(f"<p class='gpuenv-previous-exit'>{esc(previous)}</p>")
    out.append("</div>")
    return "".join(out)


def gpuinfo(line: str = "", nvml: Any = None) -> dict[str, Any] | None:
    """The magic's body: ``--json`` returns the dict, otherwise the report is displayed."""
    try:
        args = shlex.split(line)
    except ValueError:
        args = ["--help"]
    if any(a not in ("--json",) for a in args):
        print(USAGE)
        return None
    try:
        info = gather(nvml=nvml)
    except Exception as exc:  # never a traceback in the user's notebook
        message = f"{type(exc).__name__}: {exc}"
        if "--json" in args:
            return {"available": False, "reason": f"%gpuinfo failed: {message}"}
        print(f"%gpuinfo could not read the GPU status: {message}")
        return None
    if "--json" in args:
        return info.to_json()
    from IPython.display import display

    display(GpuInfoDisplay(info))
    return None


def load_ipython_extension(ipython: Any) -> None:
    """Register ``%gpuinfo`` (called by ``%load_ext jupyter_gpuenv``)."""

    def _gpuinfo(line: str = "") -> dict[str, Any] | None:
        return gpuinfo(line)

    _gpuinfo.__doc__ = USAGE
    ipython.register_magic_function(_gpuinfo, magic_kind="line", magic_name="gpuinfo")
