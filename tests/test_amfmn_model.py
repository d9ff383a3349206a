"""The AMFMN port: the released code's parameter names and shapes, released-style checkpoints load, the
building blocks against hand-computed values, and weight files that are named but missing fail at once.

The expected names and shapes are written from reading the released ``layers/AMFMN_Modules.py`` and the
skipthoughts package's ``BayesianUniSkip`` (Cadene/skip-thoughts.torch); the ResNet-18 part is torchvision's.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.models import resnet18

from dvtr_data.baselines.amfmn import AMFMN, AMFMNOptions, AMFMNSizes, Vocabulary, load_released_state_dict
from dvtr_data.baselines.amfmn.model import (
    CrossAttention,
    VGMFFusion,
    cosine_similarity,
    find_resnet18_weights,
    load_resnet18,
    load_skipthoughts,
)
from dvtr_data.errors import InputError, ModelError


def released_shapes(att_type: str, vocab_rows: int) -> dict[str, tuple[int, ...]]:
    """The released AMFMN's state-dict shapes (RSITMD_AMFMN.yaml: embed 512, multiscale 3 -> 1, 256 px input)."""
    shapes = {f"extract_feature.resnet.{k}": tuple(v.shape) for k, v in resnet18(weights=None).state_dict().items()}
    shapes |= {
        "extract_feature.linear.weight": (512, 512), "extract_feature.linear.bias": (512,),
        "mvsa.LF_conv.weight": (3, 192, 3, 3), "mvsa.LF_conv.bias": (3,),
        "mvsa.HF_conv.weight": (3, 768, 1, 1), "mvsa.HF_conv.bias": (3,),
        "mvsa.conv1x1_1.weight": (1, 6, 1, 1), "mvsa.conv1x1_1.bias": (1,),
        "mvsa.conv1x1_2.weight": (1, 6, 1, 1), "mvsa.conv1x1_2.bias": (1,),
        "mvsa.solo_attention.weight": (512, 256), "mvsa.solo_attention.bias": (512,),
        "text_feature.seq2vec.embedding.weight": (vocab_rows, 620),
        "text_feature.to_out.weight": (512, 2400), "text_feature.to_out.bias": (512,),
        "vgmf_gate.gate.weight": (512, 1024), "vgmf_gate.gate.bias": (512,),
    }
    cell = "text_feature.seq2vec.rnn.gru_cell"
    for gate in ("r", "i", "n"):
        shapes[f"{cell}.weight_i{gate}.weight"] = (2400, 620)
        shapes[f"{cell}.weight_i{gate}.bias"] = (2400,)
        shapes[f"{cell}.weight_h{gate}.weight"] = (2400, 2400)
    attention = {
        "soft_att": {"cross_attention.0.weight": (512, 512), "cross_attention.0.bias": (512,)},
        "fusion_att": {
            "cross_attention_fc1.0.weight": (512, 1024), "cross_attention_fc1.0.bias": (512,),
            "cross_attention_fc2.0.weight": (512, 1024), "cross_attention_fc2.0.bias": (512,),
        },
        "similarity_att": {
            "fc_visual.0.weight": (512, 512), "fc_visual.0.bias": (512,),
            "fc_text.0.weight": (512, 512), "fc_text.0.bias": (512,),
        },
    }[att_type]
    shapes |= {f"cross_attention_s.{k}": v for k, v in attention.items()}
    return shapes


@pytest.mark.parametrize("att_type", ["soft_att", "fusion_att", "similarity_att"])
def test_parameter_names_and_shapes_are_the_released_ones(att_type: str) -> None:
    with torch.device("meta"):
        model = AMFMN(att_type, 1350)  # RSITMD's vocabulary: 1349 words (<unk> included) + padding row
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert ours == released_shapes(att_type, 1350)


def small(att_type: str = "soft_att", **options) -> AMFMN:
    torch.manual_seed(0)
    sizes = AMFMNSizes(embed_dim=8, word_dim=6, text_hidden=5)
    return AMFMN(att_type, 12, options=AMFMNOptions(**options), sizes=sizes, image_size=64).eval()


def test_a_released_style_checkpoint_loads_and_gives_its_scores() -> None:
    """A DataParallel checkpoint (``module.`` keys, in a ``{"model": ...}`` dict) of another model loads whole."""
    src, dst = small("similarity_att"), small("similarity_att")
    torch.manual_seed(1)
    for p in src.parameters():
        p.data.normal_()
    checkpoint = {"epoch": 3, "model": {f"module.{k}": v for k, v in src.state_dict().items()}}
    load_released_state_dict(dst, checkpoint)
    img, ids = torch.randn(2, 3, 64, 64), torch.tensor([[1, 2, 3], [4, 5, 0], [11, 0, 0]])
    torch.testing.assert_close(dst(img, ids), src(img, ids), rtol=0, atol=0)
    with pytest.raises(ModelError, match="does not fit"):
        load_released_state_dict(small("soft_att"), checkpoint)


def test_scores_are_cosines_of_the_image_vector_and_each_image_guided_caption() -> None:
    model = small("fusion_att")
    img, ids = torch.randn(3, 3, 64, 64), torch.tensor([[1, 2, 3, 4], [5, 6, 0, 0]])
    with torch.no_grad():
        trace = model.trace(img, ids)
        scores = model(img, ids)
    assert scores.shape == (3, 2)
    for v in range(3):
        for t in range(2):
            a, b = trace.mvsa_feature[v], trace.fused_text[v, t]
            assert float(scores[v, t]) == pytest.approx(float(a @ b / (a.norm() * b.norm())), abs=1e-6)
    # F_v = v_g * mask with the mask a sigmoid
    torch.testing.assert_close(trace.mvsa_feature, trace.solo_feature * trace.salient_mask)
    assert float(trace.salient_mask.min()) > 0 and float(trace.salient_mask.max()) < 1


def test_padding_does_not_change_a_caption_and_eval_has_no_dropout() -> None:
    model = small("soft_att")
    with torch.no_grad():
        short = model.encode_text(torch.tensor([[3, 7]]))
        padded = model.encode_text(torch.tensor([[3, 7, 0, 0, 0]]))
        other = model.encode_text(torch.tensor([[3, 7, 9]]))
    torch.testing.assert_close(short, padded, rtol=0, atol=0)
    assert not torch.allclose(short, other)


def test_gru_cell_one_step_by_hand() -> None:
    """h1 = (1 - z) * n with h0 = 0: r and the hidden maps drop out; n = tanh(W_in x + b_in), z = sigma(...)."""
    model = AMFMN("soft_att", 3, sizes=AMFMNSizes(embed_dim=8, word_dim=1, text_hidden=1), image_size=64).eval()
    seq2vec = model.text_feature.seq2vec
    cell = seq2vec.rnn.gru_cell
    with torch.no_grad():
        seq2vec.embedding.weight[1] = 1.0
        for lin, (w, b) in {cell.weight_in: (1.0, 0.0), cell.weight_ii: (0.0, 0.0), cell.weight_ir: (5.0, 1.0)}.items():
            lin.weight.fill_(w)
            lin.bias.fill_(b)
        h = seq2vec(torch.tensor([[1]]))
    assert float(h) == pytest.approx(0.5 * math.tanh(1.0), abs=1e-6)


def test_attention_gates_by_hand() -> None:
    soft = CrossAttention("soft_att", 2)
    with torch.no_grad():
        soft.cross_attention[0].weight.zero_()
        soft.cross_attention[0].bias.copy_(torch.tensor([0.0, 100.0]))  # gate (0.5, 1)
    out = soft(torch.zeros(1, 2), torch.tensor([[2.0, 3.0], [4.0, -1.0]]))
    torch.testing.assert_close(out, torch.tensor([[[1.0, 3.0], [2.0, -1.0]]]))
    sim = CrossAttention("similarity_att", 2)
    with torch.no_grad():
        for fc in (sim.fc_visual[0], sim.fc_text[0]):
            fc.weight.copy_(torch.eye(2))
            fc.bias.zero_()
    out = sim(torch.tensor([[0.0, 100.0]]), torch.tensor([[3.0, 1.0]]))  # sigma(v * t) * t = (0.5 * 3, 1 * 1)
    torch.testing.assert_close(out, torch.tensor([[[1.5, 1.0]]]))
    gate = VGMFFusion(2)
    with torch.no_grad():
        gate.gate.weight.zero_()
        gate.gate.bias.zero_()  # sigma(0) = 0.5: the mean of the two unit vectors
    torch.testing.assert_close(gate(torch.tensor([[3.0, 4.0]]), torch.tensor([[1.0, 0.0]])), torch.tensor([[0.8, 0.4]]))
    assert float(cosine_similarity(torch.tensor([1.0, 0.0]), torch.tensor([1.0, 1.0]))) == pytest.approx(0.5**0.5)


def test_keyword_branch_falls_back_to_the_sentence_without_keywords() -> None:
    model = small("soft_att", keywords=True)
    img, ids = torch.randn(2, 3, 64, 64), torch.tensor([[1, 2], [3, 4]])
    none = torch.zeros(2, 1, 1, dtype=torch.long)
    some = torch.tensor([[[5, 6]], [[0, 0]]])  # caption 0 has one phrase, caption 1 none
    with torch.no_grad():
        plain = model.scores(model.encode_image(img), model.encode_text(ids))
        without = model(img, ids, none)
        with_kw = model(img, ids, some)
    torch.testing.assert_close(without, plain)
    torch.testing.assert_close(with_kw[:, 1], plain[:, 1])
    assert not torch.allclose(with_kw[:, 0], plain[:, 0])


def test_input_size_must_suit_the_multiscale_maps() -> None:
    with pytest.raises(ModelError, match="divisible by 32"):
        AMFMN("soft_att", 5, image_size=100)
    assert small().mvsa.solo_attention.in_features == 16  # (64 / 16)^2 positions x 1 channel; 256 at 256 px


def test_named_weights_that_are_missing_fail_fast(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(InputError, match="do not exist"):
        find_resnet18_weights(None, str(tmp_path / "resnet18-5c106cde.pth"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(InputError, match="backbone.checkpoint"):
        find_resnet18_weights("imagenet", None)
    assert find_resnet18_weights(None, None) is None
    with pytest.raises(InputError, match="skip-thoughts files missing"):
        load_skipthoughts(small(), tmp_path / "st", Vocabulary({"red": 1, "<unk>": 2}))


def test_resnet18_weights_load_from_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(3)
    ref = resnet18(weights=None)
    hub = tmp_path / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    torch.save(ref.state_dict(), hub / "resnet18-5c106cde.pth")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    path = find_resnet18_weights("imagenet", None)
    assert path == hub / "resnet18-5c106cde.pth"
    model = small()
    load_resnet18(model, path)
    torch.testing.assert_close(model.extract_feature.resnet.conv1.weight, ref.conv1.weight, rtol=0, atol=0)


def test_skipthoughts_files_map_as_the_skipthoughts_package_maps_them(tmp_path: Path) -> None:
    """``encoder_W`` [word, 2H] holds the r and z input maps side by side (transposed), ``encoder_Wx`` the
    candidate's; rows of ``utable`` follow ``dictionary.txt``; words missing from it get the UNK row."""
    d, h = 6, 5
    rng = np.random.default_rng(0)
    p = {
        "encoder_W": rng.normal(size=(d, 2 * h)), "encoder_U": rng.normal(size=(h, 2 * h)),
        "encoder_Wx": rng.normal(size=(d, h)), "encoder_Ux": rng.normal(size=(h, h)),
        "encoder_b": rng.normal(size=2 * h), "encoder_bx": rng.normal(size=h),
    }
    (tmp_path / "dictionary.txt").write_text("UNK\nred\ncar\n")
    table = rng.normal(size=(3, d)).astype(np.float32)
    np.save(tmp_path / "utable.npy", table)
    np.savez(tmp_path / "uni_skip.npz", **{k: v.astype(np.float32) for k, v in p.items()})
    model = small()
    unknown = load_skipthoughts(model, tmp_path, Vocabulary({"car": 1, "boat": 2, "<unk>": 3}))
    assert unknown == 2  # boat and <unk> are not in the dictionary
    emb = model.text_feature.seq2vec.embedding.weight
    torch.testing.assert_close(emb[1], torch.from_numpy(table[2]))  # car
    torch.testing.assert_close(emb[2], torch.from_numpy(table[0]))  # boat -> UNK
    cell = model.text_feature.seq2vec.rnn.gru_cell
    torch.testing.assert_close(cell.weight_ii.weight, torch.from_numpy(p["encoder_W"][:, h:].T).float())
    torch.testing.assert_close(cell.weight_hn.weight, torch.from_numpy(p["encoder_Ux"].T).float())
    torch.testing.assert_close(cell.weight_ir.bias, torch.from_numpy(p["encoder_b"][:h]).float())


def test_a_clip_is_its_keyframe_file_or_else_its_middle_frame(tmp_path: Path) -> None:
    import av
    from PIL import Image

    from dvtr_data.baselines.amfmn.family import clip_image, load_images
    from dvtr_data.baselines.engine.data import ClipRecord

    path = tmp_path / "c.mp4"
    with av.open(str(path), "w") as out:  # 9 frames: grey levels 0, 30, ..., 240; the middle one (index 4) is 120
        stream = out.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        stream.options = {"crf": "0", "preset": "ultrafast"}
        for i in range(9):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 30 * i, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    Image.new("RGB", (40, 20), (200, 10, 10)).save(tmp_path / "k0.png")
    Image.new("RGB", (40, 20), (10, 200, 10)).save(tmp_path / "k1.png")
    with_keyframes = ClipRecord("a", path, 10.0, 9, keyframe_paths=(tmp_path / "k0.png", tmp_path / "k1.png"))
    assert clip_image(with_keyframes).getpixel((5, 5)) == (10, 200, 10)  # the middle of two keyframes: the second
    middle = np.asarray(clip_image(ClipRecord("b", path, 10.0, 9)), dtype=float)
    assert abs(middle.mean() - 120) < 4  # lossless-ish H.264: frame 4 of 0..8
    images = load_images([with_keyframes], 64)
    assert images.shape == (1, 3, 64, 64) and images.dtype == torch.uint8  # resized whole, aspect not kept


def test_family_scoring_in_chunks_is_the_models_forward(monkeypatch: pytest.MonkeyPatch) -> None:
    from dvtr_data.baselines.amfmn import family as fam

    model = small("similarity_att", keywords=True)
    torch.manual_seed(5)
    images = torch.randint(0, 256, (3, 3, 64, 64), dtype=torch.uint8)
    ids = torch.tensor([[1, 2, 3], [4, 0, 0], [5, 6, 0], [7, 8, 9], [10, 0, 0]])
    keywords = torch.tensor([[[2, 3]], [[0, 0]], [[4, 0]]])  # per clip; clip 1 has none
    caption_clip = torch.tensor([0, 0, 1, 2, 2])
    inputs = fam.AMFMNInputs(images, ids, keywords, caption_clip, None)
    monkeypatch.setattr(fam, "PAIR_ELEMENTS", 1)  # one caption per block
    got = fam.AMFMNFamily().similarity(model, inputs, "paper")
    with torch.no_grad():
        expected = model(fam.normalise(images), ids, keywords[caption_clip]).T
    assert got.shape == (5, 3)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)


# ---------------------------------------------------------------------------------------------- per-sample draws
def test_a_samples_seeds_do_not_depend_on_its_batch() -> None:
    """The crop and dropout seeds of caption 9 at one step are the same in any batch (what lets a slice of the
    batch in another process draw as the whole batch does), and change with the step."""
    from dvtr_data.baselines.amfmn.family import sample_seeds

    crop, noise = sample_seeds(5, [3, 9, 14])
    alone = sample_seeds(5, [9])
    assert (crop[1], noise[1]) == (alone[0][0], alone[1][0])
    assert len({*crop, *noise}) == 6  # every sample, and crop vs dropout, its own stream
    assert sample_seeds(6, [9])[0][0] != crop[1]


def test_random_crop_is_a_window_of_its_image_drawn_from_its_seed_alone() -> None:
    from dvtr_data.baselines.amfmn.family import random_crop

    images = torch.randint(0, 256, (3, 3, 9, 7), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    seeds = [11, 12, 13]
    crops = random_crop(images, 5, seeds)
    for i in range(3):
        # the crop is one of the image's 5 x 3 windows of side 5 (searched, not recomputed from the seed)
        windows = [(y, x) for y in range(5) for x in range(3) if torch.equal(crops[i], images[i, :, y : y + 5, x : x + 5])]
        assert windows
        torch.testing.assert_close(random_crop(images[i : i + 1], 5, [seeds[i]])[0], crops[i], rtol=0, atol=0)
    offsets = set()
    for s in range(40):
        c = random_crop(images[:1], 5, [s])[0]
        offsets |= {(y, x) for y in range(5) for x in range(3) if torch.equal(c, images[0, :, y : y + 5, x : x + 5])}
    assert len(offsets) >= 8  # 40 seeds reach most of the 15 windows


def test_seeded_dropout_masks_depend_on_the_caption_seed_only() -> None:
    """Training mode with one dropout seed per caption: a caption's encoding is the same alone or in a batch,
    differs with another seed, and differs from evaluation (the masks are on)."""
    model = small("soft_att", text_dropout=0.5).train()
    ids = torch.tensor([[3, 7, 9], [4, 0, 0], [5, 6, 0]])
    with torch.no_grad():
        batch = model.encode_text(ids, [101, 102, 103])
        alone = model.encode_text(ids[1:2], [102])
        other = model.encode_text(ids[1:2], [104])
        plain = model.eval().encode_text(ids[1:2])
    torch.testing.assert_close(batch[1:2], alone, rtol=0, atol=0)
    assert not torch.allclose(alone, other) and not torch.allclose(alone, plain)
