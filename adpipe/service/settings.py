"""The service's settings: defaults < settings file (YAML) < ``ADPIPE_SERVE_*`` variables < CLI options."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, YamlConfigSettingsSource

ROLES = ("read", "score", "admin")


class ServeSettings(BaseSettings):
    """Everything ``adpipe serve`` can be told. Each field is also ``ADPIPE_SERVE_<NAME>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="ADPIPE_SERVE_", extra="forbid", validate_default=True)

    host: str = Field("127.0.0.1", description="interface to bind; 0.0.0.0 in a container")
    port: int = Field(8000, ge=0, le=65535, description="TCP port (0 picks a free one)")
    store: Path | None = Field(None, description="model store folder (default: ADPIPE_STORE or ~/.adpipe/models)")
    models: list[str] = Field(default_factory=list, description="model references loaded at start (e.g. "
                              "fraud@production); readiness waits for all of them")
    configs_dir: Path | None = Field(None, description="folder of pipeline configs that fit jobs may name "
                                     "(no folder: fit jobs are refused)")
    keys_file: Path | None = Field(None, description="YAML file of hashed API keys (adpipe keys create writes it)")
    no_auth: bool = Field(False, description="serve without API keys (only allowed on a loopback host)")
    rate_limit: str = Field("50/second", description="requests allowed per API key (limits syntax, e.g. "
                            "'100/second' or '1000/minute;50/second')")
    max_body_bytes: int = Field(16 * 1024 * 1024, gt=0, description="largest request body; bigger ones get 413")
    max_batch_rows: int = Field(100_000, gt=0, description="most records in one batch request")
    audit_log: Path | None = Field(None, description="append one JSON line per request here (who, what, when, "
                                   "outcome)")
    state_file: Path | None = Field(None, description="SQLite file of runs, jobs and recent anomalies (default: "
                                    "<store>/.service.sqlite)")
    tls_certfile: Path | None = Field(None, description="PEM certificate: serve HTTPS")
    tls_keyfile: Path | None = Field(None, description="PEM private key of tls_certfile")
    trusted: bool = Field(False, description="load models not signed with this machine's key")
    public_metrics: bool = Field(True, description="serve /metrics without an API key (for Prometheus scrapes)")
    log_format: Literal["text", "json"] = Field("text", description="log lines as text or JSON")
    settings_file: Path | None = Field(None, exclude=True, description="YAML file these settings were read from")

    @model_validator(mode="after")
    def _check(self) -> "ServeSettings":
        if (self.tls_certfile is None) != (self.tls_keyfile is None):
            raise ValueError("give both tls_certfile and tls_keyfile, or neither")
        if self.no_auth and self.host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError(f"no_auth is only allowed on a loopback host, not {self.host!r}: give a keys_file")
        if not self.no_auth and self.keys_file is None:
            raise ValueError("no keys_file: create one with `adpipe keys create NAME --role score --keys-file F`, "
                             "or pass --no-auth for a local trial")
        return self

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource,
                                   dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource):
        sources: list[Any] = [init_settings, env_settings]
        if settings_cls.model_config.get("yaml_file"):
            sources.append(YamlConfigSettingsSource(settings_cls))
        return tuple(sources)

    @classmethod
    def load(cls, settings_file: str | Path | None = None, **cli: Any) -> "ServeSettings":
        """Settings from ``settings_file`` (YAML), then the environment, then ``cli`` (None values ignored)."""
        given = {k: v for k, v in cli.items() if v is not None}
        if settings_file is None:
            return cls(**given)
        path = Path(settings_file)
        if not path.is_file():
            raise FileNotFoundError(f"settings file {path} does not exist")
        sub = type("ServeSettingsFromFile", (cls,), {"model_config": {**cls.model_config, "yaml_file": path}})
        out = sub(**given)
        return cls.model_construct(**{**out.__dict__, "settings_file": path})
