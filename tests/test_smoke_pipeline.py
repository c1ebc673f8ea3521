"""The smoke profile end to end, in a scratch folder: benchmark -> pretrain -> every method -> every mode."""
import json, shutil
from pathlib import Path

import pytest
import torch

from smat_nb.core import load_params
from smat_nb.benchmark import BenchmarkConfig, build_benchmark
from smat_nb.core import stage_params
from smat_nb.methods import METHODS, load_model
from smat_nb.meta_tuning import run_meta_tune
from smat_nb.evaluation import run_evaluation, paired_comparison
from smat_nb.adaptation import MODES
from smat_nb.cli import main as smat_main
from conftest import ROOT

@pytest.fixture(scope='module')
def smoke(tmp_path_factory):
    "A scratch copy of params.yaml on the smoke profile, with its benchmark and pre-trained backbone."
    d = tmp_path_factory.mktemp('smoke')
    text = (ROOT/'params.yaml').read_text().replace('\nprofile: tiny\n', '\nprofile: smoke\n')
    assert 'profile: smoke' in text
    (d/'params.yaml').write_text(text)
    import os
    old = os.getcwd(); os.chdir(d)
    try:
        assert smat_main(['build-benchmark', '--quiet']) == 0
        assert smat_main(['pretrain', '--quiet']) == 0
        yield d, load_params('params.yaml')
    finally: os.chdir(old)

def test_pretrained_backbone_written(smoke):
    d, _ = smoke
    info = json.loads((d/'results/pretrain/backbone.json').read_text())
    assert info['classes'] == 25 and (d/'results/pretrain/backbone.safetensors').exists()
    assert not list((d/'results/pretrain/checkpoints').glob('*'))          # removed once finished

@pytest.mark.parametrize('method', list(METHODS))
def test_every_method_meta_tunes(smoke, method, monkeypatch):
    d, params = smoke
    monkeypatch.chdir(d)
    s = run_meta_tune(params, method, progress=False)
    assert s['tasks'] == 16 and s['method'] == method
    run = d/'results/runs'/method
    log = [json.loads(l) for l in (run/'log.jsonl').read_text().splitlines()]
    assert len(log) == 16 and all(l['loss'] == l['loss'] for l in log)      # no NaN
    m, mod = load_model(run/'best')
    assert m == method
    again = run_meta_tune(params, method, progress=False)                   # finished: nothing to redo
    assert again == s

@pytest.mark.parametrize('mode', MODES)
def test_every_mode_evaluates(smoke, mode, monkeypatch):
    d, params = smoke
    monkeypatch.chdir(d)
    run_meta_tune(params, 'smat', progress=False)
    m = run_evaluation(params, 'smat', d/'results/runs/smat/best', mode, progress=False)
    assert set(m['summary']) >= {'ID avg', 'OOD avg'}
    for dom, r in m['domains'].items():
        assert r['n'] == 3 and len(r['acc']) == 3 and 0 <= r['mean'] <= 1
        assert (r['lr'] is None) == (mode == 'zero-shot')
    assert (d/'results/eval'/f'smat_{mode}.json').exists()

def test_pre_and_paired_comparison(smoke, monkeypatch):
    d, params = smoke
    monkeypatch.chdir(d)
    run_meta_tune(params, 'smat', progress=False)
    a = run_evaluation(params, 'pre', None, 'zero-shot', progress=False)
    b = run_evaluation(params, 'smat', d/'results/runs/smat/best', 'zero-shot', progress=False)
    assert a['domains'].keys() == b['domains'].keys()
    dom = next(iter(a['domains']))
    r = paired_comparison(b['domains'][dom]['acc'], a['domains'][dom]['acc'])
    assert r['n'] == 3 and r['wins'] + r['ties'] + r['losses'] == 3

def test_wrong_model_for_method_is_refused(smoke, monkeypatch):
    d, params = smoke
    monkeypatch.chdir(d)
    run_meta_tune(params, 'pmf', progress=False)
    with pytest.raises(ValueError, match="holds a 'pmf' model, not 'smat'"):
        run_evaluation(params, 'smat', d/'results/runs/pmf/best', 'zero-shot', progress=False)

def test_finetune_episodes_scores_fewer_fine_tuning_episodes(smoke, monkeypatch):
    d, params = smoke
    monkeypatch.chdir(d)
    run_meta_tune(params, 'smat', progress=False)
    full = run_evaluation(params, 'smat', d/'results/runs/smat/best', 'full', out=d/'ft2.json',
                          overrides={'finetune_episodes': 2}, progress=False)
    zs = run_evaluation(params, 'smat', d/'results/runs/smat/best', 'zero-shot', out=d/'zs.json',
                        overrides={'finetune_episodes': 2}, progress=False)
    assert all(r['n'] == 2 for r in full['domains'].values())          # fine-tuning: the first 2 episodes
    assert all(r['n'] == 3 for r in zs['domains'].values())            # zero-shot: all `episodes`
