"""The port against the released code itself, when checkouts of xiaoyuan1996/AMFMN and Cadene/skip-thoughts.torch
are at hand: ``AMFMN_RELEASED_SRC`` names the AMFMN repository's ``AMFMN/`` folder (with ``layers/``,
``vocab/``), ``SKIPTHOUGHTS_SRC`` the folder that holds the ``skipthoughts`` package. Skipped otherwise.

The released model is built exactly as its ``train.py`` builds it (random weights: the ImageNet ResNet-18 is
not downloaded; skip-thoughts files are generated at their real shapes), its state dict goes through a
checkpoint file into our model, and both score the same images and captions.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dvtr_data.baselines.amfmn import AMFMN, Vocabulary, load_released_state_dict, load_skipthoughts

SRC = os.environ.get("AMFMN_RELEASED_SRC")
ST = os.environ.get("SKIPTHOUGHTS_SRC")
pytestmark = [
    pytest.mark.skipif(not (SRC and ST), reason="AMFMN_RELEASED_SRC and SKIPTHOUGHTS_SRC not set"),
    pytest.mark.slow,
]


def fake_skipthoughts(folder: Path, words: list[str]) -> None:
    rng = np.random.default_rng(0)
    dico = ["UNK", *words[: len(words) // 2]]  # half of the vocabulary is missing: those words get UNK's row
    (folder / "dictionary.txt").write_text("\n".join(dico) + "\n")
    np.save(folder / "utable.npy", (rng.normal(size=(len(dico), 620)) * 0.1).astype(np.float32))
    shapes = {"encoder_W": (620, 4800), "encoder_U": (2400, 4800), "encoder_Wx": (620, 2400),
              "encoder_Ux": (2400, 2400), "encoder_b": (4800,), "encoder_bx": (2400,)}
    np.savez(folder / "uni_skip.npz", **{k: (rng.normal(size=s) * 0.03).astype(np.float32) for k, s in shapes.items()})


@pytest.mark.parametrize("att_type", ["soft_att", "fusion_att", "similarity_att"])
def test_released_model_state_dict_loads_and_scores_the_same(att_type: str, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.models.resnet as tvr

    original = tvr.resnet18
    monkeypatch.setattr(tvr, "resnet18", lambda pretrained=False, **kw: original(weights=None))
    monkeypatch.syspath_prepend(str(ST))
    monkeypatch.syspath_prepend(str(SRC))
    for name in [m for m in sys.modules if m == "layers" or m.startswith("layers.")]:
        monkeypatch.delitem(sys.modules, name)
    from layers import AMFMN as released  # the released code, unmodified

    word2idx = json.loads((Path(SRC) / "vocab" / "rsitmd_splits_vocab.json").read_text())["word2idx"]
    vocab = Vocabulary(word2idx)
    fake_skipthoughts(tmp_path, vocab.words())
    opt = {"embed": {"embed_dim": 512}, "multiscale": {"multiscale_input_channel": 3, "multiscale_output_channel": 1},
           "cross_attention": {"att_type": att_type},
           "seq2vec": {"arch": "skipthoughts", "dir_st": str(tmp_path), "type": "BayesianUniSkip", "dropout": 0.25,
                       "fixed_emb": False}}
    torch.manual_seed(1)
    ref = released.factory(opt, vocab.words(), cuda=False, data_parallel=False).eval()
    torch.save({"epoch": 1, "model": ref.state_dict()}, tmp_path / "AMFMN_best.pth.tar")
    ours = AMFMN(att_type, vocab.size).eval()
    load_released_state_dict(ours, torch.load(tmp_path / "AMFMN_best.pth.tar", weights_only=True))
    torch.manual_seed(0)
    img = torch.randn(3, 3, 256, 256)
    ids = torch.tensor([[5, 17, 300, 2, 9, 0, 0], [44, 12, vocab.size - 1, 7, 1, 88, 3], [100, 0, 0, 0, 0, 0, 0]])
    with torch.no_grad():
        expected = ref(img, ids, [int((r != 0).sum()) for r in ids])
        got = ours(img, ids)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    # our skip-thoughts loader maps the same files to the same text weights as the skipthoughts package
    fresh = AMFMN(att_type, vocab.size)
    load_skipthoughts(fresh, tmp_path, vocab)
    ref_state = ref.state_dict()
    for key, value in fresh.state_dict().items():
        if key.startswith("text_feature.seq2vec."):
            torch.testing.assert_close(value, ref_state[key], rtol=0, atol=0)
