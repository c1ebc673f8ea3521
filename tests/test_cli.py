"""The installed `smat` command: --help and --version everywhere, clear errors for bad input."""
import subprocess, sys
from pathlib import Path
import pytest
from smat_nb.cli import build_parser, COMMANDS, main
import smat_nb

def _smat(*args):
    return subprocess.run([str(Path(sys.executable).parent/'smat'), *args], capture_output=True, text=True)

def test_version_and_help():
    r = _smat('--version'); assert r.returncode == 0 and r.stdout.strip() == f'smat_nb {smat_nb.__version__}'
    r = _smat('--help'); assert r.returncode == 0
    for name in ('info', 'fetch-data', 'build-benchmark', 'pretrain', 'meta-tune', 'evaluate'):
        assert name in r.stdout, name

def test_every_subcommand_has_help():
    build_parser()
    assert len(COMMANDS) >= 6
    for name in COMMANDS:
        with pytest.raises(SystemExit) as e: main([name, '--help'])
        assert e.value.code == 0, name

def test_unknown_method_is_a_clear_error(capsys):
    rc = main(['meta-tune', '--method', 'maml', '--params', 'params.yaml'])
    assert rc == 1 and "unknown method 'maml'" in capsys.readouterr().err
