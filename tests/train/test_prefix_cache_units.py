"""The pieces of prefix reuse on their own: prefix lookup and eviction, the prefix-tree layout, who may reuse."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from transformers import AutoModelForCausalLM, GenerationConfig  # noqa: E402

from eigendspy.train.backends.kv_rows import ReservedLayer, reuse_blocker  # noqa: E402
from eigendspy.train.backends.packed import tree_layout  # noqa: E402
from eigendspy.train.backends.prefix_cache import PrefixCache, WeightsWatch, common_prefix  # noqa: E402


def kv(ids: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """A fake one-layer cache whose keys spell out the ids (so slices can be checked)."""
    t = torch.tensor(ids, dtype=torch.float32).view(1, 1, -1, 1)
    return [(t, -t)]


def test_common_prefix():
    t = lambda xs: torch.tensor(xs)  # noqa: E731
    assert common_prefix(t([1, 2, 3]), t([1, 2, 4, 5])) == 2
    assert common_prefix(t([1, 2]), t([1, 2, 3])) == 2
    assert common_prefix(t([]), t([1])) == 0
    assert common_prefix(t([7, 2]), t([1, 2])) == 0


def test_lookup_finds_the_longest_shared_prefix_and_copies_partial_matches():
    cache = PrefixCache(100)
    cache.store([1, 2, 3, 4], kv([1, 2, 3, 4]))
    cache.store([1, 2, 9], kv([1, 2, 9]))
    n, got = cache.lookup([1, 2, 3, 4, 5, 6], limit=5)
    assert n == 4 and got[0][0].flatten().tolist() == [1, 2, 3, 4]
    n, got = cache.lookup([1, 2, 3, 7], limit=3)  # partial: cut to the shared part, as its own tensor
    assert n == 3 and got[0][0].flatten().tolist() == [1, 2, 3] and got[0][0].is_contiguous()
    assert cache.lookup([1, 2, 3, 4], limit=3)[0] == 3  # never the whole prompt: its last token is the query
    assert cache.lookup([5, 6], limit=1) == (0, [])


def test_an_extension_replaces_its_prefix_entry_and_the_cap_evicts_least_recently_used():
    cache = PrefixCache(10)
    cache.store([1, 2, 3], kv([1, 2, 3]))
    cache.store([1, 2, 3, 4, 5], kv([1, 2, 3, 4, 5]))  # the same episode, one turn later
    assert len(cache) == 1 and cache.tokens == 5
    cache.store([7, 8, 9], kv([7, 8, 9]))
    cache.lookup([1, 2, 3, 4, 5, 6], limit=5)  # touch the first: the second is now least recently used
    cache.store([4, 4, 4], kv([4, 4, 4]))
    assert cache.tokens <= 10 and len(cache) == 2
    assert cache.lookup([7, 8, 9, 1], limit=3)[0] == 0 and cache.lookup([1, 2, 3, 4, 5, 0], limit=5)[0] == 5
    cache.store(list(range(11)), kv(list(range(11))))  # longer than the cap: not kept at all
    assert cache.tokens <= 10
    assert cache.release([1, 2, 3, 4, 5, 6, 7]) == 5 and cache.tokens == 3


def test_tree_layout_stores_shared_segments_once_and_rebuilds_every_row():
    rows = [[1, 2, 3, 4, 5], [1, 2, 3, 4, 5], [1, 2, 3, 8], [1, 2, 3, 8, 9, 9], [6], []]
    segments = tree_layout([torch.tensor(r, dtype=torch.long) for r in rows])
    assert sum(end - start for _, start, end, _ in segments) == 3 + 2 + 1 + 2 + 1  # 123 | 45 | 8 | 99 | 6
    for i, row in enumerate(rows):
        path = [rows[src][start:end] for src, start, end, members in segments if i in members]
        assert sum(path, []) == row
    assert segments[0] == (0, 0, 3, [0, 1, 2, 3])


def test_reserved_layer_appends_in_place_and_survives_replacement():
    layer = ReservedLayer(capacity=8)
    k = torch.arange(6, dtype=torch.float32).view(1, 1, 3, 2)
    keys, _ = layer.update(k, k)
    buffer = keys.data_ptr()
    keys, _ = layer.update(k[:, :, :1] + 100, k[:, :, :1])
    assert keys.shape[2] == 4 and keys.data_ptr() == buffer  # no copy of what was there
    layer.keys, layer.values = layer.keys[:, :, :2], layer.values[:, :, :2]  # e.g. cropped by someone
    keys, _ = layer.update(k, k)
    assert keys.shape[2] == 5 and keys[0, 0, :2].tolist() == k[0, 0, :2].tolist()
    keys, _ = layer.update(torch.zeros(1, 1, 9, 2), torch.zeros(1, 1, 9, 2))  # past the room: grows
    assert keys.shape[2] == 14


def test_who_may_reuse(tiny_model_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert reuse_blocker(model) is None
    model.generation_config = GenerationConfig(repetition_penalty=1.05)
    assert "repetition_penalty" in reuse_blocker(model)
    eager = AutoModelForCausalLM.from_pretrained(tiny_model_dir, attn_implementation="eager")
    assert reuse_blocker(eager) is None
    eager.config._attn_implementation = "flash_attention_2"
    assert "takes no custom mask" in reuse_blocker(eager)
    sliding = AutoModelForCausalLM.from_pretrained(tiny_model_dir, use_sliding_window=True, sliding_window=16,
                                                   layer_types=["sliding_attention", "full_attention"])
    assert reuse_blocker(sliding) == "not every layer keeps a full-attention cache"


def test_weights_watch_sees_steps_writes_and_other_models():
    a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    watch = WeightsWatch()
    assert watch.changed(a) and not watch.changed(a)
    opt = torch.optim.SGD(torch.nn.Linear(1, 1).parameters(), lr=0.1)  # any optimizer in the process counts
    opt.step()
    assert watch.changed(a) and not watch.changed(a)
    with torch.no_grad():
        a.weight.add_(1.0)
    assert watch.changed(a)
    assert watch.changed(b)
