"""Checkpoints (save/load, refusal of foreign/corrupt files) and official-checkpoint import.

The import is checked against an independent functional re-implementation of the official
EMERT forward pass (``official_reference`` below): plain torch functional ops reading the
official state dict by its official key names, following the authors' architecture (ResNet-18
trunk up to the pooled feature, 3-layer LSTMs, MAFD projections, pre-norm cross-attention with
separate q/k/v LayerNorms, 8 heads of 64, GELU MLP, residuals, mean over tokens, heads).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

from emer_live import cli  # noqa: E402
from emer_live.errors import CheckpointError, ConfigError  # noqa: E402
from emer_live.model import (EMERT, EMERTConfig, LoadedModel, identity_norm_stats, import_official,  # noqa: E402
                             load_checkpoint, save_checkpoint, select_device)
from emer_live.model.official import official_state_dict  # noqa: E402

pytestmark = pytest.mark.torch

LAYOUT_DIR = Path(__file__).resolve().parents[1] / "emer_live" / "model" / "official_layouts"
LAYOUT_FILE = {"discrete": "discrete", "valence": "regression", "arousal": "regression", "intensity": "intensity"}


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)


def load_layout(variant):
    lay = json.loads((LAYOUT_DIR / f"official_emert_layout_{LAYOUT_FILE[variant]}.json").read_text())
    if "subnet.f_extractor.*" in lay:
        del lay["subnet.f_extractor.*"]
        disc = json.loads((LAYOUT_DIR / "official_emert_layout_discrete.json").read_text())
        lay = {**{k: v for k, v in disc.items() if k.startswith("subnet.f_extractor.")}, **lay}
    return lay


def random_official_state(variant, seed=0):
    """A randomly initialised state dict built from the official JSON layout alone."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for k, shape in load_layout(variant).items():
        if k.endswith("num_batches_tracked"):
            sd[k] = torch.tensor(100, dtype=torch.int64)
        elif k.endswith("running_var"):
            sd[k] = torch.rand(shape, generator=g) + 0.5
        elif k.endswith("running_mean"):
            sd[k] = 0.1 * torch.randn(shape, generator=g)
        elif "pos_embedding" in k:
            sd[k] = torch.randn(shape, generator=g)
        elif len(shape) >= 2:
            fan_in = math.prod(shape[1:])
            sd[k] = torch.randn(shape, generator=g) * math.sqrt(2.0 / fan_in)
        elif ".bn" in k or "norm" in k or "downsample.1" in k:
            sd[k] = (1.0 if k.endswith("weight") else 0.0) + 0.1 * torch.randn(shape, generator=g)
        else:  # biases
            sd[k] = 0.1 * torch.randn(shape, generator=g)
    return sd


# ---------------------------------------------------------------------------- reference
def official_reference(sd, face_bgr, eye, fixation):
    """Functional re-implementation of the official EMERT forward (eval mode)."""
    def lin(x, p):
        return F.linear(x, sd[p + ".weight"], sd.get(p + ".bias"))

    def bn(x, p):
        return F.batch_norm(x, sd[p + ".running_mean"], sd[p + ".running_var"], sd[p + ".weight"],
                            sd[p + ".bias"], training=False, eps=1e-5)

    def block(x, p, stride):
        out = F.relu(bn(F.conv2d(x, sd[p + ".conv1.weight"], stride=stride, padding=1), p + ".bn1"))
        out = bn(F.conv2d(out, sd[p + ".conv2.weight"], padding=1), p + ".bn2")
        if p + ".downsample.0.weight" in sd:
            x = bn(F.conv2d(x, sd[p + ".downsample.0.weight"], stride=stride), p + ".downsample.1")
        return F.relu(out + x)

    r = "subnet.f_extractor"
    b, t = face_bgr.shape[:2]
    x = face_bgr.reshape(b * t, *face_bgr.shape[2:])
    x = F.relu(bn(F.conv2d(x, sd[r + ".conv1.weight"], stride=2, padding=3), r + ".bn1"))
    x = F.max_pool2d(x, 3, 2, 1)
    for layer, stride in zip(range(1, 5), (1, 2, 2, 2)):
        x = block(block(x, f"{r}.layer{layer}.0", stride), f"{r}.layer{layer}.1", 1)
    x_face = lin(x.mean(dim=(2, 3)).reshape(b, t, 512), "proj_v1")

    def lstm(x, p):
        for layer in range(3):
            w_ih, w_hh = sd[f"{p}.weight_ih_l{layer}"], sd[f"{p}.weight_hh_l{layer}"]
            bias = sd[f"{p}.bias_ih_l{layer}"] + sd[f"{p}.bias_hh_l{layer}"]
            h = x.new_zeros(x.shape[0], w_hh.shape[1])
            c = torch.zeros_like(h)
            seq = []
            for step in range(x.shape[1]):
                i, f, g, o = (x[:, step] @ w_ih.T + h @ w_hh.T + bias).chunk(4, dim=1)
                c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                h = torch.sigmoid(o) * torch.tanh(c)
                seq.append(h)
            x = torch.stack(seq, dim=1)
        return x

    x_eye, x_fix = lstm(eye, "subnet.e_lstm"), lstm(fixation, "subnet.v_lstm")

    def proj(x, p):
        x = lin(x, p + ".0")
        return lin(F.leaky_relu(x, 0.1), p + ".2") if p + ".2.weight" in sd else x

    spec = [proj(x_face, "specific_projection_v"), proj(x_eye, "specific_projection_a"),
            proj(x_fix, "specific_projection_l")]
    inv = [proj(v, "invariant_projection") for v in (x_face, x_eye, x_fix)]
    disc_inv = torch.stack([lin(v.mean(1), "distriminator.0") for v in inv], dim=1)
    disc_spec = torch.stack([lin(v.mean(1), "distriminator.0") for v in spec], dim=1)

    s = torch.cat(spec, 1) + sd["transformer.pos_embedding_s"]
    q_tok = torch.cat(inv, 1) + sd["transformer.pos_embedding_t"]
    dim = s.shape[-1]

    def ln(x, p):
        return F.layer_norm(x, (dim,), sd[p + ".weight"], sd[p + ".bias"])

    layer = 0
    while f"transformer.CrossTransformerEncoder.layers.{layer}.0.norm_q.weight" in sd:
        p = f"transformer.CrossTransformerEncoder.layers.{layer}"
        q = F.linear(ln(q_tok, p + ".0.norm_q"), sd[p + ".0.fn.to_q.weight"])
        k = F.linear(ln(s, p + ".0.norm_k"), sd[p + ".0.fn.to_k.weight"])
        v = F.linear(ln(s, p + ".0.norm_v"), sd[p + ".0.fn.to_v.weight"])
        q, k, v = (z.reshape(b, z.shape[1], 8, 64).permute(0, 2, 1, 3) for z in (q, k, v))
        attn = torch.softmax(torch.einsum("bhid,bhjd->bhij", q, k) * 64 ** -0.5, dim=-1)
        out = torch.einsum("bhij,bhjd->bhid", attn, v).permute(0, 2, 1, 3).reshape(b, -1, 512)
        q_tok = lin(out, p + ".0.fn.to_out.0") + q_tok
        hid = F.gelu(lin(ln(q_tok, p + ".1.norm"), p + ".1.fn.net.0"))
        q_tok = lin(hid, p + ".1.fn.net.3") + q_tok
        layer += 1
    feat = q_tok.mean(1)

    heads = {}
    if "cls_head_e.0.weight" in sd:
        heads["emotion"] = lin(feat, "cls_head_e.0")
        heads["intensity"] = lin(feat, "cls_head_in.0")
    else:
        y, i = feat, 0
        while f"cls_head.{i}.weight" in sd:
            y = lin(y if i == 0 else F.leaky_relu(y, 0.01), f"cls_head.{i}")
            i += 2
        heads["cls"] = y
    return heads, disc_spec, disc_inv


def _inputs(b, size, seed):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(b, 8, 3, size, size, generator=g), 2.0 * torch.randn(b, 32, 39, generator=g),
            torch.randn(b, 32, 2, generator=g))


def _save_raw(tmp_path, name, obj):
    p = tmp_path / name
    torch.save(obj, p)
    return p


# ---------------------------------------------------------------------------- official import
@pytest.mark.parametrize("variant, size", [("discrete", 112), ("valence", 48), ("arousal", 48), ("intensity", 48)])
def test_imported_official_model_matches_functional_reference(tmp_path, variant, size):
    sd = random_official_state(variant, seed=hash(variant) % 1000)
    src = _save_raw(tmp_path, f"{variant}.pth", sd)
    imp = import_official(src, variant=variant)
    model = imp.model
    assert not model.training
    face_bgr, eye, fix = _inputs(2, size, seed=1)
    with torch.no_grad():
        ours = model(face_bgr.flip(2), eye, fix)  # our forward takes RGB
        ref, disc_s, disc_i = official_reference(sd, face_bgr, eye, fix)
    tol = dict(rtol=1e-4, atol=1e-4)
    if variant == "discrete":
        assert set(imp.config.heads) == {"er7"}
        torch.testing.assert_close(ours["er7"], ref["cls"], **tol)
    elif variant == "intensity":
        torch.testing.assert_close(ours["fer7"], ref["emotion"], **tol)
        torch.testing.assert_close(ours["fer_intensity"], ref["intensity"][:, 0], **tol)
    else:
        torch.testing.assert_close(ours[f"er_{variant}"], ref["cls"][:, 0], **tol)
    torch.testing.assert_close(ours["disc_specific"], disc_s, **tol)
    torch.testing.assert_close(ours["disc_invariant"], disc_i, **tol)
    # the reference is sensitive to what it checks: a different face changes its output
    with torch.no_grad():
        ref2 = official_reference(sd, face_bgr.flip(2), eye, fix)[0]
    assert not torch.allclose(next(iter(ref2.values())), next(iter(ref.values())), **tol)
    # exported back under official names, the weights are bit-identical to the source
    back = official_state_dict(model)
    assert list(back) == list(load_layout(variant))
    assert all(torch.equal(back[k], sd[k]) for k in sd)


def test_import_handles_wrapped_and_module_prefixed_files(tmp_path):
    sd = random_official_state("intensity", seed=3)
    wrapped = {"epoch": 17, "state_dict": {"module." + k: v for k, v in sd.items()}}
    imp = import_official(_save_raw(tmp_path, "wrapped.pth", wrapped), variant="intensity", task="er", fold=2)
    assert imp.config.heads == ("fer7", "fer_intensity")
    assert imp.provenance["fold"] == 2 and imp.provenance["official_variant"] == "intensity"
    assert torch.equal(imp.model.heads["fer_intensity"][0].weight, sd["cls_head_in.0.weight"])
    imp2 = import_official(_save_raw(tmp_path, "m.pth", {"model": sd}), variant="intensity")
    assert torch.equal(imp2.model.fusion.pos_query, sd["transformer.pos_embedding_t"])


def test_import_task_fer_and_three_class_head(tmp_path):
    sd = random_official_state("discrete", seed=4)
    assert import_official(_save_raw(tmp_path, "a.pth", sd), variant="discrete", task="fer").config.heads == ("fer7",)
    sd3 = dict(sd, **{"cls_head.0.weight": torch.randn(3, 32), "cls_head.0.bias": torch.randn(3)})
    imp = import_official(_save_raw(tmp_path, "b.pth", sd3), variant="discrete")
    assert imp.config.heads == ("er3",) and imp.label_maps["er3"] == ["positive", "negative", "neutral"]


@pytest.mark.parametrize("mutate, match", [
    (lambda sd: sd.pop("transformer.pos_embedding_s"), r"missing key 'transformer\.pos_embedding_s'"),
    (lambda sd: sd.__setitem__("extra.weight", torch.zeros(2)), r"unexpected key 'extra\.weight'"),
    (lambda sd: sd.__setitem__("proj_v1.weight", torch.zeros(128, 511)),
     r"key 'proj_v1\.weight' has shape \(128, 511\), expected \(128, 512\)"),
    (lambda sd: sd.__setitem__("subnet.e_lstm.weight_ih_l0", torch.zeros(512, 38)),
     r"'subnet\.e_lstm\.weight_ih_l0' has shape"),
    (lambda sd: sd.pop("subnet.f_extractor.fc.weight"), r"missing key 'subnet\.f_extractor\.fc\.weight'"),
    (lambda sd: sd.__setitem__("cls_head.0.bias", torch.full((7,), float("nan"))), r"'cls_head\.0\.bias' holds NaN"),
])
def test_import_mismatch_names_the_key(tmp_path, mutate, match):
    sd = random_official_state("discrete", seed=5)
    mutate(sd)
    with pytest.raises(CheckpointError, match=match) as info:
        import_official(_save_raw(tmp_path, "bad.pth", sd), variant="discrete")
    assert "bad.pth" in str(info.value)


def test_import_wrong_variant_gives_a_hint(tmp_path):
    src = _save_raw(tmp_path, "int.pth", random_official_state("intensity", seed=6))
    with pytest.raises(CheckpointError, match=r"looks like the 'intensity' variant"):
        import_official(src, variant="valence")
    with pytest.raises(ConfigError, match="unknown variant"):
        import_official(src, variant="happy")


def test_import_refuses_non_state_dicts(tmp_path):
    with pytest.raises(CheckpointError, match="not an official EMERT checkpoint"):
        import_official(_save_raw(tmp_path, "x.pth", {"epoch": 3, "lr": 0.1}), variant="discrete")
    with pytest.raises(CheckpointError, match="pickled Python objects"):
        import_official(_save_raw(tmp_path, "m.pth", EMERT(EMERTConfig(heads=("er7",)))), variant="discrete")


# ---------------------------------------------------------------------------- save / load
@pytest.fixture(scope="module")
def small_model():
    torch.manual_seed(7)
    return EMERT(EMERTConfig(heads=("er7", "er_va", "fer7", "fer_intensity"))).eval()


NORM = {"eye": {"mean": np.full(39, 0.1, dtype=np.float32), "std": [2.0] * 39, "n": np.int64(1234)},
        "fixation": {"mean": [0.5, 0.5], "std": [0.25, 0.3]}, "version": 1}


def _save(tmp_path, model, name="m.pt", **kw):
    path = tmp_path / name
    cid = save_checkpoint(path, model, norm_stats=NORM,
                          provenance={"data": "phantom seed 1", "folds": [1, 2, 3, 4],
                                      "metrics": {"uar": np.float64(0.4), "n": np.int64(12)}},
                          **kw)
    return path, cid


def test_save_load_roundtrip_identical_outputs(tmp_path, small_model):
    path, cid = _save(tmp_path, small_model)
    assert cid == hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    lm = load_checkpoint(path, device="cpu")
    assert isinstance(lm, LoadedModel) and lm.id == cid and lm.device.type == "cpu"
    assert not lm.model.training and lm.config == small_model.config
    assert lm.norm_stats["eye"]["n"] == 1234 and lm.norm_stats["fixation"]["std"] == [0.25, 0.3]
    assert lm.label_maps["er7"][0] == "happiness" and lm.label_maps["er_va"] == ["valence", "arousal"]
    prov = lm.provenance
    assert prov["folds"] == [1, 2, 3, 4] and prov["metrics"] == {"uar": 0.4, "n": 12}
    assert type(prov["metrics"]["n"]) is int  # numpy scalars stored as plain numbers
    assert prov["created_utc"].endswith("Z") and "git_commit" in prov and "software_version" in prov
    x = _inputs(2, 32, seed=2)
    with torch.no_grad():
        a, b = small_model(*x), lm.model(*x)
    for k in ("er7", "er_va", "fer7", "fer_intensity", "disc_invariant"):
        assert torch.equal(a[k], b[k]), k
    # the file is plain data: torch's safe loader reads it directly
    raw = torch.load(path, weights_only=True, map_location="cpu")
    assert raw["format_version"] == 1 and set(raw["config"]) == set(EMERTConfig().to_dict())


def test_str_subclasses_in_metadata_are_stored_plain(tmp_path, small_model):
    """torch.__version__ is a str subclass; stored as such, weights_only loading would refuse it."""
    path = tmp_path / "v.pt"
    save_checkpoint(path, small_model, norm_stats=identity_norm_stats(small_model.config),
                    provenance={"torch": torch.__version__, "epochs": np.int64(3)})
    prov = load_checkpoint(path, device="cpu").provenance
    assert prov["torch"] == str(torch.__version__) and type(prov["torch"]) is str
    assert type(prov["epochs"]) is int


def test_predict_gives_probabilities_and_checks_inputs(tmp_path, small_model):
    path, _ = _save(tmp_path, small_model)
    lm = load_checkpoint(path, device="cpu")
    face, eye, fix = _inputs(2, 32, seed=3)
    eye_n, fix_n = lm.normalize(eye.numpy(), fix.numpy())
    assert abs(float(eye_n[0, 0, 0]) - (float(eye[0, 0, 0]) - 0.1) / 2.0) < 1e-6
    res = lm.predict(face.numpy(), eye_n, fix_n, modality_mask=[[True, True, True], [False, True, True]])
    assert res["er7"].shape == (2, 7) and abs(res["er7"].sum(axis=1) - 1).max() < 1e-5
    assert res["fer_intensity"].shape == (2,) and res["modalities_used"].tolist()[1] == [False, True, True]
    bad = eye_n.copy()
    bad[0, 3, 4] = float("nan")
    with pytest.raises(ValueError, match="eye input holds NaN"):
        lm.predict(face.numpy(), bad, fix_n)


def test_save_refuses_overwrite_and_bad_metadata(tmp_path, small_model):
    path, _ = _save(tmp_path, small_model)
    with pytest.raises(CheckpointError, match="already exists"):
        _save(tmp_path, small_model)
    _save(tmp_path, small_model, overwrite=True)
    with pytest.raises(ValueError, match=r"norm_stats.eye.std"):
        save_checkpoint(tmp_path / "n.pt", small_model, provenance={},
                        norm_stats={"eye": {"mean": [0.0] * 39, "std": [0.0] * 39}, "fixation": NORM["fixation"]})
    with pytest.raises(ValueError, match=r"norm_stats\['fixation'\]"):
        save_checkpoint(tmp_path / "n.pt", small_model, provenance={}, norm_stats={"eye": NORM["eye"]})
    with pytest.raises(ValueError, match="not plain data"):
        save_checkpoint(tmp_path / "n.pt", small_model, norm_stats=NORM, provenance={"when": object()})
    with pytest.raises(ValueError, match=r"label_maps\['er7'\]"):
        save_checkpoint(tmp_path / "n.pt", small_model, norm_stats=NORM, provenance={},
                        label_maps={"er7": ["a", "b"], "er_va": ["valence", "arousal"]})
    assert not (tmp_path / "n.pt").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]  # no temp files left behind


def _corrupt(tmp_path, good: Path, how: str) -> Path:
    data = bytearray(good.read_bytes())
    p = tmp_path / f"{how}.pt"
    if how == "truncated":
        p.write_bytes(bytes(data[: len(data) // 2]))
    elif how == "bitflip":
        # flip one bit inside the stored bytes of a weight (zip entries are uncompressed and
        # torch's reader does not check their CRC; the stored weights digest must catch it)
        raw = torch.load(good, weights_only=True)
        blob = raw["state_dict"]["fusion.pos_query"].numpy().tobytes()
        at = bytes(data).find(blob)
        assert at > 0
        data[at + len(blob) // 2] ^= 0x10
        p.write_bytes(bytes(data))
    elif how == "empty":
        p.write_bytes(b"")
    return p


@pytest.fixture(scope="module")
def good_ckpt(tmp_path_factory, small_model):
    path, _ = _save(tmp_path_factory.mktemp("good"), small_model, name="good.pt")
    return path


@pytest.mark.parametrize("kind, match", [
    ("text", "not a readable PyTorch checkpoint"),
    ("zip", "not a readable PyTorch checkpoint"),
    ("empty", "empty file"),
    ("missing", "no such file"),
    ("truncated", "not a readable PyTorch checkpoint"),
    ("bitflip", "weights are corrupt"),
    ("pickled", "pickled Python objects"),
    ("state_dict", "bare PyTorch state dict"),
    ("official", "import-official"),
    ("foreign_dict", "not an emer_live EMERT checkpoint"),
    ("newer", "newer emer_live"),
    ("wrong_shape", "weights do not fit the stored config"),
])
def test_foreign_and_corrupt_files_are_refused(tmp_path, good_ckpt, kind, match):
    good = good_ckpt
    p = tmp_path / f"{kind}.pt"
    if kind == "text":
        p.write_text("these are not the weights you are looking for\n")
    elif kind == "zip":
        with zipfile.ZipFile(p, "w") as z:
            z.writestr("README.txt", "a zip, not ours")
    elif kind in ("truncated", "bitflip", "empty"):
        p = _corrupt(tmp_path, good, kind)
    elif kind == "pickled":
        # a global callable: loading it unrestricted would hand the file a function to call
        torch.save({"format": "emer_live.emert_checkpoint", "payload": os.getcwd}, p)
    elif kind == "state_dict":
        torch.save({"a.weight": torch.randn(3, 3), "b.bias": torch.randn(3)}, p)
    elif kind == "official":
        torch.save(random_official_state("discrete", seed=1), p)
    elif kind == "foreign_dict":
        torch.save({"hello": "world", "n": 3}, p)
    elif kind == "newer":
        raw = torch.load(good, weights_only=True)
        raw["format_version"] = 99
        torch.save(raw, p)
    elif kind == "wrong_shape":
        raw = torch.load(good, weights_only=True)
        raw["config"]["projection_widths"] = [64]  # weights were made for (64, 32)
        torch.save(raw, p)
    with pytest.raises(CheckpointError, match=match) as info:
        load_checkpoint(p, device="cpu")
    assert p.name in str(info.value)


def test_select_device():
    assert select_device("cpu", num_threads=1).type == "cpu"
    assert torch.get_num_threads() == 1
    assert select_device("auto").type in ("cpu", "cuda", "mps")
    with pytest.raises(ConfigError, match="unknown device"):
        select_device("tpu")
    if not torch.cuda.is_available():
        from emer_live.errors import DeviceUnavailable
        with pytest.raises(DeviceUnavailable, match="CUDA is not available"):
            select_device("cuda")
    torch.set_num_threads(1)


def test_identity_norm_stats_shape():
    ns = identity_norm_stats(EMERTConfig())
    assert len(ns["eye"]["mean"]) == 39 and ns["fixation"]["std"] == [1.0, 1.0]


# ---------------------------------------------------------------------------- CLI
def test_cli_import_official_and_model_info(tmp_path, capsys):
    src = _save_raw(tmp_path, "valence_MATmer_set3.pth", random_official_state("valence", seed=8))
    out = tmp_path / "models" / "valence_set3.pt"
    rc = cli.main(["import-official", str(src), "--variant", "valence", "--out", str(out), "--fold", "3"])
    assert rc == 0 and out.exists()
    printed = capsys.readouterr().out
    assert "er_valence" in printed
    lm = load_checkpoint(out, device="cpu")
    assert lm.config.heads == ("er_valence",) and lm.provenance["source_file"] == src.name
    assert lm.id in printed
    # never overwrites
    before = out.read_bytes()
    rc = cli.main(["import-official", str(src), "--variant", "valence", "--out", str(out)])
    assert rc != 0 and out.read_bytes() == before
    assert "already exists" in capsys.readouterr().err
    # a mismatch is one line on stderr, non-zero exit
    rc = cli.main(["import-official", str(src), "--variant", "discrete", "--out", str(tmp_path / "x.pt")])
    err = capsys.readouterr().err
    assert rc != 0 and "missing key" in err and len(err.strip().splitlines()) == 1
    assert cli.main(["model-info", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["id"] == lm.id and info["heads"] == ["er_valence"]
