"""The benchmark: the smoke build (generated classes, no network) runs in the normal suite; the real
build from an already-fetched data/raw is compared with the README datasheet (slow; skipped without data)."""
import json, os, subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT
from smat_nb.benchmark import (SOURCES, SOURCE_SHA256, BenchmarkConfig, build_benchmark, load_summary, load_domain,
                               datasheet_counts, summary_counts, fetch_data, episodes_per_second)

RAW = ROOT/'data'/'raw'
HAVE_RAW = all((RAW/s.kind/s.file).exists() for s in SOURCES)

def test_smoke_build_via_cli_is_deterministic(tmp_path):
    params = tmp_path/'params.yaml'
    params.write_text('profile: smoke\nbenchmark:\n  image_size: 16\n  smoke: {source: synthetic, synthetic_classes: 25, synthetic_images: 6}\n')
    outs = []
    for i in range(2):
        r = subprocess.run(['smat', 'build-benchmark', '--params', params, '--out', tmp_path/f'b{i}', '--quiet'],
                           capture_output=True, text=True, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        outs.append({p.name: p.read_bytes() for p in sorted((tmp_path/f'b{i}').iterdir())})
    assert outs[0] == outs[1], 'two builds differ'
    s = load_summary(tmp_path/'b0')
    assert {n: d['role'] for n, d in s['domains'].items()} == {'pretrain': 'pretrain', 'shapes_a': 'id', 'shapes_b': 'id', 'shapes_ood': 'ood'}
    te = load_domain(tmp_path/'b0', 'shapes_a', 'test')
    assert te.images.shape == (30, 16, 16, 3) and te.images.dtype == np.uint8 and te.n_classes == 5
    e = te.sampler(seed=1, mode='fixed', ways=5, shots=2, queries=3)[0]
    assert tuple(e.support.shape) == (10, 3, 16, 16)

def test_build_benchmark_cli_errors_name_the_fix(tmp_path):
    params = tmp_path/'params.yaml'
    params.write_text('profile: tiny\nbenchmark:\n  raw_dir: nowhere/raw\n  tiny: {source: embedded}\n')
    r = subprocess.run(['smat', 'build-benchmark', '--params', params, '--quiet'], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 1 and 'run `smat fetch-data` first' in r.stderr, r.stderr
    assert not (tmp_path/'benchmark').exists()
    params.write_text('profile: paper\nbenchmark:\n  paper: {source: meta_dataset, md_root: /path/to/meta_dataset}\n')
    r = subprocess.run(['smat', 'build-benchmark', '--params', params, '--quiet'], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 1 and 'set it in params.yaml' in r.stderr, r.stderr

def test_every_source_is_pinned():
    assert {s.file for s in SOURCES} == set(SOURCE_SHA256)
    for s in SOURCES:
        assert s.kind in ('npm', 'pip') and s.version[0].isdigit() and len(SOURCE_SHA256[s.file]) == 64
        assert s.version in s.file

def test_params_profiles_resolve():
    from smat_nb.core import load_params, stage_params
    p = load_params(ROOT/'params.yaml')
    assert stage_params(p, 'benchmark', 'smoke', BenchmarkConfig).source == 'synthetic'
    assert stage_params(p, 'benchmark', 'tiny', BenchmarkConfig).source == 'embedded'
    paper = stage_params(p, 'benchmark', 'paper', BenchmarkConfig)
    assert paper.source == 'meta_dataset' and len(paper.md_train) == 8 and paper.image_size == 128

@pytest.mark.skipif(not HAVE_RAW, reason='data/raw not fetched (run `smat fetch-data`); CI does not download')
def test_fetch_is_idempotent_offline(capsys):
    got = fetch_data(RAW, progress=True)          # every archive is present with the pinned hash: no client is called
    assert got == SOURCE_SHA256
    assert '0 fetched, 40 already present' in capsys.readouterr().out

@pytest.mark.slow
@pytest.mark.skipif(not HAVE_RAW, reason='data/raw not fetched (run `smat fetch-data`); CI does not download')
def test_real_build_matches_the_readme_datasheet(tmp_path):
    s = build_benchmark(BenchmarkConfig(raw_dir=str(RAW)), tmp_path/'benchmark', progress=False)
    sheet = datasheet_counts(ROOT/'README.md')
    assert sheet, 'README.md has no datasheet counts table'
    assert summary_counts(s) == sheet
    roles = {n: d['role'] for n, d in s['domains'].items()}
    assert sum(r == 'id' for r in roles.values()) >= 4 and sum(r == 'ood' for r in roles.values()) >= 3
    assert s['domains']['pretrain']['splits']['train']['classes'] >= 500
    names = {n: set(load_domain(tmp_path/'benchmark', n, sp).class_names) for n, d in s['domains'].items() for sp in d['splits']}
    pool = names['pretrain']
    assert all(not (pool & v) for n, v in names.items() if n != 'pretrain'), 'pre-training classes leak into other domains'
    assert episodes_per_second(load_domain(tmp_path/'benchmark', 'mnist', 'test'), mode='fixed', ways=5, shots=5, queries=10) > 0
