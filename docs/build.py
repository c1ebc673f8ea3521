"""Build the documentation site from nbs/ into _docs/ with Sphinx + MyST-NB (pip-installable tools only).

    python docs/build.py                                   # the whole site (`make docs`)
    python docs/build.py --only 02_masks paper/f3_tradeoff --out /tmp/site --work /tmp/work   # a subset (the test)

1. Library notebooks (nbs/*.ipynb) are executed with nbdev's executor (execnb), each in its own process, skipping
   the cells that `nbdev-test` skips (`tst_flags`: `#| slow`, `#| gpu`, `#| notest`; and `#| eval: false`). The
   executed copy is cached under WORK/exec/, keyed on the notebook and the library sources: a rebuild with nothing
   changed executes nothing.
2. Every notebook is staged under WORK/src/ as a page: directive lines are stripped, `#| hide` cells are removed,
   each `#| export` cell is followed by links to the API reference of the public names (`__all__`) it defines.
   Paper notebooks (nbs/paper/) are not executed: their page shows the committed figures/STEM.png and .md.
3. An API page per module (autodoc of `__all__`, linked back to its notebook), then `sphinx-build` -> OUT/.
   MathJax 2 comes from the pip package jupyter-server-mathjax and is copied into OUT/_static/: no CDN.
"""
from __future__ import annotations

import argparse, ast, hashlib, json, os, re, shutil, subprocess, sys, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NBS, LIB, FIGS, CONF = ROOT/'nbs', ROOT/'smat_nb', ROOT/'figures', ROOT/'docs'
SKIP_NOTE = {'slow': 'minutes of CPU', 'gpu': 'a CUDA device', 'notest': 'it is not run by the tests either'}


def rel(p: Path) -> Path:
    "A path as the user knows it: relative to the repository when inside it."
    try: return p.resolve().relative_to(ROOT)
    except ValueError: return p


def fail(msg: str):
    "Stop the build with one line that names the file and the fix."
    sys.exit(f'docs: {msg}')


def write_if_changed(path: Path, text: str):
    "Write only when the text differs, so that Sphinx re-reads only the pages that changed."
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text(encoding='utf-8') != text: path.write_text(text, encoding='utf-8')


def skip_flags() -> list[str]:
    from nbdev.config import get_config
    flags = get_config(path=ROOT).tst_flags
    return flags.split() if isinstance(flags, str) else list(flags)


# ---------------------------------------------------------------- 1. execution, with a cache

def cache_key(nb: Path) -> str:
    "Changes when the notebook, the library it imports or the skip flags change."
    h = hashlib.sha256(nb.read_bytes())
    for f in sorted(LIB.glob('*.py')): h.update(f.name.encode()); h.update(f.read_bytes())
    h.update(' '.join(skip_flags()).encode())
    return h.hexdigest()[:16]


def execute_one(src: Path, dest: Path, log: Path) -> int:
    "Run in a child process: execute `src` in its own folder, as nbdev-test does, and write it to `dest`."
    os.environ['IN_TEST'] = '1'                              # the notebooks behave as under nbdev-test
    from execnb.shell import CaptureShell
    from fastcore.nbio import write_nb
    from fastcore.xtras import working_directory
    from nbdev.config import get_config
    from nbdev.process import NBProcessor
    from nbdev.test import _skip_cell                        # nbdev-test's own rule for the cells it leaves out
    nb = NBProcessor(src, rm_directives=False, process=True).nb
    shell = CaptureShell(src)
    try:
        with working_directory(src.parent):
            shell.run_all(nb, exc_stop=True, preproc=_skip_cell(nb, skip_flags()),
                          cell_timeout=int(get_config(path=ROOT).get('cell_timeout', 600)))
    except BaseException as e:
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(shell.prettytb(fname=src) or repr(e), encoding='utf-8')
        last = (str(e).strip().splitlines() or [''])[-1][:160]
        print(f'docs: {rel(src)} failed to execute ({type(e).__name__}: {last}); traceback in {rel(log)}; fix the '
              f'notebook (check: nbdev-test --path {rel(src)}) or flag the cell `#| slow`', file=sys.stderr)
        return 1
    tmp = dest.with_suffix('.tmp')
    write_nb(nb, tmp); tmp.replace(dest)
    return 0


def execute_all(nbs: list[Path], work: Path, jobs: int) -> dict[Path, Path]:
    "The executed copy of each notebook, from the cache or freshly run (`jobs` at a time)."
    cache, logs = work/'exec', work/'logs'
    cache.mkdir(parents=True, exist_ok=True)
    out, todo = {}, []
    for nb in nbs:
        dest = cache/f'{nb.stem}.{cache_key(nb)}.ipynb'
        out[nb] = dest
        if not dest.exists(): todo.append((nb, dest))
    keep = {p.name for p in out.values()}
    for stale in cache.glob('*.ipynb'):
        if stale.name not in keep and stale.name.split('.')[0] in {n.stem for n in nbs}: stale.unlink()

    def run(item):
        nb, dest = item
        t0 = time.time()
        r = subprocess.run([sys.executable, __file__, '--execute', str(nb), str(dest), str(logs/f'{nb.stem}.log')])
        print(f'  executed {rel(nb)} in {time.time() - t0:.0f} s' if r.returncode == 0 else f'  FAILED   {rel(nb)}', flush=True)
        return r.returncode == 0

    if todo:
        print(f'docs: executing {len(todo)} notebook(s) ({len(nbs) - len(todo)} cached), {jobs} at a time', flush=True)
        with ThreadPoolExecutor(jobs) as ex: ok = list(ex.map(run, todo))
        if not all(ok): fail(f'{sum(not o for o in ok)} notebook(s) failed to execute (lines above); the site was not built')
    return out


# ---------------------------------------------------------------- 2. pages

def module_all(mod: str) -> list[str]:
    "The names in smat_nb/MOD.py's __all__, read without importing it."
    tree = ast.parse((LIB/f'{mod}.py').read_text(encoding='utf-8'))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, 'id', None) == '__all__' for t in node.targets):
            return [ast.literal_eval(e) for e in node.value.elts]
    return []


def bound_names(target) -> list[str]:
    "Names an assignment target binds (`a`, `a, b`), not attributes or items (`f.x = ...`)."
    if isinstance(target, ast.Name): return [target.id]
    if isinstance(target, (ast.Tuple, ast.List)): return [n for e in target.elts for n in bound_names(e)]
    return []


def module_constants(mod: str) -> dict[str, bool]:
    "The public names of smat_nb/MOD.py bound by assignment ({name: its value is short enough to show})."
    text = (LIB/f'{mod}.py').read_text(encoding='utf-8')
    public, out = set(module_all(mod)), {}
    for node in ast.parse(text).body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
            short = len(ast.get_source_segment(text, node.value) or '') <= 80
            for t in (node.targets if isinstance(node, ast.Assign) else [node.target]):
                out.update({n: short for n in bound_names(t) if n in public})
    return out


def defined_names(source: str) -> list[str]:
    "Top-level names a code cell defines (functions, classes, assignments)."
    try: tree = ast.parse(source)
    except SyntaxError: return []
    names = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)): names.append(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            for t in (node.targets if isinstance(node, ast.Assign) else [node.target]):
                names += bound_names(t)
    return names


def md_cell(text: str) -> dict:
    return {'cell_type': 'markdown', 'metadata': {}, 'source': text}


def page_cells(nb, module: str | None, skipped: set[str]) -> list[dict]:
    "The cells of a page: directives stripped, hidden cells dropped, API links after export cells."
    from nbdev.process import NBProcessor
    proc = NBProcessor(nb=nb, rm_directives=True)
    cells, public = [], {m: set(module_all(m)) for m in [module] if m}
    for c in proc.nb.cells:
        d = getattr(c, 'directives_', {}) or {}
        cell = {k: v for k, v in c.items() if not k.endswith('_')}
        cell['source'] = ''.join(cell.get('source', ''))
        if c.cell_type != 'code' or not d: cells.append(cell); continue
        off = lambda key: str(d.get(key, '')).strip().lower() == 'false'      # `#| echo: false` -> {'echo': 'false'}
        if 'hide' in d or off('include'): continue
        tags = cell.setdefault('metadata', {}).setdefault('tags', [])
        if off('echo'): tags.append('remove-input')
        if off('output'): tags.append('remove-output')
        if cell['source'].strip() or cell.get('outputs'): cells.append(cell)
        why = [f for f in skipped if f in d] + (['eval: false'] if off('eval') else [])
        if why: cells.append(md_cell(f'*Not run for this page (`#| {why[0]}`: {SKIP_NOTE.get(why[0], "not evaluated")}).*'))
        mod = (d.get('export') or d.get('exports') or module) if ({'export', 'exports'} & d.keys()) else None
        if mod:
            public.setdefault(mod, set(module_all(mod)) if (LIB/f'{mod}.py').exists() else set())
            names = [n for n in dict.fromkeys(defined_names(cell['source'])) if n in public[mod]]
            if names:
                links = ', '.join(f'{{py:obj}}`{n} <smat_nb.{mod}.{n}>`' for n in names)
                cells.append(md_cell(f'```{{container}} smat-api\nAPI reference: {links}\n```'))
    return cells


def default_exp(nb: Path) -> str | None:
    m = re.search(r'#\|\s*default_exp\s+([\w.]+)', nb.read_text(encoding='utf-8'))
    return m.group(1) if m else None


def paper_outputs(stem: str, up: str) -> list[dict]:
    "Markdown cells that show the committed figure and table of a paper notebook."
    parts = []
    if (FIGS/f'{stem}.png').exists():
        parts.append(f'```{{figure}} {up}figures/{stem}.png\n:alt: figures/{stem}.png\n:name: fig-{stem}\n\n'
                     f'`figures/{stem}.png`, as committed\n```')
    if (FIGS/f'{stem}.md').exists():
        table = (FIGS/f'{stem}.md').read_text(encoding='utf-8')
        parts.append(re.sub(r'^#{1,2} ', '### ', table, flags=re.M))      # keep the page's own title the only H1
    if not parts: return []
    head = (f'## The committed outputs\n\nThe site does not run the paper notebooks: this is what `dvc repro {stem}` '
            f'last wrote to `figures/` (the tiny profile).')
    return [md_cell(head)] + [md_cell(p) for p in parts]


def stage(src_dir: Path, lib_nbs: dict[Path, Path], paper_nbs: list[Path], modules: dict[str, Path]):
    "Write every page of the site under src_dir (only what changed); a digest of all of them."
    from fastcore.nbio import read_nb
    flags = set(skip_flags())
    pages = lambda: [*src_dir.rglob('*.ipynb'), *src_dir.rglob('*.md')]
    wanted = set()

    def save(rel: str, cells: list[dict], meta: dict):
        for i, c in enumerate(cells):
            c['id'] = f'c{i}'
            c.get('metadata', {}).pop('execution', None)             # execnb's timings: not nbformat
        nb = {'cells': cells, 'metadata': {'kernelspec': meta.get('kernelspec', {'name': 'python3', 'display_name': 'Python 3',
                                                                              'language': 'python'}),
                                           'language_info': {'name': 'python'}}, 'nbformat': 4, 'nbformat_minor': 5}
        write_if_changed(src_dir/rel, json.dumps(nb, indent=1, ensure_ascii=False))
        wanted.add(src_dir/rel)

    for nb_path, executed in lib_nbs.items():
        nb = read_nb(executed)
        cells = page_cells(nb, default_exp(nb_path), flags)
        if nb_path.stem == 'index': cells += index_cells(lib_nbs, paper_nbs, modules)
        save(f'{nb_path.stem}.ipynb', cells, nb.metadata)
    for nb_path in paper_nbs:
        nb = read_nb(nb_path)
        save(f'paper/{nb_path.stem}.ipynb', page_cells(nb, None, flags) + paper_outputs(nb_path.stem, '../'), nb.metadata)
    for f in FIGS.glob('*.png'):
        dest = src_dir/'figures'/f.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        if not dest.exists() or dest.read_bytes() != f.read_bytes(): shutil.copyfile(f, dest)
    api = ['# API reference\n', 'The public names of each module of `smat_nb` (its `__all__`), with their signatures and '
           'docstrings. Each module is written in the notebook named on its page.\n', '```{toctree}\n:maxdepth: 1\n']
    for mod, nb_path in modules.items():
        nb_link = f'{{doc}}`{nb_path.stem} <../{nb_path.stem}>`' if nb_path in lib_nbs else f'`nbs/{nb_path.name}`'
        text = (f'# smat_nb.{mod}\n\nDefined in the notebook {nb_link} (`nbs/{nb_path.name}`); `smat_nb/{mod}.py` '
                f'is generated from it by `nbdev-export`.\n\n```{{eval-rst}}\n.. automodule:: smat_nb.{mod}\n   :members:\n'
                f'   :undoc-members:\n```\n')
        consts = module_constants(mod)          # autodoc lists only functions and classes by itself
        if consts:
            text += '\n## Constants\n\n```{eval-rst}\n' + ''.join(
                f'.. autodata:: smat_nb.{mod}.{n}\n' + ('' if short else '   :no-value:\n') for n, short in consts.items()) + '```\n'

        write_if_changed(src_dir/'api'/f'{mod}.md', text); wanted.add(src_dir/'api'/f'{mod}.md')
        api.append(mod)
    write_if_changed(src_dir/'api'/'index.md', '\n'.join(api) + '\n```\n'); wanted.add(src_dir/'api'/'index.md')
    for old in pages():
        if old not in wanted: old.unlink()
    h = hashlib.sha256()
    for p in sorted(pages()): h.update(str(p.relative_to(src_dir)).encode()); h.update(p.read_bytes())
    return h.hexdigest()


def index_cells(lib_nbs: dict, paper_nbs: list[Path], modules: dict) -> list[dict]:
    "The home page's gallery of the paper's figures and its tables of contents."
    cells = [md_cell('## The paper\'s tables and figures\n\nEach figure links to the notebook that draws it '
                     '(`nbs/paper/`, run by `dvc repro`); the images are the committed `figures/*.png`.')]
    for nb in paper_nbs:
        if (FIGS/f'{nb.stem}.png').exists():
            cells.append(md_cell(f'```{{image}} figures/{nb.stem}.png\n:alt: {nb.stem}\n:width: 32%\n'
                                 f':target: paper/{nb.stem}.html\n:class: smat-thumb\n```'))
    toc = lambda caption, entries: f'```{{toctree}}\n:caption: {caption}\n:maxdepth: 1\n\n' + '\n'.join(entries) + '\n```'
    cells.append(md_cell(toc('Library notebooks', [p.stem for p in lib_nbs if p.stem != 'index'])))
    if paper_nbs: cells.append(md_cell(toc('Paper tables and figures', [f'paper/{p.stem}' for p in paper_nbs])))
    cells.append(md_cell(toc('API reference', ['api/index'])))
    return cells


# ---------------------------------------------------------------- 3. the site

def mathjax_dir() -> Path:
    try: import jupyter_server_mathjax
    except ImportError: fail('jupyter-server-mathjax is missing (it brings MathJax for offline pages); run `make install`')
    return Path(jupyter_server_mathjax.__file__).parent/'static'


def build(only: list[str] | None, out: Path, work: Path, jobs: int):
    t0 = time.time()
    for pkg, pin in (('sphinx', 'sphinx'), ('myst_nb', 'myst-nb'), ('furo', 'furo')):
        try: __import__(pkg)
        except ImportError: fail(f'{pin} is not installed in {sys.executable}; run `make install` (requirements-dev.txt pins it)')
    lib = sorted(p for p in NBS.glob('*.ipynb') if not p.name.startswith(('_', '.')))
    paper = sorted((NBS/'paper').glob('*.ipynb'))
    if only:
        keep = set(only) | {'index'}
        missing = keep - {p.stem for p in lib} - {f'paper/{p.stem}' for p in paper}
        if missing: fail(f'--only {" ".join(sorted(missing))}: no such notebook under nbs/ (give e.g. 02_masks or paper/f3_tradeoff)')
        lib, paper = [p for p in lib if p.stem in keep], [p for p in paper if f'paper/{p.stem}' in keep]
    modules = {m: p for p in sorted(NBS.glob('*.ipynb')) if (m := default_exp(p)) and (LIB/f'{m}.py').exists()}
    executed = execute_all(lib, work, jobs)
    t1 = time.time()
    digest, built = stage(work/'src', {p: executed[p] for p in lib}, paper, modules), work/'pages.sha256'
    changed = not built.exists() or built.read_text() != digest
    cmd = [sys.executable, '-m', 'sphinx', '-b', 'html', '-q', '-c', str(CONF), '-d', str(work/'doctrees'),
           str(work/'src'), str(out)]
    env = {**os.environ, 'PYTHONPATH': str(ROOT) + os.pathsep + os.environ.get('PYTHONPATH', ''), 'SMAT_DOCS_WORK': str(work)}
    r = subprocess.run(cmd + ['-E'] * changed, env=env)       # -E: a page changed, so re-resolve every cross-reference
    if r.returncode: fail(f'sphinx-build failed (messages above) for {work/"src"}; the pages there are what it read')
    built.write_text(digest)
    shutil.copytree(mathjax_dir(), out/'_static'/'mathjax', dirs_exist_ok=True)
    print(f'docs: {out}/index.html ({len(lib)} library + {len(paper)} paper notebooks, {len(modules)} API pages) in '
          f'{time.time() - t0:.0f} s (executing {t1 - t0:.0f} s); read it with `make docs-serve`')


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--only', nargs='+', help='notebooks to build (stems, e.g. 02_masks paper/f3_tradeoff); index is always in')
    ap.add_argument('--out', type=Path, default=ROOT/'_docs', help='the site (default: _docs/)')
    ap.add_argument('--work', type=Path, default=ROOT/'_docs_build', help='pages, execution cache and logs (default: _docs_build/)')
    ap.add_argument('--jobs', type=int, default=int(os.environ.get('DOCS_JOBS', 2)), help='notebooks executed at once')
    ap.add_argument('--execute', nargs=3, type=Path, metavar=('NB', 'DEST', 'LOG'), help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.execute: sys.exit(execute_one(*a.execute))
    build(a.only, a.out.resolve(), a.work.resolve(), max(1, a.jobs))


if __name__ == '__main__':
    main()
