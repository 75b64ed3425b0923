"""The runs a server answers for: each folder loaded once, named by its folder's name."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from charnn.errors import CharnnError, ConfigError
from charnn.tasks import load_run
from charnn.tasks.base import Limits, task_of
from charnn.tasks.worker import Worker


@dataclass
class Served:
    """One run as the server answers it."""

    name: str
    folder: Path
    task: type
    service: Any
    created: int


def default_folders(root: Path) -> list[Path]:
    """Every run folder under ``root`` (./runs), newest first."""
    if not root.is_dir():
        return []
    folders = [p for p in root.iterdir() if p.is_dir() and (p / "config.json").is_file()]
    return sorted(folders, key=lambda p: (p / "config.json").stat().st_mtime, reverse=True)


def load_served(
    folders: list[Path], limits: Limits, device: str, worker: Worker, skip_broken: bool = False
) -> tuple[dict[str, Served], list[str]]:
    """The runs in ``folders`` by name, and a line for each one skipped (``skip_broken``: a run
    that cannot be loaded is skipped and said, not fatal). Call it on ``worker``'s thread."""
    served: dict[str, Served] = {}
    skipped = []
    for folder in folders:
        name = folder.resolve().name
        if name in served:
            raise ConfigError(
                f"two runs are named {name!r} ({served[name].folder} and {folder}); serve one of them or rename one"
            )
        try:
            run = load_run(folder, device=device)
            task = task_of(run.config)
            if task.endpoint is None:
                raise ConfigError(f"{folder} is {task.noun}, which charnn serve does not answer")
            service = task.service(run, limits, worker)
        except CharnnError as error:
            if not skip_broken:
                raise
            skipped.append(f"skipped {folder}: {error}")
            continue
        created = int((folder / "config.json").stat().st_mtime)
        served[name] = Served(name, folder, task, service, created)
    return served, skipped
