"""Reliability (issue 9), end to end on the smoke profile in a scratch folder:

- bad input: one table of cases over data, CLI, params and checkpoints; each raises the right error type,
  names the file / key / value, says the fix, and writes nothing (the folders are byte-identical after);
- interrupted runs: `smat meta-tune` SIGKILLed twice and rerun ends with exactly the uninterrupted run;
- a NaN loss stops the run with the task number, keeps the last good checkpoint, and the CLI says so in a line;
- determinism: the same seed gives the same bits on CPU, another seed other bits;
- safe loading: nothing in the project unpickles a file."""
import contextlib, hashlib, io, json, os, random, re, signal, subprocess, time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from safetensors.torch import save_file

from conftest import ROOT, BIN
import smat_nb.meta_tuning as mt
from smat_nb.backbones import create_backbone
from smat_nb.methods import get_method
from smat_nb.cli import main as smat_main, build_parser
from smat_nb.core import load_params
from smat_nb.data import FolderDomain, render_domain
from smat_nb.training import load_checkpoint, save_checkpoint

# --------------------------------------------------------------------------------------------- workspace

@pytest.fixture(scope='module')
def ws(tmp_path_factory):
    "A scratch copy of params.yaml on the smoke profile, its benchmark, and a (random-init) smoke backbone."
    d = tmp_path_factory.mktemp('reliability')
    text, n = re.subn(r'(?m)^profile: \w+$', 'profile: smoke', (ROOT/'params.yaml').read_text(), count=1)
    assert n == 1, 'params.yaml has no top-level `profile:` line'
    (d/'params.yaml').write_text(text)
    old = os.getcwd(); os.chdir(d)
    try: assert smat_main(['build-benchmark', '--quiet']) == 0
    finally: os.chdir(old)
    torch.manual_seed(0)            # pre-training is not what these tests are about: a seeded random init will do
    bb = create_backbone('smoke', img_size=32)
    ck = d/load_params(d/'params.yaml')['backbone']['checkpoint']
    ck.parent.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in bb.state_dict().items()}, str(ck))
    return d

@pytest.fixture(autouse=True)
def keep_torch_threads():
    "In-process runs set torch's thread count (threads=1); give the rest of the suite its own back."
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)

def snapshot(*dirs) -> dict:
    "Every file (with its sha256) and folder under `dirs`: equal snapshots mean nothing was written."
    out = {}
    for d in dirs:
        for p in sorted(Path(d).rglob('*')):
            out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else 'dir'
    return out

def cli(*argv):
    "Run `smat ARGV` as a user does (one line on stderr, exit status 1), then once more unwrapped to raise the typed error."
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = smat_main(list(argv))
    lines = err.getvalue().strip().splitlines()
    assert rc == 1 and len(lines) == 1 and lines[0].startswith(f'smat {argv[0]}: error: '), \
        f'smat {" ".join(argv)}: exit {rc}, stderr {err.getvalue()!r}'
    assert 'Traceback' not in err.getvalue()
    args = build_parser().parse_args(list(argv))
    args._run(args)

def params_file(ws, t, edit) -> Path:
    "A copy of the workspace's params with `edit(params)` applied, written to `t`/params.yaml."
    p = load_params(ws/'params.yaml'); edit(p)
    f = t/'params.yaml'; f.write_text(yaml.safe_dump(p, sort_keys=False))
    return f

def image_folders(root, sizes=(3, 3, 3, 3, 3)):
    for c, n in enumerate(sizes):
        d = root/f'class{c}'; d.mkdir(parents=True)
        for i in range(n): Image.new('RGB', (8, 8), (10 * c + i,) * 3).save(d/f'{i}.png')
    return root

# --------------------------------------------------------------------------------------------- bad input
# each case: (t, ws) -> (run, error type, fragments naming the culprit, fragment saying the fix)

def missing_data_root(t, ws):
    f = params_file(ws, t, lambda p: p['benchmark'].update(raw_dir=str(t/'no_raw')))
    return (lambda: cli('build-benchmark', '--params', str(f), '--profile', 'tiny', '--quiet'),
            FileNotFoundError, [str(t/'no_raw'), 'raw archive(s) missing'], 'run `smat fetch-data` first')

def missing_image_folder_root(t, ws):
    return (lambda: render_domain(FolderDomain(t/'no_such_folder'), 8, out=t/'x.npz'),
            FileNotFoundError, ['no_such_folder', 'image-folder root not found'], 'set its path in params.yaml')

def empty_class(t, ws):
    r = image_folders(t/'f'); (r/'class5').mkdir()
    return (lambda: render_domain(FolderDomain(r), 8, out=t/'x.npz'),
            ValueError, [str(r/'class5'), "class 'class5' holds no image"], 'add images to the folder or remove it')

def corrupt_image(t, ws):
    r = image_folders(t/'f'); (r/'class2'/'1.png').write_bytes(b'\x89PNG\r\n\x1a\n not an image')
    return (lambda: render_domain(FolderDomain(r), 8, out=t/'x.npz'),
            ValueError, ['class2/1.png', 'corrupt or truncated'], 're-fetch or delete the file')

def truncated_image(t, ws):
    r = image_folders(t/'f')
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    b = io.BytesIO(); Image.fromarray(noise).save(b, format='PNG'); b = b.getvalue()
    (r/'class4'/'0.png').write_bytes(b[:len(b) // 2])
    return (lambda: render_domain(FolderDomain(r), 8, out=t/'x.npz'),
            ValueError, ['class4/0.png', 'corrupt or truncated'], 're-fetch or delete the file')

def class_with_one_image(t, ws):
    r = image_folders(t/'f', sizes=(3, 3, 1, 3, 3))
    return (lambda: render_domain(FolderDomain(r), 8, out=t/'x.npz'),
            ValueError, [str(r), "class 'class2' holds 1 image(s)"], 'add images or remove the class')

def fewer_classes_than_min_ways(t, ws):
    f = params_file(ws, t, lambda p: p['benchmark']['smoke'].update(synthetic_classes=6))
    return (lambda: cli('build-benchmark', '--params', str(f), '--quiet'),     # would overwrite ws/benchmark
            ValueError, ['classes, fewer than the minimum of 5 ways'], 'add classes or lower benchmark.min_ways')

def unknown_method(t, ws):
    return (lambda: cli('meta-tune', '--method', 'smatt', '--quiet'),
            ValueError, ["unknown method 'smatt'"], 'choose one of pmf, softmerge, smat')

def unknown_profile(t, ws):
    return (lambda: cli('meta-tune', '--method', 'smat', '--profile', 'huge', '--quiet'),
            ValueError, ["unknown profile 'huge'"], 'choose one of smoke, tiny, paper')

def tau_out_of_range(t, ws):
    return (lambda: cli('meta-tune', '--method', 'smat', '--quiet', '--set', 'tau=1.0'),
            ValueError, ['meta_tune.tau', 'got 1.0'], 'must be in [0, 1)')

def no_experts(t, ws):
    return (lambda: cli('meta-tune', '--method', 'smat', '--quiet', '--set', 'num_experts=0'),
            ValueError, ['meta_tune.num_experts', 'got 0'], 'must be >= 1')

def negative_lr(t, ws):
    return (lambda: cli('meta-tune', '--method', 'smat', '--quiet', '--set', 'delta_lr=-0.01'),
            ValueError, ['meta_tune.delta_lr', 'got -0.01'], 'must be >= 0')

def unknown_param_key(t, ws):
    return (lambda: cli('meta-tune', '--method', 'smat', '--quiet', '--set', 'tua=0.5'),
            KeyError, ['meta_tune: unknown key(s) tua'], 'allowed: ')

def image_size_not_divisible_by_patch(t, ws):
    f = params_file(ws, t, lambda p: p['backbone']['smoke'].update(img_size=36))
    return (lambda: cli('pretrain', '--params', str(f), '--quiet'),            # would overwrite the backbone
            ValueError, ['img_size=36', 'patch_size=8'], 'set img_size to a multiple of 8 (e.g. 32 or 40)')

def backbone_checkpoint_of_another_architecture(t, ws):
    ck = t/'tiny_arch.safetensors'
    save_file({k: v.contiguous() for k, v in create_backbone('tiny', img_size=32).state_dict().items()}, str(ck))
    f = params_file(ws, t, lambda p: p['backbone'].update(checkpoint=str(ck)))
    return (lambda: cli('meta-tune', '--method', 'smat', '--params', str(f), '--quiet'),
            ValueError, [str(ck), 'embed_dim 128, depth 4', 'backbone.smoke builds a ViT/8 (embed_dim 32, depth 2'],
            'point backbone.smoke.checkpoint at weights of that shape')

def run_checkpoint_of_another_architecture(t, ws):
    bb = create_backbone('smoke', img_size=32)
    learner = lambda m: {f'learner.{k}': v for k, v in get_method('smat').build(bb, mt.MetaTuneConfig(num_experts=m, tau=0.5)).state_dict().items()}
    save_checkpoint(t/'run'/'checkpoints'/'task_00000004', learner(2))
    expect = learner(3)
    return (lambda: load_checkpoint(t/'run'/'checkpoints'/'task_00000004', expect=expect),
            ValueError, ['task_00000004.safetensors', 'another architecture', 'shape mismatches: ['], f"Delete {t/'run'/'checkpoints'}")

def missing_backbone_checkpoint(t, ws):
    f = params_file(ws, t, lambda p: p['backbone'].update(checkpoint=str(t/'gone.safetensors')))
    return (lambda: cli('meta-tune', '--method', 'smat', '--params', str(f), '--quiet'),
            FileNotFoundError, [str(t/'gone.safetensors'), 'backbone checkpoint not found'], 'run `smat pretrain` first')

def missing_model_checkpoint(t, ws):
    return (lambda: cli('evaluate', '--method', 'smat', '--model', 'results/runs/nope/best', '--quiet'),
            FileNotFoundError, ['results/runs/nope/best.json', 'trained model not found'], 'run `smat meta-tune` first')

def missing_params_file(t, ws):
    return (lambda: cli('meta-tune', '--method', 'smat', '--params', str(t/'nope.yaml'), '--quiet'),
            FileNotFoundError, [str(t/'nope.yaml'), 'params file not found'], 'pass --params PATH')

# ---- issue 15: the faults a new user met, and more of their kind

class CLIFailed(Exception):
    "The one stderr line of an `smat` run in a subprocess that failed as it should."

def sub(*argv, fsize=None, code=1):
    "Run the installed `smat ARGV` in a subprocess (optionally with a file-size limit: a full disk); raise CLIFailed(its line)."
    import resource
    limit = (lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))) if fsize else None
    r = subprocess.run([str(BIN/'smat'), *argv], capture_output=True, text=True, preexec_fn=limit)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == code and len(lines) == 1 and lines[0].startswith(f'smat {argv[0]}: '), \
        f'smat {" ".join(argv)}: exit {r.returncode}, stderr {r.stderr[-2000:]!r}'
    raise CLIFailed(lines[0])

def bench_copy(ws, t, damage) -> Path:
    "A params file whose benchmark is a copy in `t`, damaged by `damage(folder)`."
    b = t/'bench'
    import shutil; shutil.copytree(ws/'benchmark', b)
    damage(b)
    return params_file(ws, t, lambda p: p['benchmark'].update(out_dir=str(b)))

def unwritable(t) -> Path:
    "A folder this process cannot write into: read-only for a normal user; sysfs for root (it ignores permissions)."
    if os.geteuid() != 0:
        d = t/'ro'; d.mkdir(); d.chmod(0o555); return d
    assert Path('/sys/kernel').is_dir(), 'no folder that root cannot write into'
    return Path('/sys/kernel')

def a_model(t, name='run') -> Path:
    "A small saved SMAT model (random weights) at t/name/best."
    from smat_nb.methods import save_model
    bb = create_backbone('smoke', img_size=32)
    learner = get_method('smat').build(bb, mt.MetaTuneConfig(num_experts=2, tau=0.5))
    save_model('smat', learner, t/name/'best')
    return t/name/'best'

EVAL = ('evaluate', '--method', 'pixels', '--quiet')

def truncated_backbone_checkpoint(t, ws):
    ck = t/'cut.safetensors'; ck.write_bytes((ws/'results/pretrain/backbone.safetensors').read_bytes()[:1000])
    f = params_file(ws, t, lambda p: p['backbone'].update(checkpoint=str(ck)))
    return (lambda: cli('meta-tune', '--method', 'smat', '--params', str(f), '--quiet', '--out', str(t/'run')),
            ValueError, [str(ck), 'not a readable safetensors file, truncated or corrupt'], 'run `smat pretrain` again')

def truncated_benchmark_file(t, ws):
    def cut(b): f = b/'shapes_a_test.npz'; f.write_bytes(f.read_bytes()[:5000])
    f = bench_copy(ws, t, cut)
    return (lambda: cli(*EVAL, '--params', str(f), '--out', str(t/'m.json')),
            ValueError, [str(t/'bench'/'shapes_a_test.npz'), 'sha256 differs', 'truncated'], 'rebuild with `smat build-benchmark`')

def changed_benchmark_file(t, ws):
    def flip(b):
        f = b/'shapes_b_test.npz'; x = bytearray(f.read_bytes()); x[len(x) // 2] ^= 0xFF; f.write_bytes(bytes(x))
    f = bench_copy(ws, t, flip)
    return (lambda: cli(*EVAL, '--params', str(f), '--out', str(t/'m.json')),
            ValueError, [str(t/'bench'/'shapes_b_test.npz'), 'sha256 differs'], 'rebuild with `smat build-benchmark`')

def unreadable_benchmark_file_without_hash(t, ws):
    def junk(b):
        (b/'shapes_a_test.npz').write_bytes(b'not a zip file')
        s = json.loads((b/'summary.json').read_text()); del s['domains']['shapes_a']['splits']['test']['sha256']
        (b/'summary.json').write_text(json.dumps(s))
    f = bench_copy(ws, t, junk)
    return (lambda: cli(*EVAL, '--params', str(f), '--out', str(t/'m.json')),
            ValueError, [str(t/'bench'/'shapes_a_test.npz'), 'unreadable domain arrays'], 'rebuild with `smat build-benchmark`')

def benchmark_not_built(t, ws):
    f = params_file(ws, t, lambda p: p['benchmark'].update(out_dir=str(t/'nobench')))
    return (lambda: cli(*EVAL, '--params', str(f), '--out', str(t/'m.json')),
            FileNotFoundError, [str(t/'nobench'/'summary.json'), 'no benchmark here'], 'run `smat build-benchmark`')

def benchmark_built_at_another_size(t, ws):
    def both(p): p['benchmark']['smoke']['image_size'] = 40; p['backbone']['smoke']['img_size'] = 40
    f = params_file(ws, t, both)
    return (lambda: cli(*EVAL, '--params', str(f), '--out', str(t/'m.json')),
            ValueError, ['summary.json: built at image_size 32', 'backbone.img_size is 40'], 'rebuild it (smat build-benchmark)')

def run_out_is_a_file(t, ws):
    (t/'notes.txt').write_text('mine')
    return (lambda: cli('meta-tune', '--method', 'smat', '--quiet', '--out', str(t/'notes.txt')),
            ValueError, [str(t/'notes.txt'), 'an existing file'], 'give a folder path')

def eval_out_is_a_folder(t, ws):
    (t/'eval').mkdir()
    return (lambda: cli(*EVAL, '--out', str(t/'eval')), ValueError, [str(t/'eval'), 'a folder'], 'give a file path')

def eval_out_is_an_unrelated_file(t, ws):
    (t/'notes.json').write_text('{"my": "notes"}')
    return (lambda: cli(*EVAL, '--out', str(t/'notes.json')),
            ValueError, [str(t/'notes.json'), 'is not a metrics file of `smat evaluate`'], 'choose another --out')

def eval_out_under_a_file(t, ws):
    (t/'notes.txt').write_text('mine')
    return (lambda: cli(*EVAL, '--out', str(t/'notes.txt'/'m.json')),
            ValueError, [str(t/'notes.txt'), 'is a file, so nothing can be written under it'], 'choose another --out')

def unwritable_run_folder(t, ws):
    d = unwritable(t)
    return (lambda: cli('meta-tune', '--method', 'smat', '--quiet', '--out', str(d/'run')),
            ValueError, [str(d/'run'), f'cannot write in {d}'], 'choose another --out')

def unwritable_metrics_file(t, ws):
    d = unwritable(t)
    return (lambda: cli(*EVAL, '--out', str(d/'m.json')), ValueError, [str(d/'m.json'), f'cannot write in {d}'],
            'choose another --out')

def full_disk(t, ws):
    "The metrics file cannot be written (a 1 KiB file-size limit stands in for a full disk): one line, nothing left."
    return (lambda: sub(*EVAL, '--out', str(t/'m.json'), fsize=1024), CLIFailed, [str(t/'m.json'), 'File too large'],
            'write elsewhere (--out)')

def set_value_not_yaml(t, ws):
    return (lambda: cli('meta-tune', '--method', 'smat', '--quiet', '--set', 'tau=[0.5'),
            ValueError, ["--set 'tau=[0.5'"], 'e.g.')

def set_without_key(t, ws):
    return (lambda: cli('meta-tune', '--method', 'smat', '--quiet', '--set', '=3'), ValueError, ["--set '=3'"], 'e.g.')

def set_value_of_wrong_type(t, ws):
    return (lambda: cli('meta-tune', '--method', 'smat', '--quiet', '--set', 'tau=abc'),
            TypeError, ['meta_tune.tau', "got 'abc'"], 'expected a number')

def negative_threads(t, ws):
    return (lambda: cli('meta-tune', '--method', 'smat', '--quiet', '--set', 'threads=-1'),
            ValueError, ['meta_tune.threads: got -1'], 'pass --set threads=')

def eval_negative_threads(t, ws):
    return (lambda: cli(*EVAL, '--out', str(t/'m.json'), '--set', 'threads=-1'), ValueError, ['evaluate.threads: got -1'],
            'set it in params.yaml (evaluate section)')

def unknown_domain(t, ws):
    return (lambda: cli(*EVAL, '--out', str(t/'m.json'), '--domains', 'nope'),
            ValueError, ["no test domain 'nope'", 'shapes_ood'], 'the test domains are')

def one_way_tasks(t, ws):
    return (lambda: cli('meta-tune', '--method', 'smat', '--quiet', '--out', str(t/'run'), '--set', 'episode_mode=fixed', 'ways=1'),
            ValueError, ['meta_tune.ways: got 1', 'a 1-way task'], 'pass --set ways=')

def zero_ways(t, ws):
    return (lambda: cli('meta-tune', '--method', 'smat', '--quiet', '--out', str(t/'run'), '--set', 'ways=0'),
            ValueError, ['meta_tune.ways: got 0'], 'must be >= 2')

def negative_shots(t, ws):
    return (lambda: cli('meta-tune', '--method', 'smat', '--quiet', '--out', str(t/'run'), '--set', 'shots=-1'),
            ValueError, ['meta_tune.shots: got -1'], 'must be >= 1')

def eval_zero_queries(t, ws):
    return (lambda: cli(*EVAL, '--out', str(t/'m.json'), '--set', 'queries=0'), ValueError, ['evaluate.queries: got 0'], 'must be >= 1')

def no_validation_episodes(t, ws):
    return (lambda: cli('meta-tune', '--method', 'smat', '--quiet', '--out', str(t/'run'), '--set', 'val_episodes=0'),
            ValueError, ['meta_tune.val_episodes: got 0'], 'val_every: 0 skips validation')

def no_test_episodes(t, ws):
    return (lambda: cli(*EVAL, '--out', str(t/'m.json'), '--set', 'episodes=0'), ValueError, ['evaluate.episodes: got 0'], 'must be >= 1')

def empty_lr_grid(t, ws):
    return (lambda: cli('evaluate', '--method', 'pre', '--mode', 'full', '--quiet', '--out', str(t/'m.json'), '--set', 'lr_grid=[]'),
            ValueError, ['evaluate.lr_grid: got []'], 'a non-empty list')

def pixels_fine_tuned(t, ws):
    return (lambda: cli('evaluate', '--method', 'pixels', '--mode', 'full', '--quiet', '--out', str(t/'m.json')),
            ValueError, ["'pixels' has no parameters to fine-tune"], 'use --mode zero-shot')

def unknown_amp(t, ws):
    return (lambda: cli('meta-tune', '--method', 'smat', '--quiet', '--set', 'amp=fp32'),
            ValueError, ["meta_tune.amp: got 'fp32'"], 'one of none, bf16, fp16')

def kd_weight_out_of_range(t, ws):
    return (lambda: cli('meta-tune', '--method', 'smat', '--quiet', '--set', 'kd_weight=2'),
            ValueError, ['meta_tune.kd_weight/kd_teacher_share: got 2'], 'in [0, 1]')

def model_is_a_run_folder(t, ws):
    best = a_model(t)
    return (lambda: cli('evaluate', '--method', 'smat', '--model', str(best.parent), '--quiet', '--out', str(t/'m.json')),
            ValueError, [str(best.parent), 'a folder, not a model'], f'pass {best}')

def pre_model_is_a_folder(t, ws):
    return (lambda: cli('evaluate', '--method', 'pre', '--model', 'results/pretrain', '--quiet', '--out', str(t/'m.json')),
            ValueError, ['results/pretrain: a folder, not a model'], 'pass results/pretrain/backbone.safetensors')

def truncated_model(t, ws):
    best = a_model(t); st = best.with_suffix('.safetensors'); st.write_bytes(st.read_bytes()[:-64])
    return (lambda: cli('evaluate', '--method', 'smat', '--model', str(best), '--quiet', '--out', str(t/'m.json')),
            ValueError, [str(st), 'truncated or corrupt'], 'run the training that wrote best.json again')

def model_weights_missing(t, ws):
    best = a_model(t); best.with_suffix('.safetensors').unlink()
    return (lambda: cli('evaluate', '--method', 'smat', '--model', str(best), '--quiet', '--out', str(t/'m.json')),
            FileNotFoundError, [str(best.with_suffix('.safetensors')), 'the tensors of best.json are missing'], 'missing')

def model_of_an_unknown_method(t, ws):
    best = a_model(t); js = best.with_suffix('.json')
    js.write_text(json.dumps({**json.loads(js.read_text()), 'method': 'maml'}))
    return (lambda: cli('evaluate', '--method', 'smat', '--model', str(best), '--quiet', '--out', str(t/'m.json')),
            ValueError, ["unknown method 'maml'"], 'choose one of')

def tampered_run_checkpoint(t, ws):
    "A resumable checkpoint whose tensors changed after it was written: the rerun refuses it by name."
    bb = create_backbone('smoke', img_size=32)
    learner = get_method('smat').build(bb, mt.MetaTuneConfig(num_experts=8, tau=0.9))
    save_checkpoint(t/'run'/'checkpoints'/'task_00000004', {f'learner.{k}': v for k, v in learner.state_dict().items()})
    st = t/'run'/'checkpoints'/'task_00000004.safetensors'; x = bytearray(st.read_bytes()); x[-1] ^= 1; st.write_bytes(bytes(x))
    return (lambda: cli('meta-tune', '--method', 'smat', '--quiet', '--out', str(t/'run')),
            ValueError, [str(st), 'hash does not match task_00000004.json'], 'truncated or from another run')

def params_missing_a_section(t, ws):
    f = params_file(ws, t, lambda p: p.pop('evaluate'))
    return (lambda: cli(*EVAL, '--params', str(f), '--out', str(t/'m.json')), KeyError, ["params: no section 'evaluate'"],
            'sections are: ')

def params_not_a_mapping(t, ws):
    (t/'params.yaml').write_text('- profile\n- smoke\n')
    return (lambda: cli(*EVAL, '--params', str(t/'params.yaml'), '--out', str(t/'m.json')),
            ValueError, [str(t/'params.yaml'), 'the top level must be a mapping'], 'mapping')

def duplicate_params_key(t, ws):
    text = (ws/'params.yaml').read_text()
    text, n = re.subn(r'(?m)^(meta_tune:.*)$', r'\1\n  seed: 1\n  seed: 2', text, count=1)
    assert n == 1
    (t/'params.yaml').write_text(text)
    return (lambda: cli('meta-tune', '--method', 'smat', '--quiet', '--params', str(t/'params.yaml')),
            ValueError, [str(t/'params.yaml'), "duplicate key 'seed'"], 'keep one of them')

def params_is_a_folder(t, ws):
    return (lambda: cli('meta-tune', '--method', 'smat', '--quiet', '--params', str(t)),
            IsADirectoryError, [f'{t} is a folder, not a params file'], f"pass --params {t/'params.yaml'}")

BAD_INPUT = [missing_data_root, missing_image_folder_root, empty_class, corrupt_image, truncated_image,
             class_with_one_image, fewer_classes_than_min_ways, unknown_method, unknown_profile, tau_out_of_range,
             no_experts, negative_lr, unknown_param_key, image_size_not_divisible_by_patch,
             backbone_checkpoint_of_another_architecture, run_checkpoint_of_another_architecture,
             missing_backbone_checkpoint, missing_model_checkpoint, missing_params_file,
             # issue 15
             truncated_backbone_checkpoint, truncated_benchmark_file, changed_benchmark_file,
             unreadable_benchmark_file_without_hash, benchmark_not_built, benchmark_built_at_another_size, run_out_is_a_file,
             eval_out_is_a_folder, eval_out_is_an_unrelated_file, eval_out_under_a_file, unwritable_run_folder,
             unwritable_metrics_file, full_disk, set_value_not_yaml, set_without_key, set_value_of_wrong_type, negative_threads,
             eval_negative_threads, unknown_domain, one_way_tasks, zero_ways, negative_shots, eval_zero_queries,
             no_validation_episodes, no_test_episodes, empty_lr_grid, pixels_fine_tuned, unknown_amp, kd_weight_out_of_range,
             model_is_a_run_folder, pre_model_is_a_folder, truncated_model, model_weights_missing, model_of_an_unknown_method,
             tampered_run_checkpoint, params_missing_a_section, params_not_a_mapping, duplicate_params_key, params_is_a_folder]

@pytest.mark.parametrize('case', BAD_INPUT, ids=lambda f: f.__name__)
def test_bad_input_names_the_culprit_and_the_fix_and_writes_nothing(case, ws, tmp_path, monkeypatch):
    monkeypatch.chdir(ws)
    run, err, names, fix = case(tmp_path, ws)
    before = snapshot(ws, tmp_path)
    with pytest.raises(err) as e:
        run()
    msg = e.value.args[0] if isinstance(e.value, KeyError) else str(e.value)
    assert '\n' not in msg, f'{case.__name__}: the message is not one line: {msg!r}'
    for s in names: assert s in msg, f'{case.__name__}: the message does not name {s!r}: {msg!r}'
    assert fix in msg, f'{case.__name__}: the message does not say the fix {fix!r}: {msg!r}'
    after = snapshot(ws, tmp_path)
    assert after == before, (f'{case.__name__} wrote or changed: '
                             f'{sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))}')

def test_the_table_covers_the_issue():
    assert len(BAD_INPUT) >= 40 and len({c.__name__ for c in BAD_INPUT}) == len(BAD_INPUT)

@pytest.mark.parametrize('mode, value, ext, rgb', [
    ('L', 200, 'png', (200, 200, 200)),                   # grayscale
    ('LA', (90, 255), 'png', (90, 90, 90)),
    ('RGBA', (0, 0, 255, 255), 'png', (0, 0, 255)),
    ('RGBA', (255, 0, 0, 0), 'png', (0, 0, 0)),           # fully transparent: the black background
    ('CMYK', (0, 0, 0, 0), 'jpg', (255, 255, 255)),       # no ink is white
    ('P', 3, 'png', None),
    ('I;16', 1000, 'png', (0, 0, 0)),                     # 16-bit: a flat image stretches to 0
])
def test_image_modes_are_converted_not_rejected(mode, value, ext, rgb, tmp_path):
    for c in range(5):
        d = tmp_path/'f'/f'c{c}'; d.mkdir(parents=True)
        for i in range(2): Image.new(mode, (10, 12), value).save(d/f'{i}.{ext}')
    ad = render_domain(FolderDomain(tmp_path/'f'), 8, out=tmp_path/'x.npz')
    assert ad.images.shape == (10, 8, 8, 3) and ad.images.dtype == np.uint8
    if rgb is not None: assert tuple(int(v) for v in ad.images[0, 4, 4]) == rgb
    assert (tmp_path/'x.npz').exists()

# --------------------------------------------------------------------------------------------- meta-tuning runs

SET = ['tasks=96', 'checkpoint_every=4', 'val_every=8', 'threads=1']

def smat_cmd(out, *more):
    return [str(BIN/'smat'), 'meta-tune', '--method', 'smat', '--quiet', '--out', str(out), '--set', *SET, *more]

def run_to_end(ws, out, *more):
    r = subprocess.run(smat_cmd(out, *more), cwd=ws, capture_output=True, text=True)    # no wall-clock limit: a busy machine is slow, not wrong
    assert r.returncode == 0, r.stderr[-3000:]
    return out

@pytest.fixture(scope='module')
def reference(ws):
    "An uninterrupted run (seed 0)."
    return run_to_end(ws, ws/'runs'/'reference')

def sha(p): return hashlib.sha256(Path(p).read_bytes()).hexdigest()

def record(out) -> dict:
    "Everything a run leaves that must be reproducible: the summary without its timing, logs, model bytes."
    s = json.loads((out/'summary.json').read_text())
    s.pop('seconds_per_task')
    return {'summary': s, 'log.jsonl': (out/'log.jsonl').read_text(), 'val.jsonl': (out/'val.jsonl').read_text(),
            **{f: sha(out/f) for f in ('final.safetensors', 'best.safetensors')},
            **{f: json.loads((out/f).read_text()) for f in ('final.json', 'best.json')}}

def assert_same_run(a, b):
    ra, rb = record(a), record(b)
    for k in ra: assert ra[k] == rb[k], f'{k} differs between {a} and {b}'

def leftovers(out) -> list:
    "Temporary files of atomic writes (.NAME.XXXXXXXX.SUFFIX) and checkpoints that outlived the run."
    return sorted(str(p.relative_to(out)) for p in out.rglob('*') if p.is_file() and
                  (p.name.startswith('.') or p.parent.name == 'checkpoints'))

def checkpoints(out) -> list:
    return sorted(int(p.stem.split('_')[1]) for p in (out/'checkpoints').glob('task_*.json'))

def wait_for(cond, proc):
    "Poll `cond()` until it is truthy; None if `proc` ended first (it always ends: no wall-clock limit is needed)."
    while True:
        v = cond()
        if v: return v
        if proc.poll() is not None: return None
        time.sleep(0.005)

def test_sigkill_at_any_point_then_rerun_equals_the_uninterrupted_run(ws, reference):
    out, rng = ws/'runs'/'killed', random.Random(9)
    # 1. kill as soon as the first checkpoint is complete (its JSON is written last)
    p = subprocess.Popen(smat_cmd(out), cwd=ws, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = wait_for(lambda: checkpoints(out), p)
    p.send_signal(signal.SIGKILL); p.wait()
    assert first and p.returncode == -signal.SIGKILL, 'the run ended before its first checkpoint'
    assert not (out/'summary.json').exists() and not (out/'final.json').exists()
    log = (out/'log.jsonl').read_text().splitlines()
    assert len(log) >= first[-1]
    # mark a line the checkpoint covers: a rerun that resumes keeps it, one that starts over would drop it
    rec = json.loads(log[0]); rec['marker'] = 'kept by the resume'
    (out/'log.jsonl').write_text('\n'.join([json.dumps(rec, sort_keys=True)] + log[1:]) + '\n')
    # 2. rerun, and kill it again at a random moment after it has checkpointed past the first kill
    p = subprocess.Popen(smat_cmd(out), cwd=ws, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: [n for n in checkpoints(out) if n > max(first)], p)
    time.sleep(rng.uniform(0, 0.3))
    p.send_signal(signal.SIGKILL); p.wait()
    assert p.returncode in (0, -signal.SIGKILL)
    # 3. rerun to the end
    run_to_end(ws, out)
    lines = (out/'log.jsonl').read_text().splitlines()
    assert json.loads(lines[0]).pop('marker') == 'kept by the resume', 'the rerun started over instead of resuming'
    (out/'log.jsonl').write_text('\n'.join([json.dumps({k: v for k, v in json.loads(lines[0]).items() if k != 'marker'},
                                                       sort_keys=True)] + lines[1:]) + '\n')
    assert_same_run(out, reference)
    assert len(lines) == 96 and json.loads((out/'summary.json').read_text())['tasks'] == 96
    assert leftovers(out) == [], f'left behind: {leftovers(out)}'
    assert leftovers(reference) == []

def test_ctrl_c_says_interrupted_exits_130_and_the_rerun_resumes(ws, reference):
    out = ws/'runs'/'ctrl_c'
    p = subprocess.Popen(smat_cmd(out), cwd=ws, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    first = wait_for(lambda: checkpoints(out), p)
    p.send_signal(signal.SIGINT)
    err = p.communicate()[1]
    assert first and p.returncode == 130, f'exit {p.returncode}: {err[-2000:]}'
    assert err.strip().splitlines() == ['smat meta-tune: interrupted; rerun resumes from the last checkpoint'], err
    assert not (out/'summary.json').exists() and not (out/'final.json').exists()
    assert not [q for q in out.rglob('.*') if q.is_file()], 'a temporary file of an atomic write was left behind'
    run_to_end(ws, out)
    assert_same_run(out, reference)
    assert leftovers(out) == []

def test_same_seed_same_bits_other_seed_other_bits(ws, reference):
    same = run_to_end(ws, ws/'runs'/'same_seed')
    assert_same_run(same, reference)
    other = run_to_end(ws, ws/'runs'/'seed_1', 'seed=1')
    a, b = record(reference), record(other)
    for k in ('log.jsonl', 'val.jsonl', 'final.safetensors'): assert a[k] != b[k], f'{k}: seed 1 gave the bits of seed 0'
    assert a['summary']['final_loss'] != b['summary']['final_loss']
    assert (a['summary']['config']['seed'], b['summary']['config']['seed']) == (0, 1)

def test_nan_loss_stops_the_run_keeps_the_last_checkpoint_and_the_rerun_recovers(ws, reference, monkeypatch, capsys):
    monkeypatch.chdir(ws)
    out = ws/'runs'/'nan'
    real = mt.prepare_task
    def poisoned(ep, cfg, index, device=None, train=True):
        xs, ys, xq, yq = real(ep, cfg, index, device, train)
        if train and index == 10: xq = torch.full_like(xq, float('nan'))    # task 10: the query images turn NaN
        return xs, ys, xq, yq
    monkeypatch.setattr(mt, 'prepare_task', poisoned)
    argv = ['meta-tune', '--method', 'smat', '--quiet', '--out', str(out), '--set', *SET]
    # the CLI: one clear line, exit 1, no traceback
    assert smat_main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith('smat meta-tune: error: task 10: non-finite loss terms') and err.count('\n') == 1, err
    assert 'The last checkpoint is kept' in err and 'lower the learning rates' in err and 'Traceback' not in err
    # the library: a FloatingPointError naming the task; a rerun resumes from the kept checkpoint and stops again
    with pytest.raises(FloatingPointError, match=r'^task 10: non-finite loss terms \{.loss.: nan\}'):
        mt.run_meta_tune(load_params('params.yaml'), 'smat', out=out, progress=False,
                         overrides={'tasks': 96, 'checkpoint_every': 4, 'val_every': 8, 'threads': 1})
    assert checkpoints(out) == [8], 'the last good checkpoint (task 8, the last before task 10) must stay'
    tensors, state, meta = load_checkpoint(out/'checkpoints'/'task_00000008')     # intact: its sha256 is checked
    assert state['update'] == 4 and meta['method'] == 'smat' and meta['config']['tasks'] == 96
    assert all(torch.isfinite(v).all() for v in tensors.values() if v.is_floating_point())
    assert not (out/'summary.json').exists() and not (out/'final.json').exists()
    assert [json.loads(l)['task'] for l in (out/'log.jsonl').read_text().splitlines()] == list(range(10))   # tasks 8, 9 ran; the checkpoint does not cover them
    # the cause removed, the rerun resumes from task 8 and ends exactly where an undisturbed run does
    monkeypatch.setattr(mt, 'prepare_task', real)
    assert smat_main(argv) == 0
    assert_same_run(out, reference)
    assert leftovers(out) == []

# --------------------------------------------------------------------------------------------- safe loading

UNSAFE = [(re.compile(r'\b(c?pickle|_pickle)\.(load|loads|Unpickler)\b'), 'unpickles (pickle.load)'),
          (re.compile(r'\bjoblib\.load\b'), 'unpickles (joblib.load)'),
          (re.compile(r'\b(import|from)\s+dill\b|\bdill\.'), 'uses dill'),
          (re.compile(r'\bread_pickle\b'), 'unpickles (pandas.read_pickle)'),
          (re.compile(r'\bshelve\.open\b'), 'unpickles (shelve)'),
          (re.compile(r'allow_pickle\s*=\s*True'), 'np.load with allow_pickle=True'),
          (re.compile(r'\bload_state_dict_from_url\b|\btimm\.models\.load_checkpoint\b'), 'third-party torch.load without weights_only')]
TORCH_LOAD = re.compile(r'\btorch\.load\s*\(')

def _call_args(text, start):
    "The text of a call's arguments, from the '(' at `start` to its matching ')'."
    depth = 0
    for i in range(start, len(text)):
        depth += {'(': 1, ')': -1}.get(text[i], 0)
        if depth == 0: return text[start:i + 1]
    return text[start:]

def unsafe_loads(text: str) -> list:
    "(line, what) for every way `text` could unpickle a file."
    line = lambda pos: text.count('\n', 0, pos) + 1
    found = [(line(m.start()), what) for rx, what in UNSAFE for m in rx.finditer(text)]
    for m in TORCH_LOAD.finditer(text):
        if not re.search(r'weights_only\s*=\s*True', _call_args(text, m.end() - 1)):
            found.append((line(m.start()), 'torch.load without weights_only=True'))
    return sorted(found)

def project_sources():
    "(label, text) of every library module, notebook code cell and test (this file excepted: it holds the patterns)."
    for p in sorted((ROOT/'smat_nb').glob('*.py')) + sorted(p for p in (ROOT/'tests').glob('*.py') if p.name != Path(__file__).name):
        yield str(p.relative_to(ROOT)), p.read_text()
    for p in sorted((ROOT/'nbs').rglob('*.ipynb')):
        for i, c in enumerate(json.loads(p.read_text())['cells']):
            if c['cell_type'] == 'code': yield f'{p.relative_to(ROOT)} cell {i}', ''.join(c['source'])

def test_the_unpickling_scanner_finds_what_it_must():
    src = ('import pickle\nx = pickle.load(f)\nsd = torch.load(p)\nok = torch.load(p, map_location="cpu",\n'
           '    weights_only=True)\nbad = torch.load(p, weights_only=False)\na = np.load(p, allow_pickle=True)\n'
           'b = np.load(p)\nimport dill\nm = joblib.load(p)\n')
    assert unsafe_loads(src) == [(2, 'unpickles (pickle.load)'), (3, 'torch.load without weights_only=True'),
                                 (6, 'torch.load without weights_only=True'), (7, 'np.load with allow_pickle=True'),
                                 (9, 'uses dill'), (10, 'unpickles (joblib.load)')]

def test_nothing_in_the_project_unpickles_a_file():
    sources = list(project_sources())
    assert len(sources) > 50 and any(l.startswith('smat_nb/backbones.py') for l, _ in sources)
    bad = [f'{label} line {n}: {what}' for label, text in sources for n, what in unsafe_loads(text)]
    assert not bad, 'unsafe loading (use safetensors + JSON; torch.load only with weights_only=True):\n' + '\n'.join(bad)
    uses = [label for label, text in sources if TORCH_LOAD.search(text)]
    assert 'smat_nb/backbones.py' in uses        # the one third-party reader, and it passes weights_only=True

def _interrupted_then_resumed(ws, name, first: dict, again: list, capsys):
    "Stop a smoke SMAT run after 3 updates (first settings), resume it with `again` (--set pairs); (rc, stderr, before, after)."
    params, out = load_params('params.yaml'), ws/'runs'/name
    cfg, _ = mt.meta_tune_config(params, None, {'tasks': 24, 'checkpoint_every': 4, 'threads': 1, **first})
    train = mt.domain_samplers(params, None, 'id', 'train', seed=0, mode='fixed', ways=5, shots=2, queries=2, train=True)
    assert mt.meta_tune('smat', mt.load_backbone(params), train, {}, cfg, out, progress=False, stop_after=3) is None
    before = snapshot(out)
    rc = smat_main(['meta-tune', '--method', 'smat', '--quiet', '--out', str(out),
                    '--set', 'tasks=24', 'checkpoint_every=4', 'threads=1', *again])
    return rc, capsys.readouterr().err, out, before

def test_resuming_a_run_with_another_architecture_is_refused_by_name(ws, monkeypatch, capsys):
    monkeypatch.chdir(ws)
    rc, err, out, before = _interrupted_then_resumed(ws, 'arch', {'num_experts': 2}, ['num_experts=3'], capsys)
    assert rc == 1 and err.count('\n') == 1 and 'task_00000004.safetensors: checkpoint from another architecture' in err, err
    assert f'Delete {out/"checkpoints"}' in err and snapshot(out) == before

def test_resuming_with_other_settings_is_refused(ws, monkeypatch, capsys):
    "Same architecture, another tau: resuming would mix two settings, so it is refused by name."
    monkeypatch.chdir(ws)
    rc, err, out, before = _interrupted_then_resumed(ws, 'tau', {}, ['tau=0.3'], capsys)
    assert rc == 1 and 'other settings (tau)' in err and f'Delete {out/"checkpoints"}' in err, err
    assert snapshot(out) == before
