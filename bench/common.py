"""Shared helpers for benchmarks: where the corpora are, the machine, running charnn."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED_CORPORA = Path(os.environ.get("CHARNN_SHARED_CORPORA", ROOT.parent / "shared" / "corpora"))


def corpus(name: str) -> Path:
    path = SHARED_CORPORA / name
    if not path.is_file():
        sys.exit(f"bench: {path} not found; set CHARNN_SHARED_CORPORA to the folder holding {name}")
    return path


def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = f", CUDA: {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return (
        f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"Python {platform.python_version()}{gpu}"
    )


def device_name(device: str) -> str:
    """What a benchmark ran on, for its result: 'cpu', or the GPU's name."""
    import torch

    from charnn.device import resolve_device

    resolved = resolve_device(device)
    return torch.cuda.get_device_name(resolved) if resolved.type == "cuda" else resolved.type


def synchronize(device: str) -> None:
    """Wait for the device's queued work (timings of CUDA code must)."""
    import torch

    if device != "cpu" and torch.cuda.is_available():
        torch.cuda.synchronize()


def charnn(*args: str, capture: bool = True) -> subprocess.CompletedProcess:
    """Run the charnn CLI as a user would (a fresh process)."""
    cmd = [sys.executable, "-m", "charnn", *map(str, args)]
    return subprocess.run(cmd, check=True, text=True, stdout=subprocess.PIPE if capture else None)


def eval_json(run: Path, text: str | None = None, device: str = "cpu") -> dict:
    args = ["eval", "--json", "-m", run, "--device", device] + ([text] if text else [])
    return json.loads(charnn(*args).stdout)


def record(name: str, settings: dict, result: dict) -> None:
    """Append one result to bench/results/<name>.jsonl."""
    import time

    device = device_name(settings.get("device", "cpu"))  # every result says what it ran on
    entry = {"benchmark": name, "date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine(), **settings}
    entry.update(device=device, **result)
    with open(ROOT / "bench" / "results" / f"{name}.jsonl", "a") as f:
        f.write(json.dumps(entry) + "\n")
