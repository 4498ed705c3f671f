import os
import pickle

import pytest
import torch

import minprune as mp
from minprune import checkpoint
from minprune.files import seal


def _same(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("arch", ["lenet300", "lenet5", "vgg", "resnet"])
def test_round_trip(tmp_path, arch):
    model = mp.build(arch)
    path = mp.save_model(tmp_path / "m.pt", model, meta={"note": "hi"})
    loaded, meta = mp.load_model(path)
    assert _same(model, loaded) and meta == {"note": "hi"}
    x = torch.randn(2, 1, 28, 28)
    model.eval(), loaded.eval()
    assert torch.equal(model(x), loaded(x))


def test_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "m.pt"
    mp.save_model(path, mp.build("lenet300"))
    before = path.read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError):
        mp.save_model(path, mp.build("lenet5"))
    assert path.read_bytes() == before  # the old file is intact
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]  # no temp file left behind


def test_truncated_file(tmp_path):
    path = mp.save_model(tmp_path / "m.pt", mp.build("lenet300"))
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(mp.CheckpointError, match="not a readable"):
        mp.load_model(path)


def test_tampered_weights_are_detected(tmp_path):
    path = mp.save_model(tmp_path / "m.pt", mp.build("lenet300"))
    payload = torch.load(path, weights_only=True)
    payload["state_dict"]["layers.1.weight"][0, 0] += 1.0
    torch.save(payload, path)
    with pytest.raises(mp.CheckpointError, match="integrity"):
        mp.load_model(path)


def test_malicious_pickle_is_refused(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"format": checkpoint.FORMAT, "x": Evil()}, f)
    with pytest.raises(mp.CheckpointError):
        mp.load_model(path)
    assert not marker.exists()


def test_wrong_format_and_mismatched_weights(tmp_path):
    path = tmp_path / "plain.pt"
    torch.save(mp.build("lenet300").state_dict(), path)
    with pytest.raises(mp.CheckpointError, match="not a minprune"):
        mp.load_model(path)
    state = mp.build("lenet300").state_dict()  # written by hand: save_model itself refuses such a description
    torch.save(seal({"format": checkpoint.FORMAT, "description": {"arch": "lenet5"}, "meta": {}, "state_dict": state}),
               tmp_path / "m.pt")
    other = tmp_path / "m.pt"
    with pytest.raises(mp.CheckpointError, match="do not fit"):
        mp.load_model(other)
    with pytest.raises(FileNotFoundError):
        mp.load_model(tmp_path / "missing.pt")


def test_written_files_get_the_usual_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        path = mp.save_model(tmp_path / "m.pt", mp.build("lenet300"))
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644
