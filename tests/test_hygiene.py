"""Repository hygiene: the library matches the notebooks, paper notebooks are clean, DVC deps exist."""
import filecmp, json, shutil, subprocess, sys
from pathlib import Path

import nbformat, yaml
import pytest

from conftest import ROOT

def _files(d):
    return {p.relative_to(d).as_posix() for p in Path(d).rglob('*')
            if p.is_file() and '__pycache__' not in p.parts and p.suffix != '.pyc'}

def test_sync_library_matches_notebooks(tmp_path):
    "nbdev-export on a copy of the repo gives exactly the committed smat_nb/ (no diff)."
    work = tmp_path/'repo'
    work.mkdir()
    shutil.copytree(ROOT/'nbs', work/'nbs')
    shutil.copy(ROOT/'pyproject.toml', work)
    (work/'smat_nb').mkdir()
    shutil.copy(ROOT/'smat_nb'/'__init__.py', work/'smat_nb')
    r = subprocess.run(['nbdev-export'], cwd=work, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    made, have = _files(work/'smat_nb'), _files(ROOT/'smat_nb')
    assert made == have, f'files differ: only from notebooks {sorted(made - have)}, only in smat_nb/ {sorted(have - made)}; run nbdev-export'
    differ = [f for f in sorted(made) if not filecmp.cmp(work/'smat_nb'/f, ROOT/'smat_nb'/f, shallow=False)]
    assert not differ, f'smat_nb/ is out of sync with nbs/ in {differ}: run nbdev-export (never edit smat_nb/*.py by hand)'

def test_no_settings_ini():
    assert not (ROOT/'settings.ini').exists(), 'nbdev 3 refuses settings.ini: keep the config in pyproject.toml'

def test_nbdev_config_keeps_tags():
    import tomllib
    cfg = tomllib.loads((ROOT/'pyproject.toml').read_text())['tool']['nbdev']
    assert cfg['allowed_cell_metadata_keys'] == ['tags']   # a string would be split into characters
    assert set(cfg['tst_flags'].split()) == {'notest', 'slow', 'gpu'}

PAPER = sorted((ROOT/'nbs'/'paper').glob('*.ipynb'))

def test_paper_notebooks_exist():
    assert PAPER, 'nbs/paper/ holds no notebook'

@pytest.mark.parametrize('fn', PAPER, ids=lambda p: p.name)
def test_paper_notebook_has_one_parameters_cell_and_no_outputs(fn):
    nb = nbformat.read(fn, as_version=4)
    tagged = [c for c in nb.cells if 'parameters' in c.get('metadata', {}).get('tags', [])]
    assert len(tagged) == 1, f'{fn.name}: {len(tagged)} cells tagged parameters, need exactly 1'
    with_out = [i for i, c in enumerate(nb.cells) if c.cell_type == 'code' and (c.outputs or c.execution_count)]
    assert not with_out, f'{fn.name}: cells {with_out} hold outputs; clear them (papermill writes results elsewhere)'

def test_notebooks_open_unmodified_in_jupyterlab():
    "JupyterLab sets kernelspec and language_info when the kernel starts; a notebook that already holds them opens clean."
    for fn in sorted((ROOT/'nbs').rglob('*.ipynb')):
        md = json.loads(fn.read_text())['metadata']
        assert md.get('kernelspec', {}).get('display_name') == 'Python 3 (ipykernel)', f'{fn}: kernelspec display_name'
        li = md.get('language_info', {})
        assert li.get('name') == 'python' and li.get('version') and li.get('pygments_lexer') == 'ipython3', f'{fn}: no language_info'

def test_notebook_cell_ids_unique():
    for fn in sorted((ROOT/'nbs').rglob('*.ipynb')):
        ids = [c.get('id') for c in nbformat.read(fn, as_version=4).cells]
        assert all(ids) and len(ids) == len(set(ids)), f'{fn}: missing or duplicate cell ids'

def _stage_deps():
    stages = yaml.safe_load((ROOT/'dvc.yaml').read_text())['stages']
    for name, st in stages.items():
        if 'matrix' in st or 'foreach' in st: continue   # templated paths are checked after expansion by dvc
        for d in st.get('deps', []):
            yield name, d

def test_dvc_deps_exist():
    deps = list(_stage_deps())
    assert deps, 'dvc.yaml has no stage with deps'
    produced = set()
    for dvcfile in (p for p in ROOT.glob('*.dvc') if p.is_file()):   # DVC-tracked data (data.dvc): fetched, not in git
        for o in yaml.safe_load(dvcfile.read_text()).get('outs', []): produced.add(o['path'])
    for st in yaml.safe_load((ROOT/'dvc.yaml').read_text())['stages'].values():
        st = st.get('do', st)                            # foreach stages: the template's outs (paths keep their ${...})
        for key in ('outs', 'metrics', 'plots'):
            for o in st.get(key, []) or []:
                produced.add(next(iter(o)) if isinstance(o, dict) else o)
    missing = [(n, d) for n, d in deps if not (ROOT/d).exists() and d not in produced
               and not any(d.startswith(p.rstrip('/') + '/') for p in produced)
               and not any(p.startswith(d.rstrip('/') + '/') for p in produced)]   # a folder of other stages' outs
    assert not missing, f'dvc.yaml deps that neither exist nor are produced by a stage: {missing}'

def test_dvc_config_offline():
    cfg = (ROOT/'.dvc'/'config').read_text()
    assert 'analytics = false' in cfg and 'check_update = false' in cfg
    ign = (ROOT/'.dvcignore').read_text()
    assert '__pycache__' in ign and '*.pyc' in ign
