"""The installed `smat` command: --help and --version everywhere, a fast top-level --help, `smat init`, and one line
(never a traceback) for every fault."""
import errno, importlib, importlib.util, os, subprocess, sys
from pathlib import Path
import pytest
import yaml
from smat_nb.cli import build_parser, COMMANDS, COMMAND_INDEX, COMMAND_MODULES, default_params_path, main
import smat_nb
import layering
from conftest import ROOT

SMAT = str(Path(sys.executable).parent/'smat')
# being written concurrently (nbs/20_reproduce.ipynb): until its module exists, its index entries are not checked
NOT_YET = {'smat_nb.reproduce'}

def _smat(*args, **kw):
    return subprocess.run([SMAT, *args], capture_output=True, text=True, **kw)

def test_version_and_help():
    r = _smat('--version'); assert r.returncode == 0 and r.stdout.strip() == f'smat_nb {smat_nb.__version__}'
    r = _smat('--help'); assert r.returncode == 0
    for name in ('init', 'info', 'fetch-data', 'build-benchmark', 'pretrain', 'meta-tune', 'evaluate', 'reproduce', 'smoke'):
        assert name in r.stdout, name

def test_every_subcommand_has_help():
    build_parser()
    assert len(COMMANDS) >= 6
    for name in COMMANDS:
        with pytest.raises(SystemExit) as e: main([name, '--help'])
        assert e.value.code == 0, name

def test_unknown_method_is_a_clear_error(capsys):
    rc = main(['meta-tune', '--method', 'maml', '--params', str(ROOT/'params.yaml')])
    assert rc == 1 and "unknown method 'maml'" in capsys.readouterr().err

# --------------------------------------------------------------------------------------------- the static index

def test_command_index_matches_what_the_modules_register():
    "COMMAND_INDEX (what `smat --help` lists without importing anything) says exactly what the modules register."
    missing = {m for m in COMMAND_MODULES if importlib.util.find_spec(m) is None}
    assert missing <= NOT_YET, f'COMMAND_MODULES names modules that do not exist: {sorted(missing - NOT_YET)}'
    for m in COMMAND_MODULES:
        if m not in missing: importlib.import_module(m)
    registered = {n: (fn.__module__, help) for n, (help, fn) in COMMANDS.items() if not n.startswith('_')}
    indexed = {n: (m, h) for n, (m, h) in COMMAND_INDEX.items() if m not in missing}
    assert registered == indexed, (f'only registered: {sorted(set(registered) - set(indexed))}; only indexed: '
                                   f'{sorted(set(indexed) - set(registered))}; differ: '
                                   f'{[n for n in set(registered) & set(indexed) if registered[n] != indexed[n]]}')
    # and every @command(...) anywhere in the package (read from the source) is in the index
    in_source = {n: f'smat_nb.{m}' for n, m in layering.command_registry(ROOT/'smat_nb').items()}
    assert in_source == {n: m for n, (m, _) in indexed.items()}, in_source
    assert {'reproduce', 'smoke'} <= set(COMMAND_INDEX) and 'smat_nb.reproduce' in COMMAND_MODULES

PROBE = ("import sys, smat_nb.cli as c\n"
         "try: c.main(sys.argv[1:])\n"
         "except SystemExit as e: assert e.code == 0, e.code\n"
         "print(sorted(m for m in ('torch', 'timm', 'numpy') if m in sys.modules))")

def _loaded_after(*argv):
    r = subprocess.run([sys.executable, '-c', PROBE, *argv], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r.stdout, r.stdout.strip().splitlines()[-1]

@pytest.mark.parametrize('argv', [['--help'], ['--version'], ['info', '--help'], ['init', '--help']])
def test_help_loads_neither_torch_nor_timm(argv):
    out, loaded = _loaded_after(*argv)
    assert loaded == '[]', f'smat {" ".join(argv)} imported {loaded}'
    if argv == ['--help']: assert 'meta-tune' in out and 'reproduce' in out

def test_a_named_subcommand_gets_its_own_arguments():
    "`smat meta-tune --help` imports its module (here, torch comes in: the probe above can see it) and shows its options."
    out, loaded = _loaded_after('meta-tune', '--help')
    assert 'torch' in loaded and '--method' in out and '--set' in out, out

# --------------------------------------------------------------------------------------------- one line per fault

def _fault(monkeypatch, capsys, exc, resumable=False):
    "(exit status, stderr) of `smat _fault`, a throw-away subcommand that raises `exc` (or calls it, when a function)."
    def run(args):
        if callable(exc): exc()
        raise exc
    run.resumable = resumable
    monkeypatch.setitem(COMMANDS, '_fault', ('test only', run))
    rc = main(['_fault'])
    return rc, capsys.readouterr().err

def _npz_truncated(d):
    import numpy as np
    z = d/'a.npz'; np.savez(z, a=np.zeros(64)); z.write_bytes(z.read_bytes()[:100])
    return lambda: np.load(z)

def _safetensors_truncated(d):
    import torch
    from safetensors.torch import save_file, load_file
    f = d/'m.safetensors'; save_file({'w': torch.zeros(64)}, str(f)); f.write_bytes(f.read_bytes()[:60])
    return lambda: load_file(str(f))

def _yaml_file(d):
    f = d/'c.yaml'; f.write_text('a: [1')
    def load():
        with open(f) as fh: return yaml.safe_load(fh)      # PyYAML's marks then carry the file's name
    return load

FAULTS = {   # name: (exception or a function of tmp_path giving a function that raises, fragments of the one line)
    'no space': (OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), 'runs/smat/state.safetensors'),
                 ['runs/smat/state.safetensors: No space left on device [ENOSPC]', 'free some space, or write elsewhere (--out)']),
    'file too large': (OSError(errno.EFBIG, os.strerror(errno.EFBIG), 'b.npz'),
                       ['b.npz: File too large [EFBIG]', 'cannot hold a file this large']),
    'read-only folder': (PermissionError(errno.EACCES, os.strerror(errno.EACCES), 'ro/m.json'),
                         ['ro/m.json: Permission denied [EACCES]', 'check the permissions']),
    'read-only file system': (OSError(errno.EROFS, os.strerror(errno.EROFS), '/mnt/x'), ['/mnt/x: Read-only file system [EROFS]']),
    'folder in the way': (IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), 'out'), ['out: Is a directory [EISDIR]']),
    'exists': (FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), 'a'), ['a: File exists [EEXIST]']),
    'own message': (FileNotFoundError('x.npz: missing; run `smat build-benchmark`'), ['error: x.npz: missing; run `smat build-benchmark`\n']),
    'several lines': (ValueError('first line\n   second line\n'), ['error: first line second line\n']),
    'key': (KeyError('meta_tune: unknown key(s) tua'), ['error: meta_tune: unknown key(s) tua\n']),
    'yaml': (lambda d: lambda: yaml.safe_load('a: [1\n'), ["not valid YAML (line 2, column 1: expected ',' or ']'"]),
    'yaml in a file': (_yaml_file, ["c.yaml: not valid YAML (line 1, column 6: expected ',' or ']'"]),
    'zip': (_npz_truncated, ['an unreadable .npz file (File is not a zip file): truncated or corrupt; delete it']),
    'safetensors': (_safetensors_truncated, ['an unreadable .safetensors file (', 'truncated or corrupt; delete it']),
}

@pytest.mark.parametrize('case', FAULTS)
def test_a_fault_is_one_line(case, monkeypatch, capsys, tmp_path):
    exc, wanted = FAULTS[case]
    if callable(exc) and not isinstance(exc, BaseException): exc = exc(tmp_path)
    rc, err = _fault(monkeypatch, capsys, exc)
    assert rc == 1 and err.startswith('smat _fault: error: ') and err.count('\n') == 1 and 'Traceback' not in err, err
    for w in wanted: assert w in err, (w, err)

def test_interrupt(monkeypatch, capsys):
    assert _fault(monkeypatch, capsys, KeyboardInterrupt()) == (130, 'smat _fault: interrupted\n')
    assert _fault(monkeypatch, capsys, KeyboardInterrupt(), resumable=True) == \
        (130, 'smat _fault: interrupted; rerun resumes from the last checkpoint\n')

@pytest.mark.parametrize('name', ['pretrain', 'meta-tune'])
def test_resumable_subcommands_say_so_on_ctrl_c(name, monkeypatch, capsys):
    build_parser([name])
    fn = COMMANDS[name][1]
    assert getattr(fn, 'resumable', False), f"{fn.__module__}: register {name} with @command({name!r}, ..., resumable=True)"
    def interrupted(args): raise KeyboardInterrupt
    interrupted.resumable = fn.resumable
    monkeypatch.setitem(COMMANDS, name, (COMMANDS[name][0], interrupted))
    assert main([name]) == 130 and capsys.readouterr().err == f'smat {name}: interrupted; rerun resumes from the last checkpoint\n'

def test_parse_sets_error_is_one_line():
    r = _smat('meta-tune', '--method', 'smat', '--params', str(ROOT/'params.yaml'), '--set', 'tau=[0.5')
    assert r.returncode == 1 and r.stderr.count('\n') == 1, r.stderr
    assert r.stderr.startswith("smat meta-tune: error: --set 'tau=[0.5': the value is not valid YAML") and "--set tau=0.5" in r.stderr

# --------------------------------------------------------------------------------------------- params files, `smat init`

def test_params_errors_name_the_fix(tmp_path):
    r = _smat('build-benchmark', '--quiet', cwd=tmp_path)
    assert r.returncode == 1 and r.stderr == (f'smat build-benchmark: error: no params.yaml in {tmp_path}; run `smat init` '
                                              'to write the default one, or pass --params PATH\n'), r.stderr
    r = _smat('build-benchmark', '--quiet', '--params', str(tmp_path), cwd=tmp_path)
    assert r.returncode == 1 and r.stderr == (f'smat build-benchmark: error: {tmp_path} is a folder, not a params file; '
                                              f'pass --params {tmp_path}/params.yaml\n'), r.stderr
    (tmp_path/'params.yaml').write_text('profile: smoke\nbenchmark:\n  seed: 0\n  seed: 1\n')
    r = _smat('build-benchmark', '--quiet', cwd=tmp_path)
    assert r.returncode == 1 and r.stderr == ("smat build-benchmark: error: params.yaml:4: duplicate key 'seed' "
                                              "(first at line 3); keep one of them\n"), r.stderr

def test_init_writes_the_default_params(tmp_path):
    r = _smat('init', cwd=tmp_path, umask=0o022)
    assert r.returncode == 0 and r.stdout == 'wrote params.yaml\n', r.stderr
    out = tmp_path/'params.yaml'
    assert out.read_bytes() == (ROOT/'params.yaml').read_bytes() == default_params_path().read_bytes()
    assert out.stat().st_mode & 0o777 == 0o644
    r = _smat('init', cwd=tmp_path)
    assert r.returncode == 1 and r.stderr == ('smat init: error: params.yaml exists; pass --force to overwrite it, '
                                              'or --out another path\n'), r.stderr
    r = _smat('init', '--force', '--profile', 'smoke', '--out', 'sub/p.yaml', cwd=tmp_path, umask=0o077)
    assert r.returncode == 0, r.stderr
    p = tmp_path/'sub'/'p.yaml'
    assert yaml.safe_load(p.read_text())['profile'] == 'smoke' and p.stat().st_mode & 0o777 == 0o600
    r = _smat('init', '--profile', 'huge', cwd=tmp_path)
    assert r.returncode == 2 and "invalid choice: 'huge'" in r.stderr

@pytest.mark.skipif(os.geteuid() == 0, reason='root writes into read-only folders')
def test_init_into_a_read_only_folder(tmp_path):
    ro = tmp_path/'ro'; ro.mkdir(); ro.chmod(0o555)
    r = _smat('init', '--out', 'ro/params.yaml', cwd=tmp_path)
    assert r.returncode == 1 and r.stderr.startswith('smat init: error: ro/params.yaml: Permission denied [EACCES]'), r.stderr
    assert list(ro.iterdir()) == []
