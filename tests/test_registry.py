"""The plugin registry: entry-point discovery, validation of plugin classes, guarded loading, hooks."""

from __future__ import annotations

import sys
import textwrap
import warnings
from importlib.metadata import entry_points
from pathlib import Path

import numpy as np
import pydantic
import pytest

import adpipe
from adpipe.core.registry import GROUP, PluginLoadWarning, Registry, load_registry
from conftest import FailingScore, MeanDistance, blob_frame, local_registry, plugin_module

BUILTIN_ENTRY_POINTS = {"algorithms", "preprocess", "thresholds", "sources", "sinks", "alerting"}


# --------------------------------------------------------------------------- helpers
def fake_distribution(site: Path, dist: str, modules: dict[str, str], eps: dict[str, str]) -> Path:
    """Write an importable distribution (dist-info with entry points, plus its modules) into ``site``."""
    site.mkdir(parents=True, exist_ok=True)
    info = site / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    lines = "\n".join(f"{k} = {v}" for k, v in eps.items())
    (info / "entry_points.txt").write_text(f"[{GROUP}]\n{lines}\n")
    for name, code in modules.items():
        (site / f"{name}.py").write_text(textwrap.dedent(code))
    return site


GOOD_PLUGIN = '''
    import numpy as np
    import adpipe

    class ThirdParty(adpipe.Detector):
        """A third-party detector found through an entry point."""
        name = "third_party_det"

        class Params(adpipe.Params):
            pass

        def fit(self, X):
            return self

        def score(self, X):
            return np.zeros(len(X))

    @adpipe.hookimpl
    def adpipe_register(registry):
        registry.add(ThirdParty)
'''


@pytest.fixture
def site(tmp_path, monkeypatch):
    """A folder on sys.path holding fake distributions; env switches cleared."""
    folder = tmp_path / "site"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    for var in ("ADPIPE_DISABLE_PLUGIN_AUTOLOAD", "ADPIPE_PLUGINS", "ADPIPE_BLOCK_PLUGINS"):
        monkeypatch.delenv(var, raising=False)
    yield folder
    for name in [m for m in sys.modules if m.startswith("adpt_")]:
        del sys.modules[name]


def quiet_load(**kwargs) -> Registry:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PluginLoadWarning)
        return load_registry(**kwargs)


# --------------------------------------------------------------------------- built-ins
def test_builtins_are_declared_as_entry_points_of_the_adpipe_distribution():
    eps = {ep.name: ep for ep in entry_points(group=GROUP) if ep.dist and ep.dist.name == "adpipe"}
    assert BUILTIN_ENTRY_POINTS <= set(eps)


def test_builtins_load_through_entry_points_with_their_distribution():
    reg = load_registry()
    assert reg.failures == []
    csv = reg.info("source", "csv")
    assert (csv.dist, csv.entry_point) == ("adpipe", "sources")
    assert reg.info("sink", "parquet").entry_point == "sinks"
    assert reg.info("threshold", "contamination").entry_point == "thresholds"
    assert reg.info("preprocessor", "standard_scaler").entry_point == "preprocess"
    assert reg.info("alert_channel", "log").entry_point == "alerting"
    assert reg.info("detector", "iforest").entry_point == "algorithms"
    assert {"csv", "parquet", "jsonl", "dataframe"} <= set(reg.names("source"))
    assert {"csv", "parquet", "jsonl", "memory"} <= set(reg.names("sink"))
    for info in reg.infos():
        assert info.cls.summary(), f"{info.kind} {info.name} has no summary"
        assert issubclass(info.cls.Params, adpipe.Params)


def test_get_registry_is_cached_and_reloadable():
    first = adpipe.get_registry()
    assert adpipe.get_registry() is first
    assert len(adpipe.get_registry(reload=True)) == len(first)


def test_unknown_plugin_name_suggests_close_matches():
    reg = load_registry()
    with pytest.raises(adpipe.ConfigError) as err:
        reg.get("source", "cvs")
    assert "'csv'" in str(err.value)
    with pytest.raises(adpipe.ConfigError, match="kind"):
        reg.get("detectr", "iforest")


# --------------------------------------------------------------------------- add() checks
def make_detector(name="ok_name", doc="A detector.", params=None):
    attrs = {"name": name, "__doc__": doc, "fit": lambda self, X: self, "score": lambda self, X: np.zeros(len(X))}
    if params is not None:
        attrs["Params"] = params
    return type("Det", (adpipe.Detector,), attrs)


@pytest.mark.parametrize("name", ["MyDetector", "my-detector", "1st", "", None, "has space"])
def test_add_rejects_a_name_that_is_not_lower_snake_case(name):
    with pytest.raises(adpipe.PluginError, match="lower_snake_case"):
        Registry().add(make_detector(name=name))


def test_add_rejects_a_class_without_docstring():
    with pytest.raises(adpipe.PluginError, match="docstring"):
        Registry().add(make_detector(doc=None))


def test_add_rejects_params_not_derived_from_adpipe_params():
    class Plain(pydantic.BaseModel):
        x: int = 1

    with pytest.raises(adpipe.PluginError, match="adpipe.Params"):
        Registry().add(make_detector(params=Plain))


def test_add_rejects_a_class_that_is_not_a_plugin():
    class NotAPlugin:
        """Docstring."""

        name = "not_a_plugin"

    with pytest.raises(adpipe.PluginError, match="not a plugin class"):
        Registry().add(NotAPlugin)
    with pytest.raises(adpipe.PluginError):
        Registry().add(adpipe.Detector)  # the base class itself


def test_add_accepts_a_valid_class_and_the_same_class_twice():
    reg = Registry()
    cls = make_detector()
    assert reg.add(cls) is cls
    reg.add(cls)  # idempotent for the very same class
    assert reg.get("detector", "ok_name") is cls and len(reg) == 1
    assert reg.names("detector") == ["ok_name"]
    assert [i.name for i in reg.find("ok_name")] == ["ok_name"]


def test_same_name_in_different_kinds_is_allowed():
    reg = load_registry()
    # csv is both a source and a sink
    assert {i.kind for i in reg.find("csv")} == {"source", "sink"}


def test_conflict_names_both_distributions():
    reg = Registry()
    reg.register_module(plugin_module(make_detector(name="dup")), dist="dist-one", entry_point="one")
    with pytest.raises(adpipe.PluginConflictError) as err:
        reg.register_module(plugin_module(make_detector(name="dup"), name="other"), dist="dist-two",
                            entry_point="two")
    msg = str(err.value)
    assert "dist-one" in msg and "dist-two" in msg and "'dup'" in msg
    assert err.value.exit_code == 4


def test_conflict_with_a_builtin_through_entry_points_is_an_error(site):
    fake_distribution(site, "adpt-clash", {"adpt_clash": '''
        import adpipe

        class Csv(adpipe.Source):
            """Another csv source."""
            name = "csv"

        @adpipe.hookimpl
        def adpipe_register(registry):
            registry.add(Csv)
    '''}, {"clash": "adpt_clash"})
    with pytest.raises(adpipe.PluginConflictError) as err:
        load_registry()
    assert "'adpipe'" in str(err.value) and "'adpt-clash'" in str(err.value)
    # ... and blocking one of the two resolves it
    reg = load_registry(blocked=["adpt-clash"])
    assert reg.info("source", "csv").dist == "adpipe"


# --------------------------------------------------------------------------- guarded loading
def test_broken_module_in_adpipe_plugins_is_reported_and_skipped(site, monkeypatch):
    (site / "adpt_broken.py").write_text("raise ImportError('needs the frobnicator library')\n")
    monkeypatch.setenv("ADPIPE_PLUGINS", "adpt_broken")
    with pytest.warns(PluginLoadWarning, match="adpt_broken"):
        reg = load_registry()
    [failure] = reg.failures
    assert failure.entry_point == "adpt_broken"
    assert "ImportError" in failure.error and "frobnicator" in failure.error
    assert ("source", "csv") in reg and ("detector", "iforest") in reg  # the rest still loaded


def test_missing_module_in_adpipe_plugins_is_reported(site, monkeypatch):
    monkeypatch.setenv("ADPIPE_PLUGINS", "adpt_does_not_exist")
    with pytest.warns(PluginLoadWarning):
        reg = load_registry()
    assert [f.entry_point for f in reg.failures] == ["adpt_does_not_exist"]
    assert "ModuleNotFoundError" in reg.failures[0].error


def test_broken_entry_point_is_reported_with_distribution_and_skipped(site):
    fake_distribution(site, "adpt-broken-dist", {
        "adpt_broken_ep": "raise ImportError('cannot import name frob')\n",
        "adpt_good_ep": GOOD_PLUGIN,
    }, {"broken": "adpt_broken_ep", "good": "adpt_good_ep"})
    with pytest.warns(PluginLoadWarning, match="adpt-broken-dist"):
        reg = load_registry()
    [failure] = reg.failures
    assert failure.dist == "adpt-broken-dist"
    assert "broken" in failure.entry_point and "adpt_broken_ep" in failure.entry_point
    assert "frob" in failure.error
    info = reg.info("detector", "third_party_det")  # the good entry point of the same dist loaded
    assert (info.dist, info.entry_point) == ("adpt-broken-dist", "good")
    assert ("source", "csv") in reg


def test_plugin_whose_registration_fails_is_reported_and_takes_no_part(site, monkeypatch):
    (site / "adpt_badreg.py").write_text(textwrap.dedent('''
        import adpipe

        class NoDoc(adpipe.Detector):
            name = "no_doc"

        @adpipe.hookimpl
        def adpipe_after_run(context, summary):
            raise AssertionError("a plugin that failed to register must not get hooks")

        @adpipe.hookimpl
        def adpipe_register(registry):
            registry.add(NoDoc)
    '''))
    monkeypatch.setenv("ADPIPE_PLUGINS", "adpt_badreg")
    with pytest.warns(PluginLoadWarning, match="docstring"):
        reg = load_registry()
    assert len(reg.failures) == 1 and ("detector", "no_doc") not in reg
    assert not any(getattr(p, "__name__", "") == "adpt_badreg" for p in reg.pm.get_plugins())


def test_adpipe_plugins_env_loads_extra_modules(site, monkeypatch):
    (site / "adpt_extra.py").write_text(textwrap.dedent(GOOD_PLUGIN))
    monkeypatch.setenv("ADPIPE_PLUGINS", " adpt_extra , ")
    reg = load_registry()
    assert reg.info("detector", "third_party_det").entry_point == "adpt_extra"


def test_disable_autoload_skips_third_party_entry_points(site, monkeypatch):
    fake_distribution(site, "adpt-third", {"adpt_third": GOOD_PLUGIN}, {"third": "adpt_third"})
    assert reg_has(load_registry(), "third_party_det")
    monkeypatch.setenv("ADPIPE_DISABLE_PLUGIN_AUTOLOAD", "1")
    reg = load_registry()
    assert not reg_has(reg, "third_party_det")
    assert ("source", "csv") in reg and ("detector", "iforest") in reg  # adpipe's own still load
    # ... but a module named in ADPIPE_PLUGINS is still loaded
    monkeypatch.setenv("ADPIPE_PLUGINS", "adpt_third")
    assert reg_has(load_registry(), "third_party_det")


def reg_has(reg: Registry, name: str) -> bool:
    return ("detector", name) in reg


def test_disable_autoload_values(site, monkeypatch):
    fake_distribution(site, "adpt-third", {"adpt_third": GOOD_PLUGIN}, {"third": "adpt_third"})
    for value, present in (("0", True), ("false", True), ("1", False), ("true", False), ("yes", False)):
        monkeypatch.setenv("ADPIPE_DISABLE_PLUGIN_AUTOLOAD", value)
        assert reg_has(load_registry(), "third_party_det") is present, value


def test_block_plugins_by_entry_point_or_distribution(site, monkeypatch):
    fake_distribution(site, "adpt-third", {"adpt_third": GOOD_PLUGIN}, {"third": "adpt_third"})
    monkeypatch.setenv("ADPIPE_BLOCK_PLUGINS", "sinks, spark")  # the spark entry point adds a sink too
    reg = load_registry()
    assert reg.names("sink") == [] and ("source", "csv") in reg and reg_has(reg, "third_party_det")
    monkeypatch.setenv("ADPIPE_BLOCK_PLUGINS", "adpt-third, alerting")
    reg = load_registry()
    assert not reg_has(reg, "third_party_det") and reg.names("alert_channel") == []
    assert ("sink", "csv") in reg


def test_a_blocked_broken_plugin_is_not_even_imported(site, monkeypatch):
    (site / "adpt_broken2.py").write_text("raise ImportError('should not be imported')\n")
    fake_distribution(site, "adpt-b2", {}, {"b2": "adpt_broken2"})
    monkeypatch.setenv("ADPIPE_BLOCK_PLUGINS", "b2")
    with warnings.catch_warnings():
        warnings.simplefilter("error", PluginLoadWarning)
        reg = load_registry()
    assert reg.failures == []


def test_missing_optional_dependency_is_listed_but_fails_clearly_when_built():
    class NeedsTorch(MeanDistance):
        """Needs a module that is not installed."""

        name = "needs_missing"
        requires = ("adpt_module_that_is_not_installed",)
        install_hint = "pip install 'adpipe[imaginary]'"

    reg = Registry()
    reg.add(NeedsTorch)
    assert NeedsTorch.missing_requirements() == ["adpt_module_that_is_not_installed"]
    with pytest.raises(adpipe.PluginError) as err:
        reg.get("detector", "needs_missing")()
    assert "adpipe[imaginary]" in str(err.value) and err.value.exit_code == 4


# --------------------------------------------------------------------------- lifecycle hooks
def hook_recorder():
    calls: list[tuple[str, object]] = []

    def before_run(context):
        calls.append(("before_run", context))

    def after_batch(context, result, rejected):
        calls.append(("after_batch", (len(result), len(rejected))))

    def on_anomalies(context, anomalies):
        calls.append(("on_anomalies", anomalies.copy()))

    def after_run(context, summary):
        calls.append(("after_run", summary))

    def on_error(context, error):
        calls.append(("on_error", error))

    hooks = dict(adpipe_before_run=before_run, adpipe_after_batch=after_batch, adpipe_on_anomalies=on_anomalies,
                 adpipe_after_run=after_run, adpipe_on_error=on_error)
    return calls, hooks


def hook_config(data_path, detector="mean_distance"):
    return {
        "name": "hooks",
        "source": {"type": "csv", "path": str(data_path)},
        "detector": {"type": detector},
        "threshold": {"type": "contamination", "contamination": 0.05},
        "engine": {"batch_rows": 100},
    }


def test_lifecycle_hooks_are_called_during_a_run(tmp_path, make_csv):
    from adpipe.plugins.sinks.memory import MemorySink

    calls, hooks = hook_recorder()
    reg = local_registry(MeanDistance, **hooks)
    path = make_csv(blob_frame(n=300, with_id=True))
    pipe = adpipe.Pipeline.from_dict(hook_config(path), base_dir=tmp_path, registry=reg)
    summary = pipe.run(sinks=[MemorySink()], write_summary=False)
    names = [c[0] for c in calls]
    assert names[0] == "before_run" and names[-1] == "after_run"
    assert names.count("after_batch") == 3 == summary.batches
    assert "on_error" not in names
    context = calls[0][1]
    assert context.run_id == summary.run_id and context.pipeline == "hooks"
    assert calls[-1][1] is summary
    assert sum(c[1][0] for c in calls if c[0] == "after_batch") == 300
    anomalies = [c[1] for c in calls if c[0] == "on_anomalies"]
    assert anomalies and sum(len(a) for a in anomalies) == summary.anomalies > 0
    assert all((a["is_anomaly"] == 1).all() for a in anomalies)


def test_on_error_hook_is_called_when_a_run_fails(tmp_path, make_csv):
    calls, hooks = hook_recorder()
    reg = local_registry(FailingScore, **hooks)
    path = make_csv(blob_frame(n=50))
    cfg = hook_config(path, detector="failing_score")
    cfg["fit"] = {"source": dict(cfg["source"])}  # a separate training read: the run really scores the source
    pipe = adpipe.Pipeline.from_dict(cfg, base_dir=tmp_path, registry=reg)
    with pytest.raises(adpipe.ModelError, match="boom"):
        pipe.run(write_summary=False)
    names = [c[0] for c in calls]
    assert names[0] == "before_run" and names[-1] == "on_error" and "after_run" not in names
    assert isinstance(calls[-1][1], adpipe.ModelError)


def test_hooks_of_an_unregistered_module_are_not_called(tmp_path, make_csv):
    from adpipe.plugins.sinks.memory import MemorySink

    calls, hooks = hook_recorder()
    local_registry(MeanDistance, **hooks)  # a different registry
    reg = local_registry(MeanDistance)
    path = make_csv(blob_frame(n=60))
    adpipe.Pipeline.from_dict(hook_config(path), base_dir=tmp_path, registry=reg).run(
        sinks=[MemorySink()], write_summary=False)
    assert calls == []


def test_a_failing_hook_fails_the_run_with_a_plugin_error(tmp_path, make_csv):
    from adpipe.plugins.sinks.memory import MemorySink

    def after_batch(context, result, rejected):
        raise ValueError("hook bug")

    reg = local_registry(MeanDistance, adpipe_after_batch=after_batch)
    path = make_csv(blob_frame(n=60))
    with pytest.raises(adpipe.PluginError, match="adpipe_after_batch.*hook bug"):
        adpipe.Pipeline.from_dict(hook_config(path), base_dir=tmp_path, registry=reg).run(
            sinks=[MemorySink()], write_summary=False)
