"""The model store and loader facing hostile model files and names: a file's model is
hashed before anything in it is parsed or built, configs are checked against a schema
(ModelError, nothing built), and a model name from a file is never a path."""

from __future__ import annotations

import json
import shutil
import struct
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import recorded

from idfcompress.codec import decoder
from idfcompress.errors import ModelError
from idfcompress.flow import coding, config, loading, model, store
from idfcompress.flow.config import ModelConfig
from idfcompress.format import container

HOSTILE = {
    "five": "5",
    "list": "[]",
    "null": "null",
    "string-levels": '{"levels": "3"}',
    "bool-width": '{"width": true}',
    "float-levels": '{"levels": 3.0}',
    "nan-top": '{"top_low": NaN}',
    "huge-int": '{"seed": ' + "9" * 5000 + "}",
    "deep": "[" * 20000 + "]" * 20000,
    "unknown-key": '{"levels": 3, "evil": 1}',
    "top-low-above-high": '{"top_low": 600, "top_high": 100}',
    "top-equal": '{"top_low": 5, "top_high": 5}',
    "couplings-200000": '{"couplings_per_level": 200000}',
    "levels-40": '{"levels": 40}',
    "levels-0": '{"levels": 0}',
    "width-0": '{"width": 0}',
    "negative-seed": '{"seed": -1}',
    "kernel-2": '{"middle_kernel": 2}',
    "coupling-name": '{"coupling": "nine-way"}',
    "parameters": '{"width": 512, "prior_width": 512, "hidden_layers": 8, "middle_kernel": 3}',
    "table-bins": '{"top_low": -32768, "top_high": 32767, "levels": 6}',
}


def _with_config(source: Path, target: Path, text: str | None) -> Path:
    """A copy of model file ``source`` whose metadata holds ``text`` as its config (or no
    config); the tensors are unchanged."""
    data = source.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + length])
    if text is None:
        del header["__metadata__"]["config"]
    else:
        header["__metadata__"]["config"] = text
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + length :])
    return target


def _regrouped(data: bytes, name: str, sha256: bytes) -> bytes:
    """The .idf file with its plane groups naming model ``name`` with ``sha256``."""
    header, chunks = container.read(data)
    header.groups = [replace(g, model_name=name, model_sha256=sha256) for g in header.groups]
    return container.write(
        header, [container.Chunk(e.group, e.kind, e.tile, bytes(p)) for e, p in chunks]
    )


@pytest.fixture()
def flow_file(tiny_models) -> bytes:
    """A file of six flow-coded tiles of tiny-rgb (recorded)."""
    return recorded("rgb-40x24-t16")


@pytest.fixture()
def never_built(monkeypatch):
    """Fail the test if a flow is built."""

    def refuse(self, *args, **kwargs):
        raise AssertionError("a flow was built")

    monkeypatch.setattr(model.IntegerFlow, "__init__", refuse)
    monkeypatch.setattr(loading, "IntegerFlow", model.IntegerFlow)


# ------------------------------------------------------------------------------ configs


@pytest.mark.parametrize("text", list(HOSTILE.values()), ids=list(HOSTILE))
def test_hostile_configs_are_model_errors(text):
    with pytest.raises(ModelError) as error:
        ModelConfig.from_json(text)
    assert "\n" not in str(error.value) and len(str(error.value)) < 300


@pytest.mark.parametrize("text", list(HOSTILE.values()), ids=list(HOSTILE))
def test_hostile_model_files_are_refused_before_anything_is_built(
    tiny_model_dir, tmp_path, monkeypatch, never_built, text
):
    source = tiny_model_dir / "tiny-rgb.safetensors"
    hostile = _with_config(source, tmp_path / "m" / "h.safetensors", text)
    with pytest.raises(ModelError, match="not a valid idfcompress model"):
        store.read_config(hostile)
    with pytest.raises(ModelError, match="not a valid idfcompress model"):
        store.describe_model(str(hostile))  # what the encoder calls, default model included
    with pytest.raises(ModelError, match="not a valid idfcompress model"):
        loading.load_flow(hostile)
    monkeypatch.setenv(store.MODELS_ENV, str(hostile.parent))
    with pytest.raises(ModelError, match="not a valid idfcompress model"):
        store.describe_model("h")


def test_missing_config_and_broken_headers_are_model_errors(tiny_model_dir, tmp_path):
    no_config = _with_config(tiny_model_dir / "tiny-rgb.safetensors", tmp_path / "a.st", None)
    short = tmp_path / "short.safetensors"
    short.write_bytes(b"\x05\0\0")
    claims = tmp_path / "claims.safetensors"
    claims.write_bytes(struct.pack("<Q", 1 << 40) + b"{}")
    not_json = tmp_path / "text.safetensors"
    not_json.write_bytes(struct.pack("<Q", 4) + b"{{{{")
    for path in (no_config, short, claims, not_json):
        with pytest.raises(ModelError, match="not a valid idfcompress model"):
            store.read_config(path)
        with pytest.raises(ModelError, match="not a valid idfcompress model"):
            loading.load_flow(path)


def test_config_bounds_accept_the_shipped_architectures():
    for overrides in ({}, {"in_channels": 1}, {"context_split": True}, {"coupling": "four-way"}):
        cfg = ModelConfig(**overrides)
        assert ModelConfig.from_json(cfg.to_json()) == cfg
    assert ModelConfig(context_split=True).parameters == 1_063_254  # idf-rgb-c1's card
    assert ModelConfig(in_channels=1, context_split=True).parameters == 542_578  # idf-gray-c2


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"in_channels": 1, "context_split": True},
        {"coupling": "four-way", "levels": 2, "width": 8, "prior_width": 8},
        {"top_split": False, "levels": 1, "hidden_layers": 0, "middle_kernel": 3, "width": 5},
        {"levels": 4, "context_split": True, "top_split": False, "hidden_layers": 2,
         "middle_kernel": 3, "width": 16, "prior_width": 12, "mixture_components": 3},
    ],
)  # fmt: skip
def test_size_counts_what_the_flow_builds(overrides):
    cfg = ModelConfig(**overrides)
    flow = model.IntegerFlow(cfg)
    networks = len(flow.conv_nets())
    parameters = sum(p.numel() for p in flow.parameters())
    assert cfg.size() == (parameters, networks, flow.mixture_channels)


def test_a_config_just_under_the_parameter_bound_is_accepted():
    # width 512, 3 levels: about 13 M parameters, under the 16 M bound; 8 hidden layers: over
    assert ModelConfig(width=512, prior_width=512).parameters < config.MAX_PARAMETERS
    with pytest.raises(ModelError, match="parameters"):
        ModelConfig(width=512, prior_width=512, hidden_layers=8)


# ------------------------------------------------------------------------------ identity


def test_model_for_hashes_before_it_parses(flow_file, tiny_model_dir, tmp_path, monkeypatch):
    """A hostile model installed under the name the file records: refused for its hash,
    without its config being read or a flow built."""
    folder = tmp_path / "models"
    _with_config(tiny_model_dir / "tiny-rgb.safetensors", folder / "tiny-rgb.safetensors", "5")
    monkeypatch.setenv(store.MODELS_ENV, str(folder))

    def parsed(*args, **kwargs):
        raise AssertionError("the config was parsed")

    monkeypatch.setattr(ModelConfig, "from_json", parsed)
    monkeypatch.setattr(model.IntegerFlow, "__init__", parsed)
    expected = container.read_header(flow_file)[0].groups[0].model_sha256.hex()[:16]
    with pytest.raises(ModelError, match=f"needs model 'tiny-rgb' with sha256 {expected}"):
        decoder.decode(flow_file)


@pytest.mark.parametrize("text", ["5", '{"levels": "3"}', '{"top_low": 600, "top_high": 100}',
                                  '{"couplings_per_level": 200000}', '{"levels": 40}'])  # fmt: skip
def test_a_file_naming_a_hostile_model_by_its_own_hash_is_a_model_error(
    flow_file, tiny_model_dir, tmp_path, monkeypatch, never_built, text
):
    folder = tmp_path / "models"
    source = tiny_model_dir / "tiny-rgb.safetensors"
    hostile = _with_config(source, folder / "evil.safetensors", text)
    monkeypatch.setenv(store.MODELS_ENV, str(folder))
    forged = _regrouped(flow_file, "evil", store.file_sha256(hostile))
    with pytest.raises(ModelError, match="needs model 'evil'.*not a valid idfcompress model"):
        decoder.decode(forged)


def test_model_is_built_from_the_bytes_it_hashed(flow_file, tiny_model_dir, tmp_path, monkeypatch):
    """A file replaced between model_for's hash and the load is refused, not built."""
    folder = tmp_path / "models"
    target = folder / "tiny-rgb.safetensors"
    folder.mkdir()
    shutil.copy(tiny_model_dir / "tiny-rgb.safetensors", target)
    monkeypatch.setenv(store.MODELS_ENV, str(folder))
    hashed = store.file_sha256(target)
    real_hash = coding.file_sha256

    def hash_then_swap(path):
        digest = real_hash(path)
        _with_config(tiny_model_dir / "tiny-rgb.safetensors", target, '{"levels": 40}')
        return digest

    loading.load_verified.cache_clear()
    monkeypatch.setattr(coding, "file_sha256", hash_then_swap)
    assert hashed == container.read_header(flow_file)[0].groups[0].model_sha256
    with pytest.raises(ModelError, match="changed while it was loaded"):
        decoder.decode(flow_file)


# ------------------------------------------------------------------------------ names


def test_a_model_name_from_a_file_is_never_a_path(flow_file, tiny_model_dir, tmp_path, monkeypatch):
    """A header naming 'x.safetensors' with the hash of ./x.safetensors: the current folder is
    not searched (only NAME.safetensors in the model folders), the file is never opened."""
    monkeypatch.chdir(tmp_path)
    local = Path("x.safetensors")
    shutil.copy(tiny_model_dir / "tiny-rgb.safetensors", local)
    forged = _regrouped(flow_file, "x.safetensors", store.file_sha256(local))
    expected = decoder.decode(flow_file).pixels
    opened: list[str] = []
    real_hash = coding.file_sha256
    monkeypatch.setattr(coding, "file_sha256", lambda p: opened.append(str(p)) or real_hash(p))
    with pytest.raises(ModelError, match=r"model 'x.safetensors' not found \(searched"):
        decoder.decode(forged)
    assert opened == []
    # installed under that name in a model folder, it is found there as a name
    folder = tmp_path / "models"
    folder.mkdir()
    shutil.copy(local, folder / "x.safetensors.safetensors")
    monkeypatch.setenv(store.MODELS_ENV, str(folder))
    decoded = decoder.decode(forged)
    assert np.array_equal(decoded.pixels, expected)
    assert opened == [str(folder / "x.safetensors.safetensors")]


@pytest.mark.parametrize("name", ["../models/tiny-rgb", "/etc/passwd", "", "a b", "é"])
def test_find_model_takes_names_only(tiny_models, name):
    with pytest.raises(ModelError, match="not a model name|not found"):
        store.find_model(name)


def test_a_script_may_name_its_own_model_by_path(tiny_model_dir, tmp_path, monkeypatch):
    """``describe_model(PATH)`` / ``load_model(PATH)``: a file the caller chose, named by its
    stem; a name from a file is never a path (above)."""
    own = tmp_path / "mine" / "my-model.safetensors"
    own.parent.mkdir()
    shutil.copy(tiny_model_dir / "tiny-rgb.safetensors", own)
    monkeypatch.setenv(store.MODELS_ENV, str(tmp_path / "empty"))
    info = store.describe_model(str(own))
    assert (info.name, info.path.resolve()) == ("my-model", own.resolve())
    assert loading.load_model(str(own)).name == "my-model"
    bad = tmp_path / "mine" / "my model.safetensors"
    shutil.copy(own, bad)
    with pytest.raises(ModelError, match="must be NAME.safetensors"):
        store.describe_model(str(bad))
    with pytest.raises(ModelError, match="not found"):
        store.describe_model(str(tmp_path / "nowhere.safetensors"))
