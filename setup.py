"""Build hook: everything about the build is in pyproject.toml, except one file. The default params.yaml that
`smat init` writes is the repository's params.yaml; rather than keep a second copy inside smat_nb/ (which holds only
what nbdev-export makes), the build copies it into the built package as smat_nb/default_params.yaml.
MANIFEST.in keeps params.yaml in a source distribution, so a wheel built from one has it too."""
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildPyWithDefaultParams(build_py):
    "setuptools' build_py, then params.yaml copied into the built package as smat_nb/default_params.yaml."
    def run(self):
        super().run()
        if self.editable_mode: return          # an editable install reads the checkout's params.yaml itself
        src = Path('params.yaml')
        if not src.is_file(): raise FileNotFoundError(f'{src.resolve()}: missing; build from the repository root')
        dst = Path(self.build_lib)/'smat_nb'/'default_params.yaml'
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)


setup(cmdclass={'build_py': BuildPyWithDefaultParams})
