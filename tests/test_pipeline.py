"""The smoke profile through `dvc repro` in a scratch copy of the repository: every file the README's
table/figure map lists is produced, and a second `dvc repro` has nothing to do."""
import os, resource, shutil, subprocess, time
from pathlib import Path

import pytest
import yaml

from smat_nb.dryrun import mapped_files
from conftest import ROOT

def readme_files() -> dict:
    "{id: [files]} of the README's '## Tables and figures' map (the parser is the paper dry run's, smat_nb.dryrun)."
    return mapped_files(ROOT/'README.md')

def test_readme_map_lists_every_table_and_figure():
    files = readme_files()
    assert {'T1', 'T2', 'F1', 'F2', 'F3', 'F4', 'F5', 'C'} <= set(files), sorted(files)
    assert all(files[k] for k in files), files

def _dvc(args, cwd, timeout=900):
    r = subprocess.run(['dvc', *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                       env={**os.environ, 'DVC_NO_ANALYTICS': '1', 'PYTHONDONTWRITEBYTECODE': '1'})
    assert r.returncode == 0, f'dvc {" ".join(args)} failed:\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}'
    return r.stdout

@pytest.fixture(scope='module')
def smoke_repo(tmp_path_factory):
    "A copy of the tracked files on the smoke profile, reproduced once with `dvc repro`."
    d = tmp_path_factory.mktemp('pipeline')/'repo'
    files = subprocess.run(['git', 'ls-files', '-co', '--exclude-standard'], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for f in files:
        if (ROOT/f).is_file() and not f.startswith(('figures/', 'results/')) and f != 'dvc.lock':
            (d/f).parent.mkdir(parents=True, exist_ok=True); shutil.copy2(ROOT/f, d/f)
    p = d/'params.yaml'
    text = p.read_text()
    assert '\nprofile: tiny\n' in text
    p.write_text(text.replace('\nprofile: tiny\n', '\nprofile: smoke\n'))
    (d/'data.dvc').unlink(missing_ok=True)          # the smoke benchmark is generated: no raw data to fetch
    (d/'data').mkdir(exist_ok=True); (d/'data'/'README.txt').write_text('smoke profile: no raw data\n')
    subprocess.run(['git', 'init', '-q'], cwd=d, check=True)
    t0, r0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    _dvc(['repro'], d, timeout=1200)
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)   # dvc and every stage it ran
    return d, {'wall': time.perf_counter() - t0, 'cpu': cpu}

def test_smoke_repro_makes_every_mapped_file(smoke_repo):
    d, secs = smoke_repo
    print(f"smoke dvc repro: {secs['wall']:.0f} s wall, {secs['cpu']:.0f} CPU-s")
    # The budget is 10 minutes of 2 CPU cores. Counted in CPU seconds, so that a machine shared with
    # other jobs (which stretches the wall time, not the work) does not fail it.
    assert secs['cpu'] < 2 * 600, f"the smoke pipeline used {secs['cpu']:.0f} CPU-s ({secs['wall']:.0f} s wall); the budget is 10 min x 2 cores"
    expected = readme_files()
    missing = [f for fs in expected.values() for f in fs if not (d/f).exists()]
    assert not missing, f'dvc repro did not write {missing}'
    assert (d/'results'/'eval'/'pre_lora.json').exists() and (d/'results'/'runs'/'m16_t90'/'summary.json').exists()

def test_second_repro_does_nothing(smoke_repo):
    d, _ = smoke_repo
    out = _dvc(['repro'], d)
    assert 'Running stage' not in out, out[-3000:]
    st = _dvc(['status'], d)
    assert 'up to date' in st, st[-3000:]

def test_f2_diversity_stage(smoke_repo):
    d, _ = smoke_repo
    assert (d/'figures'/'f2_diversity.png').exists() and (d/'results'/'runs'/'div1_smat'/'summary.json').exists()
