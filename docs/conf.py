"""Sphinx configuration of the documentation site; docs/build.py stages the pages and runs sphinx-build -c docs."""
import os, re
from pathlib import Path

import myst_nb.sphinx_ext

# MyST-NB writes its copies of the notebooks to OUTDIR/../jupyter_execute, which for _docs/ is the repository root;
# docs/build.py names its work folder instead (SMAT_DOCS_WORK). An absolute path wins in Path.joinpath.
if os.environ.get('SMAT_DOCS_WORK'):
    myst_nb.sphinx_ext.OUTPUT_FOLDER = str(Path(os.environ['SMAT_DOCS_WORK'])/'jupyter_execute')

project = 'smat_nb'
html_title = 'smat_nb'
author = 'smat_nb developers'
copyright = 'smat_nb developers, Apache-2.0'

extensions = ['myst_nb', 'sphinx.ext.autodoc', 'sphinx.ext.mathjax']
exclude_patterns = ['exec', 'logs', 'doctrees', '**.ipynb_checkpoints']

# Notebooks arrive executed (library) or with their committed figures (paper): MyST-NB only renders them.
nb_execution_mode = 'off'
nb_merge_streams = True
myst_enable_extensions = ['dollarmath', 'amsmath']
myst_heading_anchors = 3

# API pages: each module's __all__, in source order; `name` in a docstring links to that object where it exists.
autodoc_member_order = 'bysource'
autodoc_typehints = 'signature'
autodoc_default_options = {'show-inheritance': True}
default_role = 'py:obj'
add_module_names = False

# MathJax 2 from the pip package jupyter-server-mathjax, copied into _static/mathjax/ by docs/build.py: no CDN.
# That copy carries only the STIX-Web fonts, so MathJax is told to use them (and never to fetch other fonts).
mathjax_path = 'mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full'
myst_update_mathjax = False          # its window.MathJax is MathJax 3's; ours is MathJax 2, configured below
mathjax2_config = {
    'tex2jax': {'processClass': 'math|tex2jax_process', 'ignoreClass': 'tex2jax_ignore|mathjax_ignore'},
    'HTML-CSS': {'availableFonts': [], 'preferredFont': None, 'webFont': 'STIX-Web', 'imageFont': None,
                 # its fallback font is url('about:blank'), which Chromium reports as a console error
                 'styles': {'@font-face': {'font-family': 'MathJax_Blank', 'src': "local('MathJax_Blank')"}}},
    'SVG': {'font': 'STIX-Web'},
    'messageStyle': 'none',
    'menuSettings': {'zoom': 'None'},
}

html_theme = 'furo'
html_static_path = ['_static']
html_css_files = ['smat.css']
html_favicon = '_static/favicon.svg'
html_show_sourcelink = False
html_copy_source = False
html_last_updated_fmt = None
suppress_warnings = ['myst.header', 'mystnb.unknown_mime_type']

_CODE = re.compile(r'(`[^`]+`)')


def plain_docstring(app, what, name, obj, options, lines):
    "nbdev docstrings are plain text, not reStructuredText: escape the marks rST would read (|, *, trailing _)."
    if what == 'data' and obj.__doc__ == type(obj).__doc__: lines.clear(); return     # a dict's doc is dict's
    for i, line in enumerate(lines):
        parts = _CODE.split(line)
        for j in range(0, len(parts), 2):
            parts[j] = re.sub(r'([|*\\])', r'\\\1', parts[j])
            parts[j] = re.sub(r'(?<=\w)_(?=\W|$)', r'\\_', parts[j])
            if j and re.match(r'\w', parts[j]): parts[j] = '\\ ' + parts[j]     # `Name`s: end the code span
        lines[i] = ''.join(parts)


def setup(app):
    app.connect('autodoc-process-docstring', plain_docstring)
