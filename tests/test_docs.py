"""The documentation site (docs/build.py, `make docs`): built from a small subset of nbs/ (the home page, one library
notebook, one paper notebook, every API page), checked as files, then in headless Chromium.

Cost: executing nbs/index.ipynb and nbs/02_masks.ipynb (about 15 s, cached in _docs_build/subset/ afterwards), Sphinx
(about 20 s), Chromium (about 15 s). Screenshots of the three pages go to _docs/screenshots/.
"""
import importlib.util, json, re, subprocess, sys

import pytest

from conftest import ROOT


def load(name):
    "docs/NAME.py as a module (docs/ is not a package; `build` alone would clash with other modules of that name)."
    spec = importlib.util.spec_from_file_location(f'smat_docs_{name}', ROOT/'docs'/f'{name}.py')
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    return mod


build, check_site = load('build'), load('check_site')

WORK = ROOT/'_docs_build'/'subset'
SITE = WORK/'site'
SHOTS = ROOT/'_docs'/'screenshots'


@pytest.fixture(scope='module')
def site():
    r = subprocess.run([sys.executable, str(ROOT/'docs'/'build.py'), '--only', '02_masks', 'paper/f3_tradeoff',
                        '--out', str(SITE), '--work', str(WORK)], cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, f'docs/build.py failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}'
    return SITE


def test_pages(site):
    index, lib, paper = (site/p for p in ('index.html', '02_masks.html', 'paper/f3_tradeoff.html'))
    text = lib.read_text(encoding='utf-8')
    assert '<h1>Masks: hard-concrete gates' in text
    assert text.count('class="math') >= 5, 'the LaTeX of the notebook did not become math'
    assert re.search(r'<img[^>]+src="_images/[0-9a-f]+\.png"', text), 'the executed figure (gate curves) is not on the page'
    assert '#|' not in text, 'nbdev directive lines must be stripped from the shown code'
    assert 'href="api/masks.html#smat_nb.masks.hard_concrete"' in text, 'export cells must link to their API entries'
    api = (site/'api'/'masks.html').read_text(encoding='utf-8')
    assert 'id="smat_nb.masks.hard_concrete"' in api and 'href="../02_masks.html"' in api
    assert 'id="smat_nb.experts.SparseInterpolatedExperts"' in (site/'api'/'experts.html').read_text(encoding='utf-8')
    ptext = paper.read_text(encoding='utf-8')
    assert 'src="../_images/f3_tradeoff.png"' in ptext and '<table' in ptext, 'the committed figure and table of F3'
    assert 'class="math' in ptext, 'the LaTeX of the paper notebook did not become math'
    assert 'href="paper/f3_tradeoff.html"' in index.read_text(encoding='utf-8')
    for page in (index, lib, paper):        # offline: every script and style sheet is the site's own
        for ref in re.findall(r'<(?:script|link)[^>]+(?:src|href)="([^"]+)"', page.read_text(encoding='utf-8')):
            assert not re.match(r'(https?:)?//', ref), f'{page.name} loads {ref} from the network'
    assert (site/'_static'/'mathjax'/'MathJax.js').exists()


def test_no_font_the_offline_mathjax_lacks():
    "The bundled MathJax 2 carries only the STIX-Web fonts; \\mathbb asks for the TeX AMS font, a 404 on the page."
    bad = [str(f.relative_to(ROOT)) for f in sorted((ROOT/'nbs').rglob('*.ipynb')) if '\\\\mathbb' in f.read_text(encoding='utf-8')]
    assert not bad, f"{bad}: \\mathbb needs a font the offline MathJax lacks; write the set in words or with \\mathrm"


def test_links_and_api(site):
    assert check_site.check_links(site) == []
    assert check_site.check_api(site) == []      # every __all__ name has an entry; 02_masks links each one it defines


def test_in_chromium(site):
    why = check_site.chromium_missing()
    if why: pytest.skip(f'browser check: {why}')
    assert check_site.check_browser(site, SHOTS) == []
    assert all((SHOTS/f'{p}.png').stat().st_size > 10_000 for p in ('index', '02_masks', 'f3_tradeoff'))


def nb(*cells):
    return {'cells': [{'cell_type': t, 'metadata': {}, 'source': s, **({'outputs': [], 'execution_count': None}
                       if t == 'code' else {})} for t, s in cells],
            'metadata': {'kernelspec': {'name': 'python3', 'display_name': 'Python 3', 'language': 'python'}},
            'nbformat': 4, 'nbformat_minor': 5}


def test_directives(tmp_path):
    "Hidden cells go, directive lines go, skipped cells are marked, export cells get API links."
    from fastcore.nbio import read_nb
    f = tmp_path/'x.ipynb'
    f.write_text(json.dumps(nb(('code', '#| default_exp masks'), ('code', '#| hide\nsecret = 1'),
                               ('code', '#| export\ndef hard_concrete(): pass\n_private = 2'),
                               ('code', '#| slow\nlong_run()'), ('code', '#| echo: false\nshown_output()'))))
    cells = build.page_cells(read_nb(f), 'masks', set(build.skip_flags()))
    src = [c['source'] for c in cells]
    assert not any('#|' in c['source'] or 'secret' in c['source'] for c in cells if c['cell_type'] == 'code'), src
    assert src[0].startswith('def hard_concrete') and '{py:obj}`hard_concrete <smat_nb.masks.hard_concrete>`' in src[1]
    assert '_private' not in src[1]
    assert src[2] == 'long_run()' and '#| slow' in src[3]
    assert cells[4]['metadata']['tags'] == ['remove-input']


def test_failing_notebook_message(tmp_path):
    "A notebook that fails to execute stops the build with one line naming it and the fix."
    f = tmp_path/'broken.ipynb'
    f.write_text(json.dumps(nb(('code', 'x = 1'), ('code', "raise ValueError('boom')"))))
    r = subprocess.run([sys.executable, str(ROOT/'docs'/'build.py'), '--execute', str(f), str(tmp_path/'out.ipynb'),
                        str(tmp_path/'broken.log')], capture_output=True, text=True, timeout=300)
    lines = [line for line in r.stderr.splitlines() if line.startswith('docs:')]
    assert r.returncode == 1 and len(lines) == 1, r.stderr
    assert str(f) in lines[0] and 'ValueError: boom' in lines[0] and 'nbdev-test --path' in lines[0]
    assert 'boom' in (tmp_path/'broken.log').read_text() and not (tmp_path/'out.ipynb').exists()


def test_chromium_missing_message(monkeypatch, tmp_path):
    "Without Debian's chromium the browser check says which file is missing and how to install it."
    monkeypatch.setattr(check_site, 'CHROMIUM', tmp_path/'chromium')
    why = check_site.chromium_missing()
    assert str(tmp_path/'chromium') in why and 'make docs-browser' in why
