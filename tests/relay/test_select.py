import random
from collections import Counter

from reapi.catalog import Channel
from reapi.relay.select import pick


def ch(i, priority=0, weight=1):
    return Channel(id=i, name=f"c{i}", type="openai", base_url="http://x", api_key="k", models=("m",),
                   groups=("default",), priority=priority, weight=weight)


def test_highest_priority_tier_wins_and_weights_split_traffic():
    tiers = [[ch(1, 10, 3), ch(2, 10, 1)], [ch(3, 0)]]
    rng = random.Random(7)
    counts = Counter(pick(tiers, rng=rng).id for _ in range(4000))
    assert set(counts) == {1, 2}
    assert 0.70 < counts[1] / 4000 < 0.80  # weight 3:1


def test_unavailable_channels_are_skipped_then_lower_tier_used():
    tiers = [[ch(1, 10), ch(2, 10)], [ch(3, 0)]]
    asked = []

    def available(cid):
        asked.append(cid)
        return cid == 3

    assert pick(tiers, available) .id == 3
    assert sorted(asked) == [1, 2, 3]


def test_all_unavailable_falls_back_to_top_tier():
    tiers = [[ch(1, 10)], [ch(3, 0)]]
    assert pick(tiers, lambda cid: False).id == 1


def test_only_the_chosen_channel_is_asked():
    tiers = [[ch(1), ch(2)]]
    asked = []
    pick(tiers, lambda cid: asked.append(cid) or True)
    assert len(asked) == 1
