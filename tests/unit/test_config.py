"""The config file: errors name the dotted key and the value; the sample validates."""

from __future__ import annotations

import stat
import tomllib

import pytest
from typer.testing import CliRunner

from greennanny.cli.main import app
from greennanny.config import Config, config_from_dict, load_config
from greennanny.config_sample import sample_config
from greennanny.errors import ConfigError


def test_unknown_key_is_named_with_its_dotted_path():
    with pytest.raises(ConfigError) as e:
        config_from_dict({"mqtt": {"urll": "mqtt://x"}})
    assert "mqtt.urll: unknown key" in str(e.value)


def test_bad_value_names_path_and_value():
    with pytest.raises(ConfigError) as e:
        config_from_dict({"api": {"port": 70000}})
    assert "api.port" in str(e.value) and "70000" in str(e.value)
    with pytest.raises(ConfigError) as e:
        config_from_dict({"devices": {"24e124136b316543": {"zone": "h1"}}})
    assert "devices.24e124136b316543" in str(e.value) and "codec" in str(e.value)


def test_non_loopback_api_without_token_is_refused(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('[api]\nhost = "0.0.0.0"\ntoken_file = "missing"\n')
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert "api.host" in str(e.value) and "token" in str(e.value)


def test_every_config_field_has_a_description():
    def walk(model, path):
        for name, f in model.model_fields.items():
            assert f.description, f"{path}{name} has no description"
            ann = f.annotation
            if isinstance(ann, type) and hasattr(ann, "model_fields"):
                walk(ann, f"{path}{name}.")

    walk(Config, "")


def test_config_init_writes_a_commented_sample_that_validates_and_a_0600_token(tmp_path):
    r = CliRunner().invoke(app, ["config", "init", str(tmp_path / "g.toml")])
    assert r.exit_code == 0, r.output
    text = (tmp_path / "g.toml").read_text()
    assert text.count("\n# ") > 20 and tomllib.loads(text)
    cfg = load_config(tmp_path / "g.toml")
    assert cfg.api.host == "127.0.0.1" and cfg.mqtt.qos == 1
    mode = stat.S_IMODE((tmp_path / "api_token").stat().st_mode)
    assert mode == 0o600 and len(cfg.api_token() or "") >= 32
    r = CliRunner().invoke(app, ["config", "check", str(tmp_path / "g.toml")])
    assert r.exit_code == 0 and "ok" in r.output


def test_config_check_reports_the_bad_key_and_exits_2(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text('[pipeline]\nbatch_max_messages = "many"\n')
    r = CliRunner().invoke(app, ["config", "check", str(p)])
    assert r.exit_code == 2 and "pipeline.batch_max_messages" in r.output and "many" in r.output


def test_sample_lists_every_section():
    """Every table of the config, nested ones too, appears in what `config init` writes (a user
    told to raise [store.retention] raw_days must find the key in the file)."""
    from pydantic import BaseModel

    def tables(model: type[BaseModel], prefix: str = "") -> list[str]:
        out = []
        for name, f in model.model_fields.items():
            t = f.annotation
            if isinstance(t, type) and issubclass(t, BaseModel):
                out += [f"[{prefix}{name}]", *tables(t, f"{prefix}{name}.")]
        return out

    s = sample_config()
    want = tables(Config)
    assert "[store.retention]" in want and "[store.influxdb]" in want
    for sec in [*want, "[[mqtt.subscriptions]]"]:
        assert s.count(sec) >= 1, sec


def test_config_check_catches_unknown_codec_model_and_field_map():
    for dev, bad in (({"codec": "milesite"}, "codec 'milesite' unknown"),
                     ({"codec": "milesight", "model": "EM300-THX"}, "model 'EM300-THX' unknown"),
                     ({"field_map": "rbs305-athx"}, "field_map 'rbs305-athx' unknown")):
        with pytest.raises(ConfigError) as e:
            config_from_dict({"devices": {"24e124136b316543": {"zone": "h1", **dev}}})
        assert "devices.24e124136b316543" in str(e.value) and bad in str(e.value)


def test_most_specific_topic_filter_wins_whatever_the_config_order():
    from greennanny.ingest.json_topic import JsonTopic
    from greennanny.runtime.clock import FakeClock
    from greennanny.runtime.dedupe import Deduper
    from greennanny.runtime.pipeline import IngestPipeline, Route

    general, specific = JsonTopic(), JsonTopic()
    p = IngestPipeline([Route("greennanny/+/+/+", general), Route("greennanny/senml/+/+", specific)],
                       Deduper(0), FakeClock(0))
    assert p._route("greennanny/senml/gh/h1") is specific
    assert p._route("greennanny/gh/h1/dev") is general


def test_config_init_keeps_an_existing_token_but_makes_it_0600_and_says_so(tmp_path):
    """Found by the clean-clone check: an api_token left at 0644 was kept as it was while the
    command printed "(mode 0600)", and `config check` then passed."""
    import os
    import stat

    from typer.testing import CliRunner

    from greennanny.cli.main import app

    token = tmp_path / "api_token"
    token.write_text("x" * 40)
    os.chmod(token, 0o644)
    cfg_path = tmp_path / "greennanny.toml"
    out = CliRunner().invoke(app, ["config", "init", str(cfg_path)])
    assert out.exit_code == 0, out.output
    assert "kept the existing API token" in out.output and "from 0644 to 0600" in out.output
    assert stat.S_IMODE(token.stat().st_mode) == 0o600 and token.read_text() == "x" * 40
    os.chmod(token, 0o644)  # someone loosens it again: the node and `config check` refuse
    bad = CliRunner().invoke(app, ["config", "check", str(cfg_path)])
    assert bad.exit_code != 0 and "readable by other users" in bad.output and "chmod 600" in bad.output
