"""The kit's one file rule (minprune/files.py), for every file it writes: model files (and so baselines), int8
files, Deep Compression files.

- the SHA-256 covers everything read back: an edit of the description, the meta, the recipe or the layout is caught;
- sizes are checked before anything is allocated: a crafted (re-hashed) file that describes a huge model is refused
  while the only model built is on the meta device;
- a fuzz test flips bytes of a small file of each kind: each flipped file is refused with a CheckpointError that
  names it, or loads a model with exactly the outputs of the original;
- temporary files: removed when a write fails, and left by a killed writer, removed by the next write.
"""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import minprune as mp
from minprune import checkpoint, files
from minprune.quantization import compressed, int8_file

X = torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))


# ---- small files of each kind ----------------------------------------------------------------------------------

def _masked_mlp():
    torch.manual_seed(0)
    model = mp.build("lenet300", hidden=[12, 8])
    mp.prune(model, mp.magnitude_scores(model), 0.5)
    return model.eval()


def _pruned_mlp():
    return mp.make_permanent(_masked_mlp())


def _shared_mlp():
    model = _pruned_mlp()
    mp.share_weights(model, 2)
    return model.eval()


def write_model(path: Path):
    return mp.save_model(path, _masked_mlp(), meta={"test_acc": 0.5}), mp.load_model


def write_int8(path: Path):
    mp.save_int8(path, mp.dynamic_int8(_pruned_mlp()))
    return path, mp.load_int8


def write_int8_static(path: Path):
    torch.manual_seed(0)
    model = mp.build("lenet5", channels=[2, 4], hidden=[8, 8]).eval()
    mp.save_int8(path, mp.static_int8(model, X))
    return path, mp.load_int8


def write_compressed(path: Path):
    mp.save_compressed(path, _shared_mlp())
    return path, mp.load_compressed


KINDS = {"model": write_model, "int8": write_int8, "int8-static": write_int8_static,
         "deep-compression": write_compressed}


def _outputs(loaded) -> torch.Tensor:
    model = loaded[0] if isinstance(loaded, tuple) else loaded
    with torch.no_grad():
        return model.eval()(X)


# ---- the hash covers everything read back -----------------------------------------------------------------------

def _edit(path: Path, change) -> Path:
    payload = torch.load(path, weights_only=True)
    change(payload)
    torch.save(payload, path)
    return path


@pytest.mark.parametrize("change", [
    lambda p: p["description"].update(hidden=[12, 9]),
    lambda p: p["meta"].update(test_acc=0.99),
    lambda p: p.update(description={**p["description"], "shapes": {"layers.2": ["Identity", {}]}}),
], ids=["description", "meta", "relu-to-identity"])
def test_the_hash_of_a_model_file_covers_description_and_meta(tmp_path, change):
    path, _ = write_model(tmp_path / "m.pt")
    with pytest.raises(mp.CheckpointError, match="failed its integrity check"):
        mp.load_model(_edit(path, change))


@pytest.mark.parametrize("change", [
    lambda p: p["recipe"]["description"].update(hidden=[12, 9]),
    lambda p: p["recipe"].update(per_channel=not p["recipe"]["per_channel"]),
    lambda p: p["layout"][0][1].update(scale=1e4) if "scale" in p["layout"][0][1] else p["layout"].reverse(),
], ids=["hidden-size", "per-channel", "layout"])
def test_the_hash_of_an_int8_file_covers_recipe_and_layout(tmp_path, change):
    path, _ = write_int8(tmp_path / "m.mpq")
    with pytest.raises(mp.CheckpointError, match="failed its integrity check"):
        mp.load_int8(_edit(path, change))


def test_the_hash_tells_apart_values_that_print_alike():
    digests = {files.payload_sha256({"a": v}) for v in (1, 1.0, True, "1", [1], (1,), None, 0, False)}
    assert len(digests) == 8  # [1] and (1,) are the same list once saved
    assert files.payload_sha256({"a": 1, "b": 2}) == files.payload_sha256({"b": 2, "a": 1})
    assert files.payload_sha256({"a": torch.zeros(2)}) != files.payload_sha256({"a": torch.zeros(2, 1)})
    assert files.payload_sha256({"a": torch.zeros(2)}) != files.payload_sha256({"a": torch.zeros(2).double()})


def test_a_file_of_the_older_format_is_refused_with_what_to_do(tmp_path):
    model = mp.build("lenet300", hidden=[4, 4])
    state = model.state_dict()
    torch.save({"format": "minprune-checkpoint/1", "description": mp.models.describe(model), "meta": {},
                "state_dict": state, "sha256": files.tensors_sha256(state)}, tmp_path / "old.pt")
    with pytest.raises(mp.CheckpointError, match="another version of minprune: save it again"):
        mp.load_model(tmp_path / "old.pt")
    (tmp_path / "old.mpdc").write_bytes(b"MPDC1" + bytes(64))
    with pytest.raises(mp.CheckpointError, match="older minprune"):
        mp.load_compressed(tmp_path / "old.mpdc")


# ---- sizes checked before anything is allocated -----------------------------------------------------------------

@pytest.fixture
def only_meta_builds(monkeypatch):
    """Every model the loaders build must be built on the meta device (nothing allocated): record the devices."""
    devices = []
    real = mp.models.from_description

    def spy(description):
        devices.append(torch.get_default_device().type)
        return real(description)

    for module in (files, checkpoint, int8_file, compressed):
        monkeypatch.setattr(module, "from_description", spy)
    return devices


def _crafted_model_file(path: Path, description: dict) -> Path:
    state = mp.build("lenet300", hidden=[4, 4]).state_dict()
    torch.save(files.seal({"format": checkpoint.FORMAT, "description": description, "meta": {},
                           "state_dict": state}), path)
    return path


@pytest.mark.parametrize("hidden, message", [
    ([10**9, 8], "larger than any size a model description holds"),
    ([50_000, 8], "weights do not fit the described model"),
])
def test_a_crafted_model_file_describing_a_huge_model_is_refused_on_the_meta_device(tmp_path, only_meta_builds,
                                                                                  hidden, message):
    path = _crafted_model_file(tmp_path / "m.pt", {"arch": "lenet300", "hidden": hidden})
    with pytest.raises(mp.CheckpointError, match=message) as info:
        mp.load_model(path)
    assert str(path) in str(info.value)
    assert set(only_meta_builds) <= {"meta"}


def test_a_crafted_int8_file_describing_a_huge_model_is_refused_on_the_meta_device(tmp_path, only_meta_builds):
    path, _ = write_int8(tmp_path / "m.mpq")
    payload = torch.load(path, weights_only=True)
    payload["recipe"]["description"]["hidden"] = [40_000, 8]
    torch.save(files.seal(payload), path)
    with pytest.raises(mp.CheckpointError, match="the file stores only"):
        mp.load_int8(path)
    assert only_meta_builds == ["meta"]


def test_a_crafted_int8_file_whose_layer_does_not_hold_its_described_size_is_refused(tmp_path):
    path, _ = write_int8(tmp_path / "m.mpq")
    payload = torch.load(path, weights_only=True)
    payload["recipe"]["description"]["hidden"] = [12, 9]  # 8 outputs stored, 9 described
    torch.save(files.seal(payload), path)
    with pytest.raises(mp.CheckpointError, match="is stored as"):
        mp.load_int8(path)


def _resealed_compressed(path: Path, change) -> Path:
    data = path.read_bytes()[:-compressed.DIGEST]
    (size,) = struct.unpack("<I", data[5:9])
    header = compressed.json.loads(zlib.decompress(data[9:9 + size]))
    change(header)
    packed = zlib.compress(compressed.json.dumps(header).encode())
    body = data[:5] + struct.pack("<I", len(packed)) + packed + data[9 + size:]
    path.write_bytes(body + compressed.hashlib.sha256(body).digest())
    return path


@pytest.mark.parametrize("change, message", [
    (lambda h: h["tensors"][0].update(shape=[10**7, 10**6]), "where the description has"),
    (lambda h: h["description"].update(hidden=[10**7, 8]), "larger than any size"),
    (lambda h: h["tensors"][0].update(count=10**9), "claims"),
    (lambda h: h["tensors"][0].update(gap_code=[10**6]), "code lengths up to"),
    (lambda h: h["tensors"][0].update(nbytes=10**9), "do not add up"),
], ids=["shape", "description", "count", "code-length", "nbytes"])
def test_a_crafted_deep_compression_header_is_refused_before_decoding(tmp_path, only_meta_builds, monkeypatch,
                                                                      change, message):
    path, _ = write_compressed(tmp_path / "m.mpdc")
    only_meta_builds.clear()  # saving built the model on the CPU; loading may only build on the meta device
    monkeypatch.setattr(compressed, "decode_sparse", lambda *a: pytest.fail("decoded a crafted header"))
    with pytest.raises(mp.CheckpointError, match=message):
        mp.load_compressed(_resealed_compressed(path, change))
    assert set(only_meta_builds) <= {"meta"}


def test_a_gap_past_the_end_of_a_tensor_is_refused_not_an_index_error():
    with pytest.raises(mp.CheckpointError, match="outside the tensor"):
        compressed.decode_sparse(torch.ones(2).numpy(), [3, 5], [0, 1], [4])


# ---- fuzz: flipped bytes are refused clearly or change nothing ---------------------------------------------------

@pytest.fixture(scope="module")
def originals(tmp_path_factory):
    """{kind: (file bytes, loader, outputs of the original)}, each written once."""
    out = {}
    for kind, write in KINDS.items():
        path, load = write(tmp_path_factory.mktemp(kind) / f"original.{kind}")
        out[kind] = (path.read_bytes(), load, _outputs(load(path)))
    return out


def _flip(originals, kind: str, position: int, mask: int, folder: Path) -> None:
    data, load, expected = originals[kind]
    position %= len(data)
    damaged = bytearray(data)
    damaged[position] ^= mask
    path = folder / f"flipped-{position}.{kind}"
    path.write_bytes(bytes(damaged))
    try:
        loaded = load(path)
    except mp.CheckpointError as exc:
        assert str(path) in str(exc), f"the error does not name the file: {exc}"
        return
    finally:
        path.unlink()
    assert torch.equal(_outputs(loaded), expected), f"byte {position} of the {kind} file changed the outputs"


@pytest.mark.parametrize("kind", ["deep-compression", "int8", "model"])  # a static int8 load calibrates: swept below
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(position=st.integers(0, 2**31), mask=st.integers(1, 255))
def test_a_flipped_byte_is_refused_clearly_or_changes_nothing(originals, tmp_path, kind, position, mask):
    _flip(originals, kind, position, mask, tmp_path)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_region_of_each_file_is_covered(originals, tmp_path, kind):
    """A sweep at a fixed stride, so that every part of each file (headers, tensors, the end) is flipped once."""
    data = originals[kind][0]
    points = 25 if kind == "int8-static" else 150
    for position in range(0, len(data), max(1, len(data) // points)):
        _flip(originals, kind, position, 0xFF, tmp_path)
    _flip(originals, kind, len(data) - 1, 0x01, tmp_path)


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("keep", [0, 1, 9, 100, 0.5, -1])
def test_a_truncated_file_is_refused_clearly(originals, tmp_path, kind, keep):
    data, load, _ = originals[kind]
    path = tmp_path / f"cut.{kind}"
    path.write_bytes(data[:int(len(data) * keep) if isinstance(keep, float) else keep])
    with pytest.raises(mp.CheckpointError) as info:
        load(path)
    assert str(path) in str(info.value)


# ---- dtypes ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_a_model_comes_back_in_its_own_dtype(tmp_path, dtype):
    model = _masked_mlp().to(dtype)
    loaded, _ = mp.load_model(mp.save_model(tmp_path / "m.pt", model))
    assert {p.dtype for p in loaded.parameters()} == {dtype}
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))


def test_a_model_of_mixed_float_dtypes_is_refused_before_writing(tmp_path):
    model = mp.build("lenet300", hidden=[4, 4])
    model.layers[1].half()
    with pytest.raises(ValueError, match="one floating dtype per model"):
        mp.save_model(tmp_path / "m.pt", model)
    assert list(tmp_path.iterdir()) == []


# ---- temporary files -------------------------------------------------------------------------------------------

def test_a_failed_write_leaves_no_temporary_file_and_the_old_file_intact(tmp_path):
    path = mp.save_model(tmp_path / "m.pt", mp.build("lenet300", hidden=[4, 4]))
    before = path.read_bytes()

    def fail(f):
        f.write(b"partial")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        files.atomic_write(path, fail)
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"] and path.read_bytes() == before


def test_the_temporary_file_of_a_killed_save_is_removed_by_the_next_save(tmp_path):
    script = ("import os, signal, sys; from minprune.files import atomic_write\n"
              "def write(f):\n    f.write(b'x' * 100000); f.flush(); os.kill(os.getpid(), signal.SIGKILL)\n"
              "atomic_write(sys.argv[1], write)\n")
    target = tmp_path / "m.pt"
    done = subprocess.run([sys.executable, "-c", script, str(target)], capture_output=True)
    assert done.returncode == -signal.SIGKILL
    left = [p for p in tmp_path.iterdir()]
    assert len(left) == 1 and left[0].name.startswith(".m.pt.") and not target.exists()
    assert files.stale_temporary_files(target) == left
    mp.save_model(target, mp.build("lenet300", hidden=[4, 4]))
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]


def test_a_temporary_file_of_a_live_writer_is_left_alone(tmp_path):
    live = tmp_path / f".m.pt.{os.getppid()}-abc.tmp"
    live.write_bytes(b"being written")
    mp.save_model(tmp_path / "m.pt", mp.build("lenet300", hidden=[4, 4]))
    assert live.exists() and files.stale_temporary_files(tmp_path / "m.pt") == []
