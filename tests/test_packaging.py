"""`pip wheel .` builds a wheel that installs in a clean venv; `import smat_nb` and `smat` work; the wheel carries the
licence and the default params.yaml, and the installed `smat init` writes it outside the repository."""
import subprocess, sys, sysconfig, zipfile
from pathlib import Path

import pytest
import yaml

import smat_nb
from conftest import ROOT

def _run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    assert r.returncode == 0, f"{' '.join(map(str, cmd))}\n{r.stdout}\n{r.stderr}"
    return r.stdout

@pytest.fixture(scope='module')
def wheel(tmp_path_factory):
    wheels = tmp_path_factory.mktemp('wheels')
    _run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '-w', wheels, ROOT])
    whl, = wheels.glob('smat_nb-*.whl')
    return whl

@pytest.fixture(scope='module')
def venv(wheel, tmp_path_factory):
    "A clean venv with the wheel installed and, after `import smat_nb` is shown to need none, the dependencies visible."
    tmp = tmp_path_factory.mktemp('clean')
    venv = tmp/'venv'
    _run([sys.executable, '-m', 'venv', '--without-pip', venv])
    vpy = venv/'bin'/'python'
    # install the wheel with our pip into the clean venv, dependencies left out
    _run([sys.executable, '-m', 'pip', '--python', vpy, 'install', '--no-deps', '--no-index', wheel])
    out = _run([vpy, '-c', 'import smat_nb, pathlib; print(smat_nb.__version__, pathlib.Path(smat_nb.__file__).parent)'], cwd=tmp)
    ver, where = out.split()
    assert ver == smat_nb.__version__ and str(venv) in where, out
    # with the dependencies made visible (appended after the venv's own packages), the console script runs
    site = Path(_run([vpy, '-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])']).strip())
    (site/'_deps.pth').write_text(sysconfig.get_paths()['purelib'] + '\n')
    return venv

def test_wheel_contents(wheel):
    z = zipfile.ZipFile(wheel)
    names = z.namelist()
    assert 'smat_nb/__init__.py' in names and 'smat_nb/core.py' in names
    meta = z.read(next(n for n in names if n.endswith('METADATA'))).decode()
    for dep in ('torch', 'timm', 'safetensors'): assert f'Requires-Dist: {dep}' in meta, meta
    assert 'License-Expression: Apache-2.0' in meta and 'License-File: LICENSE' in meta, meta
    ep = z.read(next(n for n in names if n.endswith('entry_points.txt'))).decode()
    assert 'smat = smat_nb.cli:main' in ep
    lic = next((n for n in names if n.endswith('.dist-info/licenses/LICENSE')), None)
    assert lic and z.read(lic) == (ROOT/'LICENSE').read_bytes(), names
    text = (ROOT/'LICENSE').read_text()
    assert 'Apache License' in text and 'Version 2.0, January 2004' in text and 'END OF TERMS AND CONDITIONS' in text
    # the default params `smat init` writes: the repository's params.yaml, byte for byte (copied by setup.py's build_py)
    assert z.read('smat_nb/default_params.yaml') == (ROOT/'params.yaml').read_bytes()

def test_wheel_installs_in_clean_venv(venv, tmp_path):
    out = _run([venv/'bin'/'smat', '--version'], cwd=tmp_path)
    assert out.strip() == f'smat_nb {smat_nb.__version__}'
    out = _run([venv/'bin'/'smat', '--help'], cwd=tmp_path)
    assert 'init' in out and 'meta-tune' in out

def test_installed_smat_init_outside_the_repository(venv, tmp_path):
    smat, vpy = venv/'bin'/'smat', venv/'bin'/'python'
    shipped = Path(_run([vpy, '-c', 'import smat_nb.cli as c; print(c.default_params_path())'], cwd=tmp_path).strip())
    assert shipped.name == 'default_params.yaml' and str(venv) in str(shipped), shipped
    for umask, mode in ((0o022, 0o644), (0o077, 0o600)):
        d = tmp_path/f'umask{umask:03o}'; d.mkdir()
        assert _run([smat, 'init'], cwd=d, umask=umask) == 'wrote params.yaml\n'
        written = d/'params.yaml'
        assert written.read_bytes() == shipped.read_bytes() == (ROOT/'params.yaml').read_bytes()
        assert written.stat().st_mode & 0o777 == mode, (oct(umask), oct(written.stat().st_mode))
        # it loads as the installed library reads it, and the next step finds it
        out = _run([vpy, '-c', 'from smat_nb.core import load_params; print(load_params()["profile"])'], cwd=d)
        assert out.strip() == yaml.safe_load(written.read_text())['profile'] == 'tiny'
    r = subprocess.run([smat, 'init'], cwd=d, capture_output=True, text=True)
    assert r.returncode == 1 and r.stderr == ('smat init: error: params.yaml exists; pass --force to overwrite it, '
                                              'or --out another path\n'), r.stderr
