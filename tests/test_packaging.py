"""`pip wheel .` builds a wheel that installs in a clean venv; `import smat_nb` and `smat` work."""
import os, subprocess, sys, sysconfig, zipfile
from pathlib import Path

import smat_nb
from conftest import ROOT

def _run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    assert r.returncode == 0, f"{' '.join(map(str, cmd))}\n{r.stdout}\n{r.stderr}"
    return r.stdout

def test_wheel_installs_in_clean_venv(tmp_path):
    wheels = tmp_path/'wheels'
    _run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '-w', wheels, ROOT])
    whl, = wheels.glob('smat_nb-*.whl')
    names = zipfile.ZipFile(whl).namelist()
    assert 'smat_nb/__init__.py' in names and 'smat_nb/core.py' in names
    meta = zipfile.ZipFile(whl).read(next(n for n in names if n.endswith('METADATA'))).decode()
    for dep in ('torch', 'timm', 'safetensors'): assert f'Requires-Dist: {dep}' in meta, meta
    ep = zipfile.ZipFile(whl).read(next(n for n in names if n.endswith('entry_points.txt'))).decode()
    assert 'smat = smat_nb.cli:main' in ep

    venv = tmp_path/'venv'
    _run([sys.executable, '-m', 'venv', '--without-pip', venv])
    vpy = venv/'bin'/'python'
    # install the wheel with our pip into the clean venv, dependencies left out
    _run([sys.executable, '-m', 'pip', '--python', vpy, 'install', '--no-deps', '--no-index', whl])
    out = _run([vpy, '-c', 'import smat_nb, pathlib; print(smat_nb.__version__, pathlib.Path(smat_nb.__file__).parent)'], cwd=tmp_path)
    ver, where = out.split()
    assert ver == smat_nb.__version__ and str(venv) in where, out
    # with the dependencies made visible (appended after the venv's own packages), the console script runs
    site = Path(_run([vpy, '-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])']).strip())
    (site/'_deps.pth').write_text(sysconfig.get_paths()['purelib'] + '\n')
    out = _run([venv/'bin'/'smat', '--version'], cwd=tmp_path)
    assert out.strip() == f'smat_nb {smat_nb.__version__}'
