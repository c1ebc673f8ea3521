"""Property tests of the Meta-Dataset episode rule and the samplers (smat_nb.episodes)."""
import math
import numpy as np
import pytest
import torch

from smat_nb.episodes import (MD_LIMITS, PlanItem, md_episode_plan, check_md_plan, fixed_episode_plan,
                              hierarchical_plan, draw_indices, EpisodeSampler, episode_rng)

LIMIT_SETS = [MD_LIMITS,
              dict(min_ways=5, max_ways=20, max_query=4, max_support=60, max_support_per_class=15),
              dict(min_ways=2, max_ways=5, max_query=2, max_support=5, max_support_per_class=3)]

@pytest.mark.parametrize('limits', LIMIT_SETS, ids=['paper', 'tiny', 'micro'])
def test_md_plan_rules_hold_over_random_class_sizes(limits):
    meta = np.random.default_rng(123)
    ways = []
    for trial in range(400):
        n = int(meta.integers(limits['min_ways'], 120))
        sizes = meta.integers(2, int(meta.choice([5, 30, 600])), size=n)
        plan = md_episode_plan(sizes, np.random.default_rng(trial), **limits)
        check_md_plan(plan, sizes, **limits)
        # one seed, one plan; and the plan depends only on (sizes, seed)
        assert plan == md_episode_plan(sizes.tolist(), np.random.default_rng(trial), **limits)
        q = plan[0].n_query
        assert q == min(limits['max_query'], min(sizes[p.cls] for p in plan) // 2)
        assert all(isinstance(p, PlanItem) and p.n_support >= 1 for p in plan)
        ways.append(len(plan))
    assert min(ways) == limits['min_ways']
    assert max(ways) == limits['max_ways']

def test_md_plan_budget_follows_beta():
    "With the 500 cap lifted, the support total tracks the beta-scaled budget: beta ~ U(0,1] gives about half of 50*100."
    sizes = [400] * 60
    totals = [sum(p.n_support for p in md_episode_plan(sizes, np.random.default_rng(s), min_ways=50, max_ways=50,
                                                         max_support=10_000)) for s in range(300)]
    assert max(totals) <= 5000 and min(totals) >= 50
    assert 2000 < np.mean(totals) < 3000, np.mean(totals)
    capped = [sum(p.n_support for p in md_episode_plan(sizes, np.random.default_rng(s), min_ways=50, max_ways=50))
              for s in range(100)]
    assert max(capped) <= 500

def test_md_plan_seeds_differ():
    sizes = list(range(10, 70))
    plans = {tuple(md_episode_plan(sizes, np.random.default_rng(s))) for s in range(50)}
    assert len(plans) == 50

def test_episode_rng_depends_on_all_four_keys():
    base = episode_rng(0, 'a', 'train', 1).integers(1 << 62)
    for args in [(1, 'a', 'train', 1), (0, 'b', 'train', 1), (0, 'a', 'val', 1), (0, 'a', 'train', 2)]:
        assert episode_rng(*args).integers(1 << 62) != base

def test_fixed_and_hierarchy_and_cross_style():
    rng = np.random.default_rng(0)
    sizes = rng.integers(15, 40, size=30)
    groups = np.repeat(np.arange(6), 5)
    for s in range(100):
        p = fixed_episode_plan(sizes, np.random.default_rng(s), ways=5, shots=1, queries=10)
        assert len({x.cls for x in p}) == 5 and all(x.n_support == 1 and x.n_query == 10 for x in p)
        h = hierarchical_plan(sizes, groups, np.random.default_rng(s), min_ways=5, max_ways=50)
        assert len({groups[x.cls] for x in h}) == 1
    items, styles = [np.arange(c * 16, (c + 1) * 16) for c in range(6)], np.tile(np.arange(8), 12)
    plan = fixed_episode_plan([16] * 6, np.random.default_rng(1), ways=5, shots=4, queries=4)
    si, ys, qi, yq = draw_indices(plan, items, np.random.default_rng(2), styles, cross_style=True)
    for c in range(5):
        assert not set(styles[si[ys == c]]) & set(styles[qi[yq == c]])

def test_sampler_is_reproducible_and_labels_are_right():
    imgs = np.arange(100 * 4 * 4 * 3, dtype=np.uint32).reshape(100, 4, 4, 3).astype(np.uint8)
    labels = np.repeat(np.arange(10), 10)
    a = EpisodeSampler(imgs, labels, domain='d', split='test', seed=9, max_ways=10, max_support=50)
    b = EpisodeSampler(imgs, labels, domain='d', split='test', seed=9, max_ways=10, max_support=50)
    for i in (0, 7, 99):
        ea, eb = a[i], b[i]
        assert torch.equal(ea.support, eb.support) and torch.equal(ea.query_labels, eb.query_labels)
        plan, (si, ys, qi, yq) = a.indices(i)
        assert (labels[si] == ea.classes[ea.support_labels].numpy()).all()
        assert (labels[qi] == ea.classes[ea.query_labels].numpy()).all()
        assert not set(si) & set(qi)
