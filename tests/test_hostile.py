"""Hostile checkpoints and bad input: refused with one line, the right code, nothing changed."""

import json
import shutil
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from charnn.errors import CheckpointError
from charnn.runs.checkpoint import CONFIG_FILE, MODEL_FILE
from charnn.tasks import load_run


def copy_run(trained_run, tmp_path):
    folder = tmp_path / "run"
    shutil.copytree(trained_run, folder)
    return folder


def test_pickle_file_is_refused(tmp_path):
    pt = tmp_path / "model.pt"
    pt.write_bytes(b"\x80\x04\x95" + b"cos\nsystem\n" * 3)
    with pytest.raises(CheckpointError, match="never unpickles"):
        load_run(pt)


def test_oversized_safetensors_header_is_refused(trained_run, tmp_path):
    folder = copy_run(trained_run, tmp_path)
    data = (folder / MODEL_FILE).read_bytes()
    (folder / MODEL_FILE).write_bytes(struct.pack("<Q", 1 << 60) + data[8:])
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_run(folder)


def test_wrong_dtype_is_refused(trained_run, tmp_path):
    from safetensors.torch import load_file, save_file

    folder = copy_run(trained_run, tmp_path)
    tensors = load_file(folder / MODEL_FILE)
    tensors = {k: v.double() for k, v in tensors.items()}
    save_file(tensors, folder / MODEL_FILE)
    with pytest.raises(CheckpointError, match="float64"):
        load_run(folder)


@pytest.mark.parametrize("name", ["../../etc/passwd", "/etc/passwd", "sub/tokenizer.json", ""])
def test_paths_outside_the_run_folder_are_refused(trained_run, tmp_path, name):
    folder = copy_run(trained_run, tmp_path)
    config = json.loads((folder / CONFIG_FILE).read_text())
    config["tokenizer"]["file"] = name
    (folder / CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="invalid tokenizer file"):
        load_run(folder)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_weights_are_loaded_or_refused_never_crash(trained_run, tmp_path_factory, data):
    folder = copy_run(trained_run, tmp_path_factory.mktemp("fuzz"))
    raw = bytearray((folder / MODEL_FILE).read_bytes())
    header_end = 8 + struct.unpack("<Q", raw[:8])[0]
    for _ in range(data.draw(st.integers(1, 8))):
        where = data.draw(st.integers(0, header_end + 64))
        raw[where] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        raw = raw[: data.draw(st.integers(0, len(raw)))]
    (folder / MODEL_FILE).write_bytes(bytes(raw))
    try:
        load_run(folder)
    except CheckpointError:
        pass


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    section=st.sampled_from(["model", "tokenizer", "format_version", "format"]),
    key=st.text(max_size=12),
    value=json_values,
)
def test_fuzzed_config_is_loaded_or_refused_never_crash(trained_run, tmp_path_factory, section, key, value):
    folder = copy_run(trained_run, tmp_path_factory.mktemp("fuzz"))
    config = json.loads((folder / CONFIG_FILE).read_text())
    if isinstance(config.get(section), dict) and key:
        config[section][key] = value
    else:
        config[section] = value
    (folder / CONFIG_FILE).write_text(json.dumps(config))
    try:
        load_run(folder)
    except CheckpointError:
        pass


def test_config_that_is_not_json_is_refused(trained_run, tmp_path):
    folder = copy_run(trained_run, tmp_path)
    (folder / CONFIG_FILE).write_bytes(b"\xff\xfe not json")
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_run(folder)
