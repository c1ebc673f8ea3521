"""Run every notebook under nbs/ with nbdev's tester, skipping cells flagged by tst_flags."""
import os
from pathlib import Path

import pytest
import nbdev.test as nbt
from nbdev.config import get_config

from conftest import ROOT

def _notebooks():
    cfg = get_config(path=ROOT)
    nbs = Path(cfg.nbs_path)
    for fn in sorted(nbs.rglob('*.ipynb')):
        rel = fn.relative_to(nbs)
        if any(p.startswith(('_', '.')) for p in rel.parts): continue
        if any((nbs/Path(*rel.parts[:i])/'.notest').exists() for i in range(len(rel.parts))): continue
        yield fn

NOTEBOOKS = list(_notebooks())

def test_found_notebooks():
    names = {fn.name for fn in NOTEBOOKS}
    assert {'index.ipynb', '00_core.ipynb', '99_cli.ipynb'} <= names, names

@pytest.mark.parametrize('fn', NOTEBOOKS, ids=lambda p: str(p.relative_to(ROOT/'nbs')))
def test_notebook(fn, tmp_path, monkeypatch):
    cfg = get_config(path=ROOT)
    flags = cfg.tst_flags.split() if isinstance(cfg.tst_flags, str) else list(cfg.tst_flags)
    assert {'slow', 'gpu'} <= set(flags), f'tst_flags must skip slow and gpu cells, got {flags}'
    monkeypatch.chdir(fn.parent)           # notebooks run from their own folder, as in JupyterLab
    ok, secs = nbt.test_nb(fn, skip_flags=flags, cell_timeout=int(cfg.get('cell_timeout', 600)))
    assert ok, f'{fn.name} failed (see the traceback above)'
