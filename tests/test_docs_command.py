"""`adpipe docs`: reference pages generated from every installed plugin's Params and the config sections."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from conftest import local_registry, run_cli

import adpipe
from adpipe.core.cli import cli
from adpipe.core.config import SECTIONS, load_config
from adpipe.core.reference import CONFIG_PAGE, INDEX_PAGE, KIND_PAGES, examples, render
from adpipe.core.registry import get_registry


class NeedsLibrary(adpipe.Sink):
    """Writes to a store whose client library is not installed (a third-party plugin for these tests).

    Second paragraph: how it works.
    """

    name = "needs_library"
    requires = ("surely_not_an_installed_module",)
    install_hint = "pip install example-client"

    class Params(adpipe.Params):
        bucket: str = adpipe.Field(description="bucket the results go to")
        region: str = adpipe.Field("eu-west-1", description="where the bucket lives | with a pipe")
        retries: int = adpipe.Field(..., ge=2, le=9, description="attempts per batch")


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("reference")
    result = CliRunner().invoke(cli, ["docs", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert f"wrote {len(KIND_PAGES) + 2} pages to {out}" in result.output
    return out


def sections(text: str) -> dict[str, str]:
    """`## name` heading -> the text up to the next one."""
    parts = re.split(r"^## (\S+)\n", text, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_one_page_per_kind_plus_index_and_config(generated):
    assert sorted(p.name for p in generated.iterdir()) == sorted(
        [INDEX_PAGE, CONFIG_PAGE, *(page for page, *_ in KIND_PAGES.values())])


def test_every_plugin_and_every_parameter_is_documented(generated):
    registry = get_registry()
    assert len(registry.infos()) > 50
    for kind, (page, *_) in KIND_PAGES.items():
        found = sections((generated / page).read_text())
        infos = registry.infos(kind)
        assert sorted(found) == [i.name for i in infos], kind
        for info in infos:
            text = found[info.name]
            assert info.cls.summary() in text and f"`{info.dist}`" in text
            for name, field in info.cls.Params.model_fields.items():
                row = next((line for line in text.splitlines() if line.startswith(f"| `{field.alias or name}` |")),
                           None)
                assert row is not None, (kind, info.name, name)
                assert ("| yes |" in row) == field.is_required(), row
    index = (generated / INDEX_PAGE).read_text()
    assert all(f"#{i.name})" in index for i in registry.infos())


def test_plugins_needing_missing_modules_are_listed_with_a_note(generated):
    registry = get_registry()
    missing = [i for i in registry.infos() if i.cls.missing_requirements()]
    for info in missing:
        text = sections((generated / KIND_PAGES[info.kind][0]).read_text())[info.name]
        assert all(f"`{m}`" in text for m in info.cls.requires) and "does not install by default" in text


def test_every_example_validates(generated):
    registry = get_registry()
    found = examples(registry)
    stage_kinds = [i for i in registry.infos() if i.kind != "integration"]
    assert {(i.kind, i.name) for i in stage_kinds} <= set(found)
    for (kind, name), text in found.items():
        page = (generated / KIND_PAGES[kind][0]).read_text()
        assert f"```yaml\n{text}```" in sections(page)[name], name
        data = yaml.safe_load(text)
        if kind == "integration":
            registry.get(kind, name).Params(**data)
            continue
        cfg = load_config(data=data, base_dir=generated, need_detector=False)
        stages = {"source": [cfg.source], "preprocessor": cfg.preprocess, "detector": [cfg.detector],
                  "threshold": [cfg.threshold], "sink": cfg.sinks, "alert_channel": cfg.alerts,
                  "drift_detector": cfg.drift_detectors}[kind]
        assert [s.type for s in stages] == [name]


def test_config_page_documents_every_section_and_its_defaults_validate(generated):
    text = (generated / CONFIG_PAGE).read_text()
    found = sections(text)
    assert list(found) == list(SECTIONS)
    for key, model in SECTIONS.items():
        for name, field in model.model_fields.items():
            assert f"| `{field.alias or name}` |" in found[key], (key, name)
        block = re.search(r"Defaults:\n\n```yaml\n(.*?)```", found[key], flags=re.S).group(1)
        data = yaml.safe_load(block)
        assert list(data) == [key]
        cfg = load_config(data={"detector": "iforest", **data}, base_dir=generated)
        assert getattr(cfg, key).model_dump() == model().model_dump()
    for key in ("source", "preprocess", "detector", "threshold", "sinks", "reject_sink", "alerts"):
        assert f"| `{key}` |" in text


def test_output_is_byte_identical_across_runs(generated, tmp_path):
    proc = run_cli("docs", "--out", "again", cwd=tmp_path, env={"PYTHONHASHSEED": "7"})
    assert proc.returncode == 0, proc.stderr
    for page in generated.iterdir():
        assert (tmp_path / "again" / page.name).read_bytes() == page.read_bytes(), page.name
    assert not re.search(r"at 0x[0-9a-f]+|object at", "".join(render().values()))  # no memory addresses


def test_third_party_plugin_with_missing_requirement_and_required_params():
    pages = render(local_registry(NeedsLibrary))
    text = sections(pages["sinks.md"])["needs_library"]
    assert "Second paragraph: how it works." in text
    assert "Needs `surely_not_an_installed_module`" in text and "pip install example-client" in text
    assert "| `region` | str | `\"eu-west-1\"` | no | where the bucket lives \\| with a pipe |" in text
    assert "| `retries` | int >= 2 <= 9 |  | yes | attempts per batch |" in text
    example = examples(local_registry(NeedsLibrary))[("sink", "needs_library")]
    assert yaml.safe_load(example) == {"sinks": [{"type": "needs_library", "bucket": "example", "retries": 5}]}
    assert "[needs_library](sinks.md#needs_library)" in pages[INDEX_PAGE]


def test_unknown_format_is_a_usage_error(tmp_path):
    result = CliRunner().invoke(cli, ["docs", "--out", str(tmp_path / "x"), "--format", "html"])
    assert result.exit_code == 2 and "html" in result.output
    assert not (tmp_path / "x").exists()
