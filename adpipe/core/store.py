"""A local model store: a folder that versions each named model, with stage labels.

    <store>/fraud/1.adpipe, 2.adpipe, ...   one immutable file per version (numbers never reused)
    <store>/fraud/registry.json            next version, stage history, an event log
    <store>/fraud/.lock                    taken while the registry changes

The store is ``ADPIPE_STORE``, default ``$ADPIPE_HOME/models``. References: ``fraud`` and
``fraud@latest`` are the newest version, ``fraud@3`` a version, ``fraud@production`` the version a stage
label points at. ``promote`` moves a stage label to a version (refused, unless forced, for a model whose
validation did not pass); ``rollback`` moves it back to the version it held before the last promotion.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from filelock import FileLock

from adpipe.core import modelfile
from adpipe.core.errors import ModelError, ModelNotFoundError

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
STAGE_RE = re.compile(r"^[a-z][a-z0-9_-]*$")
RESERVED = {"latest"}


def default_store() -> Path:
    return Path(os.environ.get("ADPIPE_STORE") or modelfile.adpipe_home() / "models").expanduser()


def parse_ref(ref: str) -> tuple[str, str | None]:
    """``fraud@3`` -> ("fraud", "3"); ``fraud`` -> ("fraud", None)."""
    name, _, which = str(ref).partition("@")
    return name, (which or None)


@dataclass
class StoredVersion:
    name: str
    version: int
    path: Path
    stages: list[str]

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    def metadata(self) -> dict[str, Any]:
        """The version's metadata (read and checksum-verified, nothing unpickled)."""
        return modelfile.read(self.path, payload=False).metadata


class ModelStore:
    def __init__(self, root: str | Path | None = None):
        self.root = Path(root).expanduser() if root else default_store()

    def __repr__(self) -> str:
        return f"ModelStore({str(self.root)!r})"

    # ------------------------------------------------------------------ reading
    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / "registry.json").is_file())

    def versions(self, name: str) -> list[StoredVersion]:
        folder = self._folder(name, must_exist=True)
        reg = self._registry(name)
        current = {stage: hist[-1] for stage, hist in reg["stages"].items() if hist}
        out = []
        for path in folder.glob(f"*{modelfile.SUFFIX}"):
            if path.stem.isdigit():
                v = int(path.stem)
                out.append(StoredVersion(name, v, path, sorted(s for s, cv in current.items() if cv == v)))
        return sorted(out, key=lambda sv: sv.version)

    def get(self, name: str, version: int) -> StoredVersion:
        for sv in self.versions(name):
            if sv.version == version:
                return sv
        have = ", ".join(str(sv.version) for sv in self.versions(name)) or "none"
        raise ModelNotFoundError(f"Model '{name}' has no version {version} in {self.root} (versions: {have}).",
                                 hint=f"`adpipe models show {name}` lists its versions and stage labels")

    def resolve(self, ref: str) -> StoredVersion:
        """``name``, ``name@latest``, ``name@N`` or ``name@stage`` -> the stored version."""
        name, which = parse_ref(ref)
        versions = self.versions(name)
        if not versions:
            raise ModelNotFoundError(f"Model '{name}' has no versions in {self.root}.",
                                     hint=f"fit one: adpipe fit config=... (with name: {name})")
        if which is None or which == "latest":
            return versions[-1]
        if which.isdigit():
            return self.get(name, int(which))
        for sv in versions:
            if which in sv.stages:
                return sv
        stages = sorted({s for sv in versions for s in sv.stages})
        raise ModelNotFoundError(f"No version of '{name}' is labelled '{which}'.",
                                 hint=(f"labels in use: {', '.join(stages)}; " if stages else "") +
                                 f"promote one with `adpipe models promote {name} VERSION --stage {which}`")

    def history(self, name: str) -> list[dict[str, Any]]:
        return self._registry(name)["events"]

    # ------------------------------------------------------------------ writing
    def add(self, model: Any, name: str | None = None) -> StoredVersion:
        """Store a fitted pipeline (or copy a model file) as the next version of its name."""
        from adpipe.core.model import save

        self.root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".incoming.", suffix=modelfile.SUFFIX, dir=self.root)
        os.close(fd)
        tmp = Path(tmp)
        try:
            if isinstance(model, (str, Path)):
                meta = modelfile.read(model, payload=False).metadata  # checksum-verified before it is copied
                shutil.copyfile(model, tmp)
            else:
                save(model, tmp)
                meta = model.metadata
            name = name or meta["name"]
            folder = self._folder(name)
            folder.mkdir(exist_ok=True)
            with self._lock(name):
                reg = self._registry(name)
                version = reg["next_version"]
                os.replace(tmp, folder / f"{version}{modelfile.SUFFIX}")
                reg["next_version"] = version + 1
                self._event(reg, "add", version=version, model_version=meta.get("model_version"))
                self._write_registry(name, reg)
        finally:
            tmp.unlink(missing_ok=True)
        return self.get(name, version)

    def promote(self, name: str, version: int, stage: str = "production", force: bool = False) -> StoredVersion:
        if not STAGE_RE.match(stage) or stage in RESERVED:
            raise ModelError(f"'{stage}' cannot be a stage label.",
                             hint="use lower-case letters, digits, '-' and '_', e.g. production or staging")
        sv = self.get(name, version)
        validation = sv.metadata().get("validation") or {}
        if validation.get("passed") is False and not force:
            raise ModelError(f"{sv.ref} is marked not fit for promotion: {'; '.join(validation.get('reasons', []))}.",
                             hint="fit a better model, or pass --force (force=True) to promote it anyway")
        with self._lock(name):
            reg = self._registry(name)
            hist = reg["stages"].setdefault(stage, [])
            previous = hist[-1] if hist else None
            if previous != version:
                hist.append(version)
            self._event(reg, "promote", version=version, stage=stage, previous=previous, forced=force or None)
            self._write_registry(name, reg)
        return self.get(name, version)

    def rollback(self, name: str, stage: str = "production") -> tuple[int, int]:
        """Point ``stage`` back at the version it held before its last promotion: returns (from, to)."""
        existing = {sv.version for sv in self.versions(name)}
        with self._lock(name):
            reg = self._registry(name)
            hist = reg["stages"].get(stage) or []
            if not hist:
                raise ModelError(f"No version of '{name}' is labelled '{stage}', so there is nothing to roll back.",
                                 hint=f"promote a version first: adpipe models promote {name} N --stage {stage}")
            earlier = [v for v in hist[:-1] if v in existing]
            if not earlier:
                raise ModelError(f"'{name}@{stage}' is version {hist[-1]}, and no earlier version held '{stage}'.",
                                 hint=f"promote another version instead: adpipe models promote {name} N --stage {stage}")
            current = hist[-1]
            while hist and hist[-1] != earlier[-1]:
                hist.pop()
            self._event(reg, "rollback", version=hist[-1], stage=stage, previous=current)
            self._write_registry(name, reg)
        return current, hist[-1]

    def delete(self, name: str, version: int | None = None, force: bool = False) -> list[int]:
        """Delete one version (or every version) of a model; a version holding a stage label needs ``force``."""
        targets = [self.get(name, version)] if version is not None else self.versions(name)
        staged = [sv for sv in targets if sv.stages]
        if staged and not force:
            held = "; ".join(f"{sv.ref} is {', '.join(sv.stages)}" for sv in staged)
            raise ModelError(f"Refusing to delete a version that holds a stage label: {held}.",
                             hint="promote or roll back first, or pass --force")
        with self._lock(name):
            reg = self._registry(name)
            for sv in targets:
                sv.path.unlink(missing_ok=True)
                for hist in reg["stages"].values():
                    hist[:] = [v for v in hist if v != sv.version]
                self._event(reg, "delete", version=sv.version)
            self._write_registry(name, reg)
        if version is None:
            shutil.rmtree(self._folder(name), ignore_errors=True)
        return [sv.version for sv in targets]

    # ------------------------------------------------------------------ internals
    def _folder(self, name: str, must_exist: bool = False) -> Path:
        if not NAME_RE.match(name or ""):
            raise ModelError(f"'{name}' is not a valid model name.",
                             hint="use letters, digits, '.', '-' and '_' (no '@' or '/')")
        folder = self.root / name
        if must_exist and not (folder / "registry.json").is_file():
            from adpipe.core.registry import suggest

            raise ModelNotFoundError(f"No model named '{name}' in the store {self.root}.",
                                     hint=suggest(name, self.names()) + "  (`adpipe models list` shows them)")
        return folder

    def _lock(self, name: str) -> FileLock:
        return FileLock(str(self._folder(name) / ".lock"), timeout=60)

    def _registry(self, name: str) -> dict[str, Any]:
        path = self._folder(name) / "registry.json"
        if not path.is_file():
            return {"next_version": 1, "stages": {}, "events": []}
        return json.loads(path.read_text())

    def _write_registry(self, name: str, reg: dict[str, Any]) -> None:
        path = self._folder(name) / "registry.json"
        tmp = path.with_name(".registry.json.tmp")
        tmp.write_text(json.dumps(reg, indent=2))
        os.replace(tmp, path)

    @staticmethod
    def _event(reg: dict[str, Any], action: str, **fields: Any) -> None:
        try:
            user = getpass.getuser()
        except Exception:  # no user name in some containers
            user = None
        reg["events"].append({"at": datetime.now(timezone.utc).isoformat(), "action": action, "user": user,
                              **{k: v for k, v in fields.items() if v is not None}})
