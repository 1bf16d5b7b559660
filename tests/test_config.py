"""Config composition (Hydra), config groups, interpolation, path resolution and config errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import adpipe
from adpipe.core.compose import PACKAGE_CONFIGS
from adpipe.core.config import load_config
from conftest import GROUPED_CONFIG, basic_config, write_yaml

GROUPED = GROUPED_CONFIG + "reject_sink: {type: csv, path: out/rejected.csv}\n"


def config_error(path, overrides=()) -> adpipe.ConfigError:
    with pytest.raises(adpipe.ConfigError) as err:
        load_config(path, list(overrides))
    return err.value


# --------------------------------------------------------------------------- composition
def test_packaged_groups_ship_with_adpipe():
    for group, option in (("detector", "iforest"), ("detector", "lof"), ("detector", "ecod"),
                          ("threshold", "contamination")):
        assert (PACKAGE_CONFIGS / group / f"{option}.yaml").is_file(), f"{group}/{option}.yaml is not shipped"


def test_compose_with_overrides(tmp_path):
    path = write_yaml(tmp_path / "unrelated" / "pipe.yaml", GROUPED)
    cfg = load_config(path)
    assert cfg.detector.type == "iforest" and cfg.reject_sink is not None and cfg.fit.sample_rows is None
    cfg = load_config(path, ["detector=lof", "threshold.contamination=0.02", "+fit.sample_rows=10", "~reject_sink"])
    assert cfg.detector.type == "lof"
    assert cfg.threshold.type == "contamination" and cfg.threshold.params.contamination == 0.02
    assert cfg.fit.sample_rows == 10
    assert cfg.reject_sink is None
    assert cfg.name == "pipe"  # default name: the config file's stem
    assert cfg.path == path.resolve()


def test_packaged_group_option_parameters_can_be_overridden(tmp_path):
    path = write_yaml(tmp_path / "pipe.yaml", GROUPED)
    cfg = load_config(path, ["detector=lof", "detector.n_neighbors=7"])
    assert cfg.detector.type == "lof" and cfg.detector.params.n_neighbors == 7


def test_group_override_of_an_inline_stage_picks_the_plugin_with_defaults(tmp_path):
    """README: `detector=lof` picks a config group "from a config anywhere on disk".

    A config whose detector is written inline (no defaults list) cannot switch detectors at all:
    `detector=ecod` is refused (Hydra: not in the defaults list) and the suggested `+detector=ecod`
    merges ecod's group into the inline iforest parameters (unknown key n_estimators for ecod).
    """
    path = write_yaml(tmp_path / "pipe.yaml", basic_config())
    cfg = load_config(path, ["detector=ecod"])
    assert cfg.detector.type == "ecod"


def test_a_mapping_override_replaces_the_whole_stage(tmp_path):
    """`threshold={type: top_k, k: 40}` is a new stage: the old stage's keys (contamination) do not merge in."""
    path = write_yaml(tmp_path / "pipe.yaml", basic_config())
    cfg = load_config(path, ["threshold={type: top_k, k: 40}"])
    assert (cfg.threshold.type, cfg.threshold.params.k) == ("top_k", 40)
    cfg = load_config(path, ["threshold={type: top_k}", "threshold.k=7"])
    assert cfg.threshold.params.k == 7
    assert load_config(path, ["detector={type: lof, n_neighbors: 5}"]).detector.params.n_neighbors == 5


def test_packaged_threshold_group(tmp_path):
    text = GROUPED.replace("threshold: {type: contamination, contamination: 0.1}\n", "")
    text = text.replace("  - _self_", "  - threshold: top_k\n  - _self_")
    path = write_yaml(tmp_path / "pipe.yaml", text)
    cfg = load_config(path)
    assert cfg.threshold.type == "top_k"
    assert load_config(path, ["threshold=zscore"]).threshold.type == "zscore"


def test_local_group_beside_the_config_wins_over_the_packaged_one(tmp_path):
    write_yaml(tmp_path / "detector" / "iforest.yaml", {"type": "iforest", "n_estimators": 17})
    write_yaml(tmp_path / "detector" / "my_local.yaml", {"type": "lof", "n_neighbors": 3})
    path = write_yaml(tmp_path / "pipe.yaml", GROUPED)
    assert load_config(path).detector.params.n_estimators == 17
    cfg = load_config(path, ["detector=my_local"])
    assert (cfg.detector.type, cfg.detector.params.n_neighbors) == ("lof", 3)
    # the packaged lof is still found beside a local group folder
    assert load_config(path, ["detector=lof"]).detector.params.n_neighbors != 3


def test_unknown_group_option_is_a_config_error_naming_the_file(tmp_path):
    path = write_yaml(tmp_path / "pipe.yaml", GROUPED)
    err = config_error(path, ["detector=iforrest"])
    assert "pipe.yaml" in str(err) and "iforrest" in str(err)


def test_override_of_a_missing_key_needs_a_plus(tmp_path):
    path = write_yaml(tmp_path / "pipe.yaml", GROUPED)
    err = config_error(path, ["fit.sample_rows=10"])
    assert "pipe.yaml" in str(err) and "+" in (err.hint or "")


def test_bad_override_syntax_is_a_config_error(tmp_path):
    path = write_yaml(tmp_path / "pipe.yaml", GROUPED)
    err = config_error(path, ["detector.n_estimators=[1,"])
    assert "pipe.yaml" in str(err)


# --------------------------------------------------------------------------- interpolation
def test_env_interpolation_resolves(tmp_path, monkeypatch):
    monkeypatch.setenv("ADPIPE_TEST_INPUT", "from_env.csv")
    path = write_yaml(tmp_path / "pipe.yaml", basic_config(data="${oc.env:ADPIPE_TEST_INPUT}"))
    cfg = load_config(path)
    assert cfg.source.params.path == tmp_path / "from_env.csv"


def test_missing_env_var_is_a_config_error(tmp_path, monkeypatch):
    monkeypatch.delenv("ADPIPE_TEST_UNSET_VAR", raising=False)
    path = write_yaml(tmp_path / "pipe.yaml", basic_config(data="${oc.env:ADPIPE_TEST_UNSET_VAR}"))
    err = config_error(path)
    assert "pipe.yaml" in str(err) and "ADPIPE_TEST_UNSET_VAR" in str(err)
    assert "oc.env" in (err.hint or "")


# --------------------------------------------------------------------------- paths
def test_relative_paths_resolve_against_the_config_folder_not_the_cwd(tmp_path, monkeypatch):
    conf = tmp_path / "project" / "conf"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    path = write_yaml(conf / "pipe.yaml", basic_config(data="../data/in.csv", summary={"path": "runs/s.json"},
                                                       fit={"source": {"type": "csv", "path": "train.csv"}}))
    monkeypatch.chdir(elsewhere)
    cfg = load_config(Path(os.path.relpath(path, elsewhere)))
    assert os.getcwd() == str(elsewhere)
    assert cfg.source.params.path.resolve() == (tmp_path / "project" / "data" / "in.csv").resolve()
    assert cfg.sinks[0].params.path == conf / "out" / "scores.csv"
    assert cfg.fit_source.params.path == conf / "train.csv"
    assert cfg.summary.path == conf / "runs" / "s.json"
    assert cfg.base_dir == conf


def test_run_from_another_cwd_writes_beside_the_config_and_keeps_the_cwd(tmp_path, monkeypatch, make_csv):
    make_csv(name="project/data.csv")
    path = write_yaml(tmp_path / "project" / "pipe.yaml", basic_config())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    summary = adpipe.Pipeline.from_config(path).run()
    assert os.getcwd() == str(elsewhere)
    assert (tmp_path / "project" / "out" / "scores.csv").is_file()
    assert list(elsewhere.iterdir()) == []
    assert summary.outputs == [str(tmp_path / "project" / "out" / "scores.csv")]


def test_absolute_paths_are_kept(tmp_path):
    target = tmp_path / "abs" / "in.csv"
    path = write_yaml(tmp_path / "conf" / "pipe.yaml", basic_config(data=str(target)))
    assert load_config(path).source.params.path == target


def test_yml_suffix_is_accepted(tmp_path):
    """config.py accepts `.yml` files (it checks for both suffixes), so they must load like `.yaml`."""
    path = write_yaml(tmp_path / "pipe.yml", basic_config())
    cfg = load_config(path)
    assert cfg.name == "pipe" and cfg.detector.type == "iforest"


def test_dotted_config_name_and_odd_folder(tmp_path):
    path = write_yaml(tmp_path / "odd dir, v=2" / "fraud.v2.yaml", GROUPED)
    cfg = load_config(path, ["detector=lof"])
    assert cfg.name == "fraud.v2" and cfg.detector.type == "lof"
    assert cfg.source.params.path == tmp_path / "odd dir, v=2" / "data.csv"


def test_config_path_without_suffix_finds_the_yaml(tmp_path):
    write_yaml(tmp_path / "pipe.yaml", basic_config())
    assert load_config(tmp_path / "pipe").name == "pipe"


# --------------------------------------------------------------------------- validation
def test_validated_config_round_trips_through_to_dict(tmp_path):
    path = write_yaml(tmp_path / "pipe.yaml", GROUPED)
    cfg = load_config(path)
    data = cfg.to_dict()
    assert data["detector"]["type"] == "iforest" and "n_estimators" in data["detector"]
    assert data["validation"] == {"on_invalid": "raise"} and data["engine"]["batch_rows"] == 100_000
    again = load_config(data=data, base_dir=tmp_path)
    assert again.to_dict() == data


def test_stage_given_as_a_bare_name(tmp_path):
    cfg = load_config(data={"detector": "ecod", "threshold": "top_k"}, base_dir=tmp_path)
    assert (cfg.detector.type, cfg.threshold.type) == ("ecod", "top_k")
    assert cfg.source is None and cfg.sinks == [] and cfg.name == "pipeline"


def test_misspelled_plugin_suggests_the_right_one(tmp_path):
    cfg = basic_config()
    cfg["detector"] = {"type": "iforrest"}
    err = config_error(write_yaml(tmp_path / "fraud.yaml", cfg))
    assert "fraud.yaml" in str(err)
    assert "detector.type" in str(err) and "'iforrest'" in str(err)
    assert "did you mean 'iforest'" in str(err)
    assert err.exit_code == 2


def test_misspelled_parameter_suggests_the_right_one(tmp_path):
    cfg = basic_config()
    cfg["detector"] = {"type": "iforest", "n_estimator": 10}
    err = config_error(write_yaml(tmp_path / "fraud.yaml", cfg))
    text = str(err)
    assert "fraud.yaml" in text and "detector.n_estimator" in text and "'n_estimators'" in text


def test_out_of_range_parameter_names_path_value_and_range(tmp_path):
    path = write_yaml(tmp_path / "fraud.yaml", basic_config())
    err = config_error(path, ["detector.n_estimators=-5"])
    text = str(err)
    assert "fraud.yaml" in text and "detector.n_estimators" in text and "-5" in text and ">= 1" in text
    assert err.hint and "adpipe plugins show iforest" in err.hint, "the how-to-fix part belongs in the hint"


def test_wrong_type_parameter(tmp_path):
    path = write_yaml(tmp_path / "fraud.yaml", basic_config())
    err = config_error(path, ["detector.n_estimators=many"])
    assert "detector.n_estimators" in str(err) and "'many'" in str(err) and "int" in str(err)


def test_union_types_are_described_readably():
    """The 'allowed' text of a parameter typed int-or-float with ranges must be readable."""
    from adpipe.core.config import describe_field

    reg = adpipe.get_registry()
    text = describe_field(reg.get("detector", "iforest").Params.model_fields["max_samples"])
    assert "annotation=" not in text and "FieldInfo" not in text and "metadata=" not in text, text
    assert ">= 1" in text and "'auto'" in text


def test_out_of_range_section_value(tmp_path):
    path = write_yaml(tmp_path / "fraud.yaml", basic_config(engine={"batch_rows": 0}))
    err = config_error(path)
    assert "fraud.yaml" in str(err) and "engine.batch_rows" in str(err) and ">= 1" in str(err)


def test_bad_section_choice(tmp_path):
    path = write_yaml(tmp_path / "fraud.yaml", basic_config(validation={"on_invalid": "ignore"}))
    err = config_error(path)
    assert "validation.on_invalid" in str(err) and "'drop'" in str(err)


def test_severity_cutoffs_must_be_ordered(tmp_path):
    path = write_yaml(tmp_path / "fraud.yaml", basic_config(severity={"medium": 0.99, "high": 0.9}))
    err = config_error(path)
    assert "fraud.yaml" in str(err) and "severity" in str(err)


def test_unknown_top_level_key(tmp_path):
    cfg = basic_config()
    cfg["sourse"] = cfg.pop("source")
    err = config_error(write_yaml(tmp_path / "fraud.yaml", cfg))
    assert "fraud.yaml" in str(err) and "'sourse'" in str(err) and "'source'" in str(err)


def test_unknown_key_in_a_section(tmp_path):
    err = config_error(write_yaml(tmp_path / "fraud.yaml", basic_config(fit={"sample_row": 5})))
    assert "fraud.yaml" in str(err) and "fit.sample_row" in str(err) and "'sample_rows'" in str(err)


def test_missing_required_parameter(tmp_path):
    cfg = basic_config()
    cfg["source"] = {"type": "csv"}
    err = config_error(write_yaml(tmp_path / "fraud.yaml", cfg))
    assert "fraud.yaml" in str(err) and "source.path" in str(err) and "missing" in str(err)


def test_stage_without_type(tmp_path):
    cfg = basic_config()
    cfg["sinks"] = [{"path": "x.csv"}]
    err = config_error(write_yaml(tmp_path / "fraud.yaml", cfg))
    assert "fraud.yaml" in str(err) and "sinks[0]" in str(err) and "type" in str(err)


def test_no_detector(tmp_path):
    cfg = basic_config()
    del cfg["detector"]
    err = config_error(write_yaml(tmp_path / "fraud.yaml", cfg))
    assert "fraud.yaml" in str(err) and "detector" in str(err)


def test_missing_config_file(tmp_path):
    err = config_error(tmp_path / "nowhere" / "absent.yaml")
    assert "absent.yaml" in str(err) and err.exit_code == 2


def test_yaml_syntax_error(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("source: {type: csv, path: data.csv\ndetector: [iforest\n")
    err = config_error(path)
    assert "broken.yaml" in str(err)


def test_yaml_that_is_not_a_mapping(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- just\n- a list\n")
    err = config_error(path)
    assert "list.yaml" in str(err)


def test_secrets_are_masked_when_printed():
    from adpipe.core.secrets import mask

    masked = mask({"sinks": [{"type": "sql", "url": "postgresql://user:hunter2@db/x", "password": "p4ss"}],
                   "alerts": [{"webhook_url": "https://hooks.example/T0/abc"}], "name": "fraud"})
    text = repr(masked)
    assert "hunter2" not in text and "p4ss" not in text and "abc" not in text
    assert masked["name"] == "fraud" and masked["sinks"][0]["url"].startswith("postgresql://user:")


def test_numeric_secret_values_are_masked_too():
    """YAML reads `password: 123456` (or a numeric PIN/token) as an int: it must not be printed in clear."""
    from adpipe.core.secrets import mask

    masked = mask({"password": 123456, "api_token": 987654321, "port": 5432})
    assert masked["password"] != 123456 and masked["api_token"] != 987654321
    assert masked["port"] == 5432
