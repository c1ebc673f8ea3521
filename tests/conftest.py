import os, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent          # the venv that runs pytest

os.environ.setdefault('MPLBACKEND', 'Agg')
os.environ.setdefault('DVC_NO_ANALYTICS', '1')
# Tools (nbdev-export, papermill, dvc, smat) are taken from the same venv as pytest.
os.environ['PATH'] = f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"
