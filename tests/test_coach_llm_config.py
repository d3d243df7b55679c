"""The coach's configuration: the workspace file, environment overrides, keys from the
environment only (and never shown), and doctor's report of the backend."""

from __future__ import annotations

import pytest
from fixtures.fake_llm import FakeOpenAI, closed_port

from tutor import config
from tutor.config import ConfigError, LLMConfig, load_llm_config
from tutor.doctor import llm_finding

KEY = "sk-TEST-config-424242-SECRET"
ENV = ("TINY_LLM_TUTOR_LLM", "TINY_LLM_TUTOR_MODEL", "TINY_LLM_TUTOR_BASE_URL",
       "TINY_LLM_TUTOR_TIMEOUT", "ANTHROPIC_API_KEY", "OPENAI_API_KEY")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for k in ENV:
        monkeypatch.delenv(k, raising=False)


def write(tmp_path, text: str):
    (tmp_path / config.CONFIG_NAME).write_text(text)
    return tmp_path


def test_offline_by_default(tmp_path):
    assert load_llm_config(tmp_path) == LLMConfig()
    assert load_llm_config(None).backend == "offline"


def test_anthropic_from_the_file_key_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    cfg = load_llm_config(write(tmp_path, '[llm]\nbackend = "anthropic"\ntimeout_s = 12\n'))
    assert cfg.backend == "anthropic" and cfg.model == config.DEFAULT_ANTHROPIC_MODEL
    assert cfg.api_key == KEY and cfg.timeout_s == 12.0 and cfg.base_url == ""
    assert KEY not in repr(cfg) and KEY not in str(cfg) and KEY not in cfg.describe()


def test_openai_defaults_to_the_local_mlx_lm_server(tmp_path):
    cfg = load_llm_config(write(tmp_path, '[llm]\nbackend = "openai"\n'))
    assert cfg.base_url == "http://127.0.0.1:8080/v1" and cfg.model == "" and cfg.api_key == ""
    assert cfg.describe() == "OpenAI-compatible server at 127.0.0.1:8080"


def test_environment_overrides_the_file(tmp_path, monkeypatch):
    write(tmp_path, '[llm]\nbackend = "anthropic"\nmodel = "claude-x"\n')
    monkeypatch.setenv("TINY_LLM_TUTOR_LLM", "openai")
    monkeypatch.setenv("TINY_LLM_TUTOR_MODEL", "qwen")
    monkeypatch.setenv("TINY_LLM_TUTOR_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("TINY_LLM_TUTOR_TIMEOUT", "3")
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    cfg = load_llm_config(tmp_path)
    assert (cfg.backend, cfg.model, cfg.base_url, cfg.timeout_s, cfg.api_key) == \
        ("openai", "qwen", "http://127.0.0.1:9/v1", 3.0, KEY)


@pytest.mark.parametrize("text, words", [
    ('[llm]\napi_key = "sk-TEST-config-424242-SECRET"\n', "environment only"),
    ('[llm]\nbackend = "gpt"\n', "llm.backend must be one of"),
    ('[llm]\nbackend = "openai"\nbase_url = "localhost:8080"\n', "http:// or https://"),
    ('[llm]\nbackend = "openai"\ntemperature = 1\n', "unknown key llm.temperature"),
    ('[llm]\ntimeout_s = "soon"\n', "must be a number"),
    ('llm = 3\n', "must be a table"),
    ('[llm\n', "not valid TOML"),
])
def test_bad_settings_are_one_clear_line_without_the_key(tmp_path, text, words):
    with pytest.raises(ConfigError) as err:
        load_llm_config(write(tmp_path, text))
    assert words in str(err.value) and KEY not in str(err.value)


def test_doctor_reports_each_backend(tmp_path, monkeypatch):
    assert llm_finding(tmp_path).state == "info"
    write(tmp_path, '[llm]\nbackend = "anthropic"\n')
    f = llm_finding(tmp_path)
    assert f.state == "missing" and "ANTHROPIC_API_KEY" in f.detail
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    f = llm_finding(tmp_path)  # no network in tests: not reachable, offline meanwhile
    assert f.state == "warn" and KEY not in f.detail + f.fix
    with FakeOpenAI() as srv:
        write(tmp_path, f'[llm]\nbackend = "openai"\nbase_url = "{srv.base_url}"\n')
        assert llm_finding(tmp_path).state == "ok"
    write(tmp_path, f'[llm]\nbackend = "openai"\nbase_url = "http://127.0.0.1:{closed_port()}/v1"\n')
    assert llm_finding(tmp_path).state == "warn"
    write(tmp_path, '[llm]\nbackend = "nope"\n')
    assert llm_finding(tmp_path).state == "warn"


@pytest.mark.parametrize("var, value, words", [
    ("TINY_LLM_TUTOR_TIMEOUT", "soon", "must be a number"),
    ("TINY_LLM_TUTOR_TIMEOUT", "0", "must be between"),
    ("TINY_LLM_TUTOR_DEADLINE", "forever", "must be a number"),
    ("TINY_LLM_TUTOR_LLM", "gpt", "must be one of"),
    ("TINY_LLM_TUTOR_BASE_URL", "localhost:8080", "http:// or https://"),
])
def test_a_bad_environment_variable_is_blamed_not_the_file(tmp_path, monkeypatch, var, value,
                                                           words):
    write(tmp_path, '[llm]\nbackend = "openai"\ntimeout_s = 10\n')
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError) as err:
        load_llm_config(tmp_path)
    msg = str(err.value)
    assert f"the environment variable {var}" in msg and words in msg
    assert config.CONFIG_NAME not in msg and err.value.env == var
    finding = llm_finding(tmp_path)
    assert var in finding.detail and config.CONFIG_NAME not in finding.fix


def test_a_bad_file_value_is_still_blamed_on_the_file(tmp_path):
    write(tmp_path, '[llm]\ndeadline_s = 0\n')
    with pytest.raises(ConfigError) as err:
        load_llm_config(tmp_path)
    assert str(err.value).startswith(f"{config.CONFIG_NAME}: llm.deadline_s must be between")
    assert err.value.env == ""


def _claude_names(text: str) -> set[str]:
    import re

    return set(re.findall(r"\bclaude-[\w.-]*\w", text))


def test_readme_and_the_workspace_file_name_the_code_s_default_model(tmp_path):
    """Issue 10: the toml written by init and README named other models than the code."""
    from tutor.paths import content_root
    from tutor.workspace import init_workspace

    init_workspace(tmp_path / "ws")
    toml = (tmp_path / "ws" / config.CONFIG_NAME).read_text()
    assert f'model = "{config.DEFAULT_ANTHROPIC_MODEL}"' in toml
    assert _claude_names(toml) == {config.DEFAULT_ANTHROPIC_MODEL}
    readme = (content_root() / "README.md")
    if not readme.is_file():  # an installed wheel carries no README
        pytest.skip("no README.md beside the package")
    text = readme.read_text()
    row = next(line for line in text.splitlines() if line.startswith("| `model` |"))
    assert f"`{config.DEFAULT_ANTHROPIC_MODEL}`" in row
    assert _claude_names(text) <= {config.DEFAULT_ANTHROPIC_MODEL}
