"""EMERT model: official layouts, forward shapes, heads, missing-modality masks, loss, GRL."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

from emer_live.errors import ConfigError  # noqa: E402
from emer_live.model import EMERT, EMERTConfig, emert_loss, official_config  # noqa: E402
from emer_live.model.layers import grad_reverse  # noqa: E402
from emer_live.model.official import official_state_dict  # noqa: E402

pytestmark = pytest.mark.torch

LAYOUT_DIR = Path(__file__).resolve().parents[1] / "emer_live" / "model" / "official_layouts"
LAYOUT_FILE = {"discrete": "discrete", "valence": "regression", "arousal": "regression", "intensity": "intensity"}
BUFFER_SUFFIXES = ("running_mean", "running_var", "num_batches_tracked")


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)


def load_layout(variant: str) -> dict:
    """Official key -> shape, with the 'subnet.f_extractor.*' shorthand expanded from the discrete file."""
    lay = json.loads((LAYOUT_DIR / f"official_emert_layout_{LAYOUT_FILE[variant]}.json").read_text())
    if "subnet.f_extractor.*" in lay:
        del lay["subnet.f_extractor.*"]
        disc = json.loads((LAYOUT_DIR / "official_emert_layout_discrete.json").read_text())
        lay = {**{k: v for k, v in disc.items() if k.startswith("subnet.f_extractor.")}, **lay}
    return lay


def inputs(b=1, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(b, 8, 3, size, size, generator=g), torch.randn(b, 32, 39, generator=g),
            torch.randn(b, 32, 2, generator=g))


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return EMERT().eval()


# ---------------------------------------------------------------------------- official layouts
@pytest.mark.parametrize("variant", ["discrete", "valence", "arousal", "intensity"])
def test_state_dict_matches_official_layout_exactly(variant):
    layout = load_layout(variant)
    m = EMERT(official_config(variant))
    sd = official_state_dict(m)
    assert list(sd) == list(layout)  # same names, same order
    for k, shape in layout.items():
        assert list(sd[k].shape) == shape, k
    assert sum(t.numel() for t in sd.values()) == sum(math.prod(s) for s in layout.values())
    n_params = sum(math.prod(s) for k, s in layout.items() if not k.endswith(BUFFER_SUFFIXES))
    assert m.num_parameters() == n_params
    if variant == "discrete":
        # 12,634,829 entries minus BatchNorm buffers: 2 x 4,800 running stats + 20 counters
        assert n_params == 12_625_209


def test_default_model_has_no_unused_parameters():
    m = EMERT()
    assert not any(k.startswith(("unused_classifier", "face_encoder.fc")) for k in m.state_dict())
    ext = EMERT(EMERTConfig(official_extras=True))
    assert ext.num_parameters() - m.num_parameters() == 512 * 1000 + 1000 + 768 * 7 + 7


# ---------------------------------------------------------------------------- forward
def test_forward_batch1_shapes_no_nan(model):
    face, eye, fix = inputs(1, size=112)
    with torch.no_grad():
        out = model(face, eye, fix)
    expected = {"er7": (1, 7), "er3": (1, 3), "er_va": (1, 2), "fer7": (1, 7), "fer3": (1, 3),
                "fer_va": (1, 2), "fer_intensity": (1,), "features": (1, 32),
                "disc_specific": (1, 3, 3), "disc_invariant": (1, 3, 3), "modalities_used": (1, 3)}
    assert {k: tuple(v.shape) for k, v in out.items()} == expected
    for k, v in out.items():
        if v.is_floating_point():
            assert torch.isfinite(v).all(), k
    assert out["modalities_used"].all()


def test_only_configured_heads_are_returned():
    m = EMERT(EMERTConfig(heads=("fer7", "er_valence"), projection_widths=(64,), head_hidden=(16,))).eval()
    with torch.no_grad():
        out = m(*inputs(2))
    assert {"fer7", "er_valence"} <= set(out)
    assert not {"er7", "er3", "er_va", "fer3", "fer_va", "fer_intensity"} & set(out)
    assert out["fer7"].shape == (2, 7) and out["er_valence"].shape == (2,)
    assert out["features"].shape == (2, 64)


def test_forward_features_and_head_compose(model):
    x = inputs(2)
    with torch.no_grad():
        feats = model.forward_features(*x)
        heads = model.forward_head(feats["pooled"])
        out = model(*x)
    assert feats["tokens"].shape == (2, 72, 32) and feats["token_mask"].all()
    for k, v in heads.items():
        torch.testing.assert_close(v, out[k])


def test_imagenet_face_normalization_inside_the_model():
    torch.manual_seed(2)
    norm = EMERT(EMERTConfig(heads=("er7",))).eval()
    assert norm.config.face_normalization == "imagenet"
    raw = EMERT(EMERTConfig(heads=("er7",), face_normalization="none")).eval()
    raw.load_state_dict(norm.state_dict())
    face, eye, fix = inputs(1)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(norm(face, eye, fix)["er7"], raw((face - mean) / std, eye, fix)["er7"])


def test_bgr_config_flips_channels():
    torch.manual_seed(1)
    rgb = EMERT(EMERTConfig(heads=("er7",), face_normalization="none")).eval()
    bgr = EMERT(EMERTConfig(heads=("er7",), face_channel_order="bgr", face_normalization="none")).eval()
    bgr.load_state_dict(rgb.state_dict())
    face, eye, fix = inputs(1)
    with torch.no_grad():
        torch.testing.assert_close(bgr(face, eye, fix)["er7"], rgb(face.flip(2), eye, fix)["er7"])
        assert not torch.allclose(bgr(face, eye, fix)["er7"], rgb(face, eye, fix)["er7"])


@pytest.mark.parametrize("bad, match", [
    (lambda f, e, x: (f[:, :4], e, x), "face must be"),
    (lambda f, e, x: (f, e[:, :, :38], x), "eye must be"),
    (lambda f, e, x: (f, e, x[:1]), "batch sizes differ"),
    (lambda f, e, x: (f, e.long(), x), "floating-point"),
    (lambda f, e, x: (f[0], e, x), "5 dimensions"),
])
def test_bad_inputs_raise_clear_errors(model, bad, match):
    with pytest.raises(ValueError, match=match):
        model(*bad(*inputs(2)))


# ---------------------------------------------------------------------------- config
def test_config_roundtrip_and_validation():
    cfg = official_config("valence", task="fer")
    assert cfg.heads == ("fer_valence",) and cfg.head_hidden == (32, 16, 8) and cfg.model_dim == 64
    d = cfg.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert EMERTConfig.from_dict(d) == cfg
    with pytest.raises(ConfigError, match="unknown field"):
        EMERTConfig.from_dict({**d, "bogus": 1})
    with pytest.raises(ConfigError, match="unknown head 'er9'"):
        EMERTConfig(heads=("er9",))
    with pytest.raises(ConfigError, match="twice"):
        EMERTConfig(heads=("er7", "er7"))
    with pytest.raises(ConfigError, match="er_va already"):
        EMERTConfig(heads=("er_va", "er_valence"))
    with pytest.raises(ConfigError, match="feature_dropout"):
        EMERTConfig(feature_dropout=1.5)
    with pytest.raises(ConfigError, match="face_channel_order"):
        EMERTConfig(face_channel_order="rbg")
    with pytest.raises(ConfigError, match="projection_widths"):
        EMERTConfig(projection_widths=(64, 0))
    with pytest.raises(ConfigError, match="variant"):
        official_config("binary")
    with pytest.raises(Exception):
        cfg.heads = ("er7",)  # frozen


# ---------------------------------------------------------------------------- missing modalities
GARBAGE = [float("nan"), float("inf"), 1e30]


@pytest.mark.parametrize("missing", [0, 1, 2])
def test_masked_modality_input_is_never_read(model, missing):
    face, eye, fix = inputs(3, seed=3)
    mask = torch.ones(3, 3, dtype=torch.bool)
    mask[1, missing] = False
    outs = []
    for value in GARBAGE:
        x = [face.clone(), eye.clone(), fix.clone()]
        x[missing][1] = value
        with torch.no_grad():
            outs.append(model(*x, modality_mask=mask))
    for o in outs[1:]:
        for k in ("er7", "er_va", "fer_intensity", "features"):
            assert torch.equal(o[k], outs[0][k]), k
    for k in ("er7", "er_va", "fer_intensity"):
        assert torch.isfinite(outs[0][k]).all()
    assert outs[0]["modalities_used"].tolist() == mask.tolist()
    # the mask matters: scoring the same clean sample with the modality present differs
    with torch.no_grad():
        full = model(face, eye, fix)
    assert not torch.allclose(full["er7"][1], outs[0]["er7"][1])
    torch.testing.assert_close(full["er7"][0], outs[0]["er7"][0])  # other samples unaffected


@pytest.mark.parametrize("only", [0, 1, 2])
def test_single_modality_gives_finite_outputs(model, only):
    face, eye, fix = inputs(2, seed=4)
    mask = torch.zeros(2, 3, dtype=torch.bool)
    mask[:, only] = True
    x = [torch.full_like(t, float("nan")) for t in (face, eye, fix)]
    x[only] = (face, eye, fix)[only]
    with torch.no_grad():
        out = model(*x, modality_mask=mask)
    for k in ("er7", "er3", "er_va", "fer7", "fer3", "fer_va", "fer_intensity", "features"):
        assert torch.isfinite(out[k]).all(), k


def test_masked_batch_equals_samples_scored_alone(model):
    face, eye, fix = inputs(3, seed=5)
    mask = torch.tensor([[True, True, True], [False, True, True], [True, False, False]])
    with torch.no_grad():
        batch = model(face, eye, fix, modality_mask=mask)
        for i in range(3):
            alone = model(face[i:i + 1], eye[i:i + 1], fix[i:i + 1], modality_mask=mask[i:i + 1])
            torch.testing.assert_close(alone["er7"][0], batch["er7"][i], rtol=1e-4, atol=1e-5)


def test_sample_without_any_modality_is_refused(model):
    mask = torch.tensor([[True, True, True], [False, False, False]])
    with pytest.raises(ValueError, match=r"sample\(s\) \[1\] have no modality"):
        model(*inputs(2), modality_mask=mask)
    with pytest.raises(ValueError, match="modality_mask must be a bool tensor"):
        model(*inputs(2), modality_mask=torch.ones(2, 3))


def test_train_mode_with_missing_faces_runs_and_backprops():
    torch.manual_seed(2)
    m = EMERT(EMERTConfig(heads=("er7", "fer7")))
    m.train()
    face, eye, fix = inputs(3, seed=6)
    face[0] = float("nan")
    mask = torch.tensor([[False, True, True], [True, True, True], [True, True, False]])
    out = m(face, eye, fix, modality_mask=mask)
    losses = emert_loss(out, {"er7": torch.tensor([0, 1, 2]), "fer7": torch.tensor([3, -1, 4])})
    losses["total"].backward()
    assert torch.isfinite(losses["total"])
    assert all(torch.isfinite(p.grad).all() for p in m.parameters() if p.grad is not None)
    assert m.face_encoder.conv1.weight.grad.abs().sum() > 0


# ---------------------------------------------------------------------------- loss
def test_loss_parts_and_missing_labels():
    torch.manual_seed(3)
    m = EMERT(EMERTConfig(heads=("er7", "er_va", "fer7", "fer_intensity"))).eval()
    face, eye, fix = inputs(2, seed=7)
    out = m(face, eye, fix)
    targets = {
        "er7": torch.tensor([2, -1]),
        "er_va": torch.tensor([[0.5, float("nan")], [-0.2, 0.1]]),
        "fer7": torch.tensor([-1, -1]),
        "fer_intensity": torch.tensor([float("nan"), 1.5]),
    }
    parts = emert_loss(out, targets, alpha=0.3, beta=0.1)
    assert set(parts) == {"total", "adv", "adv_specific", "adv_invariant", "er", "fer",
                          "er7", "er_va", "fer7", "fer_intensity"}
    torch.testing.assert_close(parts["er7"], F.cross_entropy(out["er7"][:1], targets["er7"][:1]))
    va_pred = torch.stack([out["er_va"][0, 0], out["er_va"][1, 0], out["er_va"][1, 1]])
    torch.testing.assert_close(parts["er_va"], F.huber_loss(va_pred, torch.tensor([0.5, -0.2, 0.1])))
    assert parts["fer7"].item() == 0.0  # no label in the batch
    torch.testing.assert_close(parts["fer_intensity"], F.huber_loss(out["fer_intensity"][1:], torch.tensor([1.5])))
    torch.testing.assert_close(parts["er"], parts["er7"] + parts["er_va"])
    torch.testing.assert_close(parts["total"], 0.3 * parts["adv"] + 0.1 * (parts["er"] + parts["fer"]))
    adv_s = sum(F.cross_entropy(out["disc_specific"][:, j], torch.full((2,), j)) for j in range(3))
    torch.testing.assert_close(parts["adv_specific"], adv_s)
    parts["total"].backward()


def test_loss_rejects_bad_targets(model):
    with torch.no_grad():
        out = model(*inputs(2))
    with pytest.raises(ValueError, match="class indices outside"):
        emert_loss(out, {"er7": torch.tensor([0, 7])})
    with pytest.raises(ValueError, match="must be a float tensor of shape"):
        emert_loss(out, {"er_va": torch.tensor([0.1, 0.2])})
    m1 = EMERT(EMERTConfig(heads=("er7",))).eval()
    with torch.no_grad():
        out1 = m1(*inputs(2))
    with pytest.raises(ValueError, match="no such head"):
        emert_loss(out1, {"fer7": torch.tensor([0, 1])})


def test_loss_ignores_discriminator_of_missing_modalities():
    torch.manual_seed(4)
    m = EMERT(EMERTConfig(heads=("er7",))).eval()
    face, eye, fix = inputs(2, seed=8)
    mask = torch.tensor([[True, True, True], [True, False, True]])
    with torch.no_grad():
        out = m(face, eye, fix, modality_mask=mask)
    parts = emert_loss(out, {})
    d = out["disc_specific"]
    expected = (F.cross_entropy(d[:, 0], torch.tensor([0, 0])) + F.cross_entropy(d[:1, 1], torch.tensor([1]))
                + F.cross_entropy(d[:, 2], torch.tensor([2, 2])))
    torch.testing.assert_close(parts["adv_specific"], expected)


# ---------------------------------------------------------------------------- gradient reversal
def test_grad_reverse_flips_and_scales_gradient():
    x = torch.randn(4, 5, requires_grad=True)
    w = torch.randn(4, 5)
    y = grad_reverse(x, 0.5)
    assert torch.equal(y, x)
    (y * w).sum().backward()
    torch.testing.assert_close(x.grad, -0.5 * w)


def test_gradient_reversal_on_invariant_path_of_the_model():
    """d L_adv_invariant / d(invariant MLP) is the negative of the plain (unreversed) gradient,
    while the discriminator itself gets the plain gradient (it learns to tell the modalities)."""
    torch.manual_seed(5)
    m = EMERT(EMERTConfig(heads=("er7",), feature_dropout=0.0, embedding_dropout=0.0,
                          transformer_dropout=0.0)).eval()
    x = inputs(2, seed=9)
    params = [m.invariant[0].weight, m.discriminator.weight]

    out = m(*x)
    g_model = torch.autograd.grad(emert_loss(out, {})["adv_invariant"], params)

    feats = m.forward_features(*x)  # invariant tokens before the GRL
    inv = feats["invariant"]
    logits = torch.stack([m.discriminator(inv[:, a:b].mean(1)) for a, b in ((0, 8), (8, 40), (40, 72))], dim=1)
    plain = sum(F.cross_entropy(logits[:, j], torch.full((2,), j)) for j in range(3))
    g_plain = torch.autograd.grad(plain, params)

    assert g_plain[0].abs().sum() > 0
    torch.testing.assert_close(g_model[0], -g_plain[0])  # encoder side: reversed
    torch.testing.assert_close(g_model[1], g_plain[1])   # discriminator: not reversed
