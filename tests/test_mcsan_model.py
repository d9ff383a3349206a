"""MCSAN model: shapes and named intermediates, masking, role pooling, shared attribute heads, level fusion
against a naive per-pair reference, and a tiny model that overfits synthetic feature/caption pairs."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dvtr_data.baselines.mcsan import MCSAN, MCSANOptions, MCSANSizes
from dvtr_data.baselines.mcsan.family import clip_labels
from dvtr_data.baselines.msam.encoders import ClipSizes

C, L, FR = 16, 12, 6
SOT, EOT = 49406, 49407


def tiny(options: MCSANOptions | None = None, attributes=(5, 4, 3)) -> MCSAN:
    sizes = MCSANSizes(feature_dim=C, embed_dim=20, gru_hidden=8, attention_hidden=8, attributes=attributes)
    return MCSAN(sizes=sizes, options=options, seed=0).eval()


def features(n_text: int, n_video: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    sentence = torch.randn(n_text, C, generator=g)
    tokens = torch.randn(n_text, L, C, generator=g)
    ids = torch.zeros(n_text, L, dtype=torch.long)
    for i in range(n_text):
        n_words = 2 + i % 6
        ids[i, 0] = SOT
        ids[i, 1 : 1 + n_words] = torch.randint(300, 40000, (n_words,), generator=g)
        ids[i, 1 + n_words] = EOT
    frames = torch.randn(n_video, FR, C, generator=g)
    mask = torch.zeros(n_video, FR, dtype=torch.long)
    for v in range(n_video):
        mask[v, : 1 + v % FR] = 1
    return sentence, tokens, ids, frames, mask


def labels(n: int, sizes=(5, 4, 3), seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        lv: (torch.rand(n, k, generator=g) > 0.6).float()
        for lv, k in zip(("entity", "action", "relation"), sizes, strict=True)
    }


def test_trace_names_and_shapes() -> None:
    m = tiny()
    s, w, ids, fr, vm = features(4, 4)
    y = labels(4)
    tr = m.trace_from_features(s, w, ids, fr, vm, text_labels=y, video_labels=y, clip_index=torch.arange(4))
    got = {k: tuple(v.shape) for k, v in tr.intermediates().items()}
    for side in ("video", "text"):
        for lv in ("global", "entity", "action", "relation"):
            assert got[f"{side}_{lv}"] == (4, 20)
    assert got["video_attention_relation_graph"] == (4, FR, FR)
    assert got["text_attention_entity"] == (4, L)
    assert got["video_attributes_global"] == (4, 12) and got["text_attributes_relation"] == (4, 3)
    assert (
        got["level_similarity"] == (4, 4, 4) and got["similarity"] == (4, 4) and got["fusion_weights"] == (4,)
    )
    assert set(tr.losses) == {"rank", "kl", "fbce", "total"}
    total = tr.losses["rank"] + tr.losses["kl"] + tr.losses["fbce"]
    torch.testing.assert_close(tr.losses["total"], total)


def test_attribute_heads_are_shared_by_both_modalities() -> None:
    m = tiny()
    keys = [k for k in m.state_dict() if "attribute" in k]
    assert sorted(keys) == sorted(
        f"attribute_heads.{lv}.{p}"
        for lv in ("global", "entity", "action", "relation")
        for p in ("weight", "bias")
    )
    s, w, ids, fr, vm = features(3, 3)
    y = labels(3)
    tr = m.trace_from_features(s, w, ids, fr, vm, text_labels=y, video_labels=y)
    head = m.attribute_heads["entity"]
    torch.testing.assert_close(tr.video_attribute_logits["entity"], head(tr.video.levels["entity"]))
    torch.testing.assert_close(tr.text_attribute_logits["entity"], head(tr.text.levels["entity"]))


def test_similarity_is_the_weighted_sum_of_level_cosines() -> None:
    m = tiny()
    with torch.no_grad():
        m.fusion_logits.copy_(torch.tensor([0.3, -1.0, 0.5, 0.0]))
        s, w, ids, fr, vm = features(5, 3)
        text, video = m.embed_text(s, w, ids), m.embed_video(fr, vm)
        sim = m.similarity_from_embeddings(text, video)
    e = [0.3, -1.0, 0.5, 0.0]
    weights = [x / sum(torch.tensor(e).exp().tolist()) for x in torch.tensor(e).exp().tolist()]
    for t in range(5):
        for v in range(3):
            naive = sum(
                wl * F.cosine_similarity(text.levels[lv][t], video.levels[lv][v], dim=0).item()
                for wl, lv in zip(weights, ("global", "entity", "action", "relation"), strict=True)
            )
            assert abs(sim[t, v].item() - naive) < 1e-5


def test_equal_fusion_weights_and_single_level() -> None:
    m = tiny(MCSANOptions(fusion="equal"))
    assert m.fusion_weights().tolist() == [0.25] * 4
    g = tiny(MCSANOptions.preset("global_only"))
    s, w, ids, fr, vm = features(2, 2)
    with torch.no_grad():
        t, v = g.embed_text(s, w, ids), g.embed_video(fr, vm)
        expected = F.normalize(t.levels["global"], dim=-1) @ F.normalize(v.levels["global"], dim=-1).T
        torch.testing.assert_close(g.similarity_from_embeddings(t, v), expected)
    assert set(t.levels) == {"global"}


def test_padded_frames_and_tokens_after_eot_do_not_matter() -> None:
    m = tiny()
    s, w, ids, fr, vm = features(4, 4)
    with torch.no_grad():
        a_v, a_t = m.embed_video(fr, vm), m.embed_text(s, w, ids)
        fr2, w2 = fr.clone(), w.clone()
        fr2[vm == 0] = 1000.0
        eot = ids.argmax(1)
        for i in range(4):
            w2[i, eot[i] + 1 :] = -500.0
        b_v, b_t = m.embed_video(fr2, vm), m.embed_text(s, w2, ids)
    for lv in a_v.levels:
        torch.testing.assert_close(a_v.levels[lv], b_v.levels[lv])
        torch.testing.assert_close(a_t.levels[lv], b_t.levels[lv])
    assert (a_v.attention["entity"][vm == 0] == 0).all()


def test_text_levels_pool_over_their_role_words_or_all_words_when_none() -> None:
    m = tiny()
    s, w, ids, _, _ = features(2, 1)
    ids[:] = 0
    ids[:, 0], ids[:, 1:7], ids[:, 7] = SOT, 500, EOT  # six words each
    roles = torch.zeros(2, 3, L, dtype=torch.bool)
    roles[0, 0, [2, 4]] = True  # caption 0: entity words at 2 and 4
    roles[0, 1, 5] = True  # caption 0: one action word
    with torch.no_grad():
        t = m.embed_text(s, w, ids, roles)
        free = (
            MCSAN(sizes=m.sizes, options=MCSANOptions(text_roles=False), seed=0)
            .eval()
            .embed_text(s, w, ids, roles)
        )
    ent, act, rel = t.attention["entity"], t.attention["action"], t.attention["relation"]
    assert ent[0].nonzero().flatten().tolist() == [2, 4]
    assert act[0].nonzero().flatten().tolist() == [5]
    assert act[0, 5].item() == 1.0
    for a in (rel[0], ent[1], act[1], rel[1]):  # no role word: every word 1..6, never SOT, EOT or padding
        assert a.nonzero().flatten().tolist() == [1, 2, 3, 4, 5, 6]
    assert free.attention["entity"][0].nonzero().flatten().tolist() == [1, 2, 3, 4, 5, 6]


def test_clip_labels_are_the_union_of_caption_labels() -> None:
    y = {"entity": torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 1]])}
    got = clip_labels(y, torch.tensor([0, 0, 1]), 3)["entity"]
    assert got.tolist() == [[1, 1, 0], [0, 0, 1], [0, 0, 0]]


def test_from_clip_keeps_the_backbone_out_of_the_state_dict() -> None:
    clip = ClipSizes(
        embed_dim=32,
        vision_width=64,
        vision_layers=1,
        patch_size=16,
        image_size=32,
        text_width=64,
        text_layers=1,
        vocab_size=49408,
        context_length=77,
    ).build()
    m = MCSAN.from_clip(
        clip, sizes=MCSANSizes(embed_dim=8, gru_hidden=4, attention_hidden=4, attributes=(2, 2, 2))
    )
    assert m.sizes.feature_dim == 32
    assert not any(k.startswith("encoders") for k in m.state_dict())
    assert all(p.data_ptr() not in {q.data_ptr() for q in clip.parameters()} for p in m.parameters())
    ids = torch.zeros(2, 8, dtype=torch.long)
    ids[:, 0], ids[:, 1], ids[:, 2] = SOT, 320, EOT
    sentence, tokens = m.encode_text(ids)
    frames = m.encode_frames(torch.zeros(1, 3, 3, 32, 32))
    assert sentence.shape == (2, 32) and tokens.shape == (2, 8, 32) and frames.shape == (1, 3, 32)


def r_at_1(sim: torch.Tensor, caption_clip: torch.Tensor) -> float:
    return float((sim.argmax(1) == caption_clip).float().mean() * 100)


def test_a_tiny_mcsan_overfits_synthetic_pairs() -> None:
    """8 clips x 2 captions of unrelated random features: only training can pair them (R@1 from 0 to ~100)."""
    torch.manual_seed(0)
    n_clips = 8
    s, w, ids, _, _ = features(16, 0, seed=3)
    _, _, _, fr, vm = features(0, n_clips, seed=4)
    caption_clip = torch.arange(16) // 2
    y_t = labels(16, seed=5)
    y_v = clip_labels(y_t, caption_clip, n_clips)
    m = tiny().train()
    with torch.no_grad():
        before = r_at_1(m.eval().similarity_from_features(s, w, ids, fr, vm), caption_clip)
    m.train()
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    first = None
    for _ in range(100):
        out = m.losses_from_features(
            s,
            w,
            ids,
            fr[caption_clip],
            vm[caption_clip],
            text_labels=y_t,
            video_labels={k: v[caption_clip] for k, v in y_v.items()},
            clip_index=caption_clip,
        )
        first = first if first is not None else {k: float(v.detach()) for k, v in out.items()}
        opt.zero_grad()
        out["total"].backward()
        opt.step()
    with torch.no_grad():
        after = r_at_1(m.eval().similarity_from_features(s, w, ids, fr, vm), caption_clip)
    assert before <= 50.0 and after >= 90.0, (before, after)
    last = {k: float(v.detach()) for k, v in out.items()}
    assert last["rank"] < 0.5 * first["rank"] and last["fbce"] < first["fbce"], (first, last)


def test_an_empty_vocabulary_leaves_the_ranking_loss_alone() -> None:
    """Captions without any mined attribute (e.g. a level with no training word): no heads, zero terms."""
    m = tiny(attributes=(0, 0, 0))
    assert len(m.attribute_heads) == 0
    s, w, ids, fr, vm = features(3, 3)
    empty = {lv: torch.zeros(3, 0) for lv in ("entity", "action", "relation")}
    out = m.losses_from_features(s, w, ids, fr, vm, text_labels=empty, video_labels=empty)
    assert out["kl"].item() == 0.0 and out["fbce"].item() == 0.0
    torch.testing.assert_close(out["total"], out["rank"])
    partial = tiny(attributes=(4, 0, 2))
    assert sorted(partial.attribute_heads) == ["entity", "global", "relation"]
    assert partial.attribute_heads["global"].out_features == 6
    y = labels(3, sizes=(4, 0, 2))
    out = partial.losses_from_features(s, w, ids, fr, vm, text_labels=y, video_labels=y)
    assert torch.isfinite(out["total"]) and out["fbce"].item() > 0
