"""Fit jobs: ``adpipe fit`` in a subprocess, one at a time, in the background; status in the state DB.

A job names a config inside ``configs_dir`` (never an absolute path or one leaving the folder) plus
Hydra overrides; the new version goes to the server's store.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path, PurePosixPath
from typing import Any, Callable

from adpipe.service.errors import ApiError
from adpipe.service.state import State, now

log = logging.getLogger("adpipe.service")
JOB_TIMEOUT = 3600.0  # seconds one fit may take
ERROR_CHARS = 4000  # the tail of stderr kept as the job's error


def config_path(configs_dir: Path | None, name: str) -> Path:
    """The config file ``name`` inside ``configs_dir``, or a ApiError (409, 400 or 404)."""
    if configs_dir is None:
        raise ApiError(409, "fit_jobs_disabled", "This server has no configs_dir, so it runs no fit jobs.",
                              "start it with --configs-dir DIR (or configs_dir in the settings file)")
    pure = PurePosixPath(name.replace("\\", "/"))
    if pure.is_absolute() or ".." in pure.parts or ":" in name or "\x00" in name:
        raise ApiError(400, "bad_config_name", f"'{name}' is not a config name inside configs_dir.",
                              "name a file relative to configs_dir, e.g. fraud.yaml (no absolute paths or '..')")
    root = Path(configs_dir).resolve()
    path = (root / pure).resolve()
    if not path.is_relative_to(root):  # a symlink pointing out of the folder
        raise ApiError(400, "bad_config_name", f"'{name}' leads outside configs_dir.",
                              "name a file relative to configs_dir, e.g. fraud.yaml")
    if path.suffix not in (".yaml", ".yml") or not path.is_file():
        available = sorted(str(p.relative_to(root)) for p in root.rglob("*.y*ml"))[:20] if root.is_dir() else []
        raise ApiError(404, "config_not_found", f"No config '{name}' in configs_dir.",
                              "configs available: " + (", ".join(available) or "none"))
    return path


def check_overrides(overrides: list[str]) -> list[str]:
    for item in overrides:
        if not item or item.startswith("-") or item.split("=", 1)[0] == "config" or any(c in item for c in "\r\n\x00"):
            raise ApiError(400, "bad_override", f"{item!r} is not a Hydra override a fit job accepts.",
                                  "give key=value overrides such as detector=lof or detector.n_estimators=200")
    return list(overrides)


class JobRunner:
    """Runs queued fit jobs one at a time in a background thread."""

    def __init__(self, state: State, store: Path, configs_dir: Path | None, on_change: Callable[[], None]):
        self.state, self.store, self.configs_dir, self.on_change = state, store, configs_dir, on_change
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="adpipe-fit-jobs", daemon=True)
        self._proc: subprocess.Popen | None = None
        self._stopping = False
        self._thread.start()

    def submit(self, config: str, overrides: list[str]) -> dict[str, Any]:
        path = config_path(self.configs_dir, config)
        overrides = check_overrides(overrides)
        job = {"id": uuid.uuid4().hex, "status": "queued", "config": config, "overrides": overrides,
               "model": None, "error": None, "created_at": now(), "started_at": None, "finished_at": None,
               "seconds": None}
        self.state.save_job(job)
        self.on_change()
        self._queue.put((job["id"], path))
        return job

    def stop(self) -> None:
        self._stopping = True
        self._queue.put(None)
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
        self._thread.join(10)

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None or self._stopping:
                return
            job_id, path = item
            job = self.state.job(job_id)
            if job is None or job["status"] != "queued":
                continue
            try:
                self._run(job, path)
            except Exception as exc:  # a job failing in an unexpected way must not kill the runner
                log.exception("fit job %s failed", job_id)
                self._finish(job, time.perf_counter(), error=f"{type(exc).__name__}: {exc}")

    def _run(self, job: dict[str, Any], path: Path) -> None:
        job.update(status="running", started_at=now())
        self.state.save_job(job)
        self.on_change()
        started = time.perf_counter()
        cmd = [sys.executable, "-m", "adpipe", "fit", "--json", "--store", str(self.store), "--",
               f"config={path}", *job["overrides"]]
        env = {**os.environ, "NO_COLOR": "1"}
        self._proc = proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                             env=env, cwd=path.parent)
        try:
            out, err = proc.communicate(timeout=JOB_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            err = f"the fit took longer than {JOB_TIMEOUT:.0f} s and was stopped\n{err}"
        finally:
            self._proc = None
        if proc.returncode == 0:
            try:
                ref = json.loads(out)["ref"]
            except (ValueError, KeyError, TypeError):
                self._finish(job, started, error="adpipe fit succeeded but printed no model reference: "
                             + out[-ERROR_CHARS:])
                return
            self._finish(job, started, model=ref)
        else:
            text = (err or out or "").strip()
            self._finish(job, started, error=(text[-ERROR_CHARS:] or f"adpipe fit exited with {proc.returncode}"))

    def _finish(self, job: dict[str, Any], started: float, model: str | None = None,
                error: str | None = None) -> None:
        job.update(status="failed" if error else "succeeded", model=model, error=error, finished_at=now(),
                   seconds=round(time.perf_counter() - started, 3))
        self.state.save_job(job)
        self.on_change()
