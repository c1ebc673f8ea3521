"""The pipeline end to end, in scratch clones of the working tree (its `git ls-files`, committed in a fresh repository).

- `smat smoke`, once, in a clone without `data/` and without a network: every file of the README's table/figure map
  is written under `_smoke/`, every stage ran, the clone's tracked files and committed results are unchanged, and a
  second reproduce in the copy has nothing to do.
- A forced rerun of a table stage and a figure stage rewrites the same bytes: `git status` stays clean.
No test here has a wall-clock limit; the smoke run's cost is asserted in CPU seconds."""
import hashlib, json, os, re, resource, shutil, subprocess, time
from pathlib import Path

import pytest
import yaml

from smat_nb.dryrun import mapped_files, pipeline_stages, repo_files, run_dvc
from conftest import ROOT, BIN

COMMITTED = ('figures', 'results', 'dvc.lock', 'params.yaml')      # the tiny profile's committed results
NOISE = ('Passed unknown parameter', 'Kernel is running over TCP', 'IProgress not found')
# Any download attempt fails fast: pip, npm and Python's urllib honour these (on top of the network namespace below).
OFFLINE_ENV = {k: 'http://127.0.0.1:9' for k in ('http_proxy', 'https_proxy', 'HTTP_PROXY', 'HTTPS_PROXY', 'ALL_PROXY')}
OFFLINE_ENV.update(no_proxy='', NO_PROXY='', PIP_NO_INDEX='1', npm_config_offline='true', DVC_NO_ANALYTICS='1')

def readme_files() -> dict:
    "{id: [files]} of the README's '## Tables and figures' map (the parser is the paper dry run's, smat_nb.dryrun)."
    return mapped_files(ROOT/'README.md')

def test_readme_map_lists_every_table_and_figure():
    files = readme_files()
    assert {'T1', 'T2', 'F1', 'F2', 'F3', 'F4', 'F5', 'C'} <= set(files), sorted(files)
    assert all(files[k] for k in files), files

def papermill_stages() -> dict:
    "{stage: (its command on one line, its params list)} of every dvc.yaml stage that runs papermill."
    stages = yaml.safe_load((ROOT/'dvc.yaml').read_text())['stages']
    return {name: (' '.join(str(st['cmd']).split()), st.get('params', [])) for name, st in stages.items()
            if 'papermill' in str(st.get('cmd', ''))}

def test_papermill_stages_pass_only_declared_parameters(caplog):
    """No 'Passed unknown parameter': a stage passes each notebook only names its parameters cell declares, and the
    notebook reads from `params_file` exactly the params.yaml sections the stage tracks. No 'Unable to parse line'
    either: papermill reads every line of each parameters cell."""
    import papermill as pm
    stages = papermill_stages()
    assert len(stages) >= 10, sorted(stages)
    for name, (cmd, params) in stages.items():
        nb = re.search(r'papermill (\S+\.ipynb)', cmd).group(1)
        caplog.clear()
        declared = set(pm.inspect_notebook(str(ROOT/nb)))
        assert not [r.getMessage() for r in caplog.records if r.levelno >= 30], f'{nb}: {caplog.text}'
        passed = re.findall(r' (?:-p|--parameters) (\w+) ', cmd + ' ')
        assert not re.search(r' (-f|-y|-b|--parameters_file|--parameters_yaml) ', cmd), f'{name}: passes a whole params file: {cmd}'
        assert 'params_file' in passed and set(passed) <= declared, f'{name}: passes {sorted(set(passed) - declared)} not declared in {nb}'
        src = ''.join(''.join(c['source']) for c in json.loads((ROOT/nb).read_text())['cells'])
        read = re.search(r'load_params\(params_file\)\[k\] for k in \(([^)]*)\)', src)
        assert read and sorted(yaml.safe_load('[' + read.group(1) + ']')) == sorted(params), \
            f"{name}: {nb} reads {read and read.group(1)} from params_file, dvc.yaml tracks {params}"

def git(args, cwd) -> str:
    r = subprocess.run(['git', '-c', 'user.name=smat', '-c', 'user.email=smat@localhost', *args], cwd=cwd,
                       capture_output=True, text=True)
    assert r.returncode == 0, f'git {" ".join(args)} failed in {cwd}: {r.stderr}'
    return r.stdout

def clone_worktree(dest) -> Path:
    "The working tree's files (tracked, and untracked ones not ignored; so no data/), committed in a new git repository."
    dest = Path(dest)
    for f in repo_files(ROOT):
        (dest/f).parent.mkdir(parents=True, exist_ok=True); shutil.copy2(ROOT/f, dest/f)
    git(['init', '-q'], dest); git(['add', '-A'], dest); git(['commit', '-q', '-m', 'clone'], dest)
    return dest

def digests(repo) -> dict:
    "{path: sha256} of every file of the committed results in `repo` (git-ignored ones, such as results/nb/, left out)."
    files = git(['ls-files', '-z', '--', *COMMITTED], repo).split('\0')
    return {f: hashlib.sha256((Path(repo)/f).read_bytes()).hexdigest() for f in files if f}

def offline_prefix() -> list:
    "A command prefix that runs its command in a new network namespace with only loopback up; [] where the system forbids one."
    if not (shutil.which('unshare') and shutil.which('ip')): return []
    probe = subprocess.run(['unshare', '-rn', 'sh', '-c', 'ip link set lo up'], capture_output=True)
    return ['unshare', '-rn', 'sh', '-c', 'ip link set lo up && exec "$@"', 'sh'] if probe.returncode == 0 else []

@pytest.fixture(scope='module')
def smoke_run(tmp_path_factory):
    "`smat smoke` (what `make smoke` runs), once, in a clone of the working tree, offline; with the clone's state before."
    clone = clone_worktree(tmp_path_factory.mktemp('clone')/'repo')
    assert not (clone/'data').exists() and (clone/'data.dvc').exists()          # as a fresh clone: the raw data never fetched
    before = git(['status', '--porcelain'], clone), digests(clone)
    prefix = offline_prefix()
    t0, r0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    r = subprocess.run([*prefix, str(BIN/'smat'), 'smoke'], cwd=clone, capture_output=True, text=True,
                       env={**os.environ, **OFFLINE_ENV, 'PYTHONDONTWRITEBYTECODE': '1'})
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)          # smat, dvc and every stage they ran
    assert r.returncode == 0, f'smat smoke failed:\n{r.stdout[-3000:]}\n{r.stderr[-5000:]}'
    return dict(clone=clone, smoke=clone/'_smoke', before=before, stdout=r.stdout, stderr=r.stderr,
                wall=time.perf_counter() - t0, cpu=cpu, offline=bool(prefix))

def test_smoke_writes_every_mapped_file_under_smoke(smoke_run):
    s = smoke_run
    print(f"smat smoke: {s['wall']:.0f} s wall, {s['cpu']:.0f} CPU-s, network {'cut (network namespace)' if s['offline'] else 'proxied to a closed port'}")
    # The budget is 10 minutes of 2 CPU cores. Counted in CPU seconds, so that a machine shared with
    # other jobs (which stretches the wall time, not the work) does not fail it.
    assert s['cpu'] < 2 * 600, f"the smoke pipeline used {s['cpu']:.0f} CPU-s ({s['wall']:.0f} s wall); the budget is 10 min x 2 cores"
    missing = [f for fs in readme_files().values() for f in fs if not (s['smoke']/f).exists()]
    assert not missing, f'smat smoke did not write {missing} under _smoke/'
    assert (s['smoke']/'results'/'eval'/'pre_lora.json').exists() and (s['smoke']/'results'/'runs'/'m16_t90'/'summary.json').exists()
    assert json.loads((s['smoke']/'benchmark'/'summary.json').read_text())['source'] == 'synthetic'
    assert json.loads((s['smoke']/'results'/'t1_main.json').read_text())['profile'] == 'smoke'
    assert f"tables and figures in {s['smoke']/'figures'}" in s['stdout'], s['stdout'][-2000:]

def test_smoke_ran_every_stage_with_progress(smoke_run):
    s = smoke_run
    ran = re.findall(r'^\[\s*(\d+)/(\d+)\] (\S+) \.\.\. \((.*)\)$', s['stdout'], re.M)
    stages = pipeline_stages(s['smoke'])
    assert [name for _, _, name, _ in ran] and sorted(name for _, _, name, _ in ran) == sorted(stages), s['stdout'][-3000:]
    assert [int(i) for i, _, _, _ in ran] == list(range(1, len(stages) + 1)) and {int(n) for _, n, _, _ in ran} == {len(stages)}
    assert all(eta.startswith(('about ', 'no estimate yet')) for *_, eta in ran), ran[:3]
    noise = [l for l in (s['stdout'] + s['stderr']).splitlines() if any(n in l for n in NOISE)]
    assert not noise, noise[:5]

def test_smoke_leaves_the_clone_as_it_was(smoke_run):
    s = smoke_run
    assert (git(['status', '--porcelain'], s['clone']), digests(s['clone'])) == s['before']
    assert not (s['clone']/'data').exists(), 'smat smoke created data/ in the clone'
    assert '!! _smoke/' in git(['status', '--porcelain', '--ignored'], s['clone']).splitlines()     # there, and git-ignored

def test_second_reproduce_does_nothing(smoke_run):
    s = smoke_run
    assert run_dvc(s['smoke'])['stages'] == []                                 # plain dvc repro: nothing runs
    r = subprocess.run([str(BIN/'smat'), 'reproduce'], cwd=s['smoke'], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.rstrip().endswith('nothing to run'), r.stdout + r.stderr

def test_f2_diversity_stage(smoke_run):
    d = smoke_run['smoke']
    assert (d/'figures'/'f2_diversity.png').exists() and (d/'results'/'runs'/'div1_smat'/'summary.json').exists()

def test_forced_table_and_figure_stages_rewrite_the_same_bytes(tmp_path):
    "`dvc repro -s -f` of T1 (tables) and F2 (PNG, PDF) on an unchanged clone leaves `git status` clean."
    clone = clone_worktree(tmp_path/'repo')
    stages = ('t1_main', 'f2_diversity')
    assert subprocess.run(['dvc', 'config', 'core.autostage'], cwd=clone, capture_output=True, text=True).stdout.strip() != 'true'
    run_dvc(clone, ('-s', '-f', *stages))        # once, so that dvc.lock holds this working tree's code hashes
    git(['add', '-A'], clone); git(['commit', '-q', '--allow-empty', '-m', 'rerun'], clone)
    before = digests(clone)
    r = run_dvc(clone, ('-s', '-f', *stages))
    assert sorted(r['stages']) == sorted(stages), r
    assert git(['status', '--porcelain'], clone) == '', git(['diff', '--stat'], clone)
    assert digests(clone) == before

def test_committed_foundation_is_the_recipe_and_frozen():
    """The tiny profile's committed foundation ViT (results/pretrain) was made with params.yaml's pretrain.tiny recipe
    (`make foundation` remakes it), loads into the tiny backbone, is small, and its stage is frozen with the file in dvc.lock."""
    from smat_nb.backbones import create_backbone, load_checkpoint
    from smat_nb.core import load_params, stage_params
    d = ROOT/'results'/'pretrain'
    assert sorted(f.name for f in d.iterdir()) == ['backbone.json', 'backbone.safetensors', 'log.jsonl'], sorted(d.iterdir())
    assert (d/'backbone.safetensors').stat().st_size < 10 * 2**20
    params = load_params(ROOT/'params.yaml')
    made = json.loads((d/'backbone.json').read_text())['config']
    recipe = {k: v for k, v in stage_params(params, 'pretrain', 'tiny').items() if k != 'out_dir'}
    assert {k: made[k] for k in recipe} == recipe, 'params.yaml pretrain.tiny changed since results/pretrain was made: run `make foundation`'
    assert [json.loads(l)['epoch'] for l in (d/'log.jsonl').read_text().splitlines()] == list(range(1, recipe['epochs'] + 1))
    bb = stage_params(params, 'backbone', 'tiny')
    load_checkpoint(create_backbone(bb['preset'], img_size=bb['img_size']), d/'backbone.safetensors')
    stage = yaml.safe_load((ROOT/'dvc.yaml').read_text())['stages']['pretrain']
    lock = yaml.safe_load((ROOT/'dvc.lock').read_text())['stages']['pretrain']
    assert stage.get('frozen') is True and stage['outs'] == [{'results/pretrain': {'cache': False}}]
    assert lock['outs'][0]['path'] == 'results/pretrain' and lock['outs'][0]['nfiles'] == 3
    assert 'results/pretrain' not in (ROOT/'.gitignore').read_text()
