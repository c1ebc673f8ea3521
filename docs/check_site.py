"""Check a built site as a reader sees it: links, API coverage, then headless Chromium (Debian's chromium + chromedriver).

    python docs/check_site.py                  # the site in _docs/, screenshots into _docs/screenshots/
    python docs/check_site.py SITE --shots DIR

In Chromium the home page, a library page and a paper page must load without console errors and show their title,
a typeset equation (MathJax, no error) and a loaded figure; search must find `SparseInterpolatedExperts`.
"""
from __future__ import annotations

import argparse, ast, functools, http.server, re, sys, threading
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM, CHROMEDRIVER = Path('/usr/bin/chromium'), Path('/usr/bin/chromedriver')
# (page, words its <h1> starts with, must show an equation); the paper notebooks have no LaTeX in them.
PAGES = [('index.html', 'smat_nb', True), ('02_masks.html', 'Masks', True), ('paper/f3_tradeoff.html', 'F3', True)]
SEARCH_FOR = 'SparseInterpolatedExperts'


class _Refs(HTMLParser):
    "The ids of a page and the targets of its links and images."
    def __init__(self):
        super().__init__(); self.ids, self.refs = set(), []
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get('id'): self.ids.add(a['id'])
        for k in ('href', 'src'):
            if a.get(k) and (k == 'src' or tag in ('a', 'link')): self.refs.append(a[k])


def parse(page: Path) -> _Refs:
    p = _Refs(); p.feed(page.read_text(encoding='utf-8')); return p


def check_links(site: Path) -> list[str]:
    "Every relative link and image of every page points to a file of the site (and to an id in it, for #anchors)."
    pages = {p: parse(p) for p in site.rglob('*.html') if '_static' not in p.parts}
    bad = []
    for page, refs in pages.items():
        for ref in refs.refs:
            u = urlsplit(ref)
            if u.scheme or u.netloc or ref.startswith(('mailto:', 'javascript:')): continue
            target = (page.parent/unquote(u.path)).resolve() if u.path else page
            if target.is_dir(): target = target/'index.html'
            if not target.exists(): bad.append(f'{page.relative_to(site)}: broken link {ref}'); continue
            if u.fragment and target.suffix == '.html' and target in pages and unquote(u.fragment) not in pages[target].ids:
                bad.append(f'{page.relative_to(site)}: {ref} has no #{u.fragment} there')
    return bad


def module_all(mod: str) -> list[str]:
    tree = ast.parse((ROOT/'smat_nb'/f'{mod}.py').read_text(encoding='utf-8'))
    return next((ast.literal_eval(n.value) for n in tree.body if isinstance(n, ast.Assign)
                 and any(getattr(t, 'id', None) == '__all__' for t in n.targets)), [])


def check_api(site: Path) -> list[str]:
    "Each module's __all__ is on its API page, and the notebook page that defines a name links to it."
    bad = []
    for nb in sorted((ROOT/'nbs').glob('*.ipynb')):
        m = re.search(r'#\|\s*default_exp\s+([\w.]+)', nb.read_text(encoding='utf-8'))
        if not m or not (ROOT/'smat_nb'/f'{m.group(1)}.py').exists(): continue
        mod, api = m.group(1), site/'api'/f'{m.group(1)}.html'
        if not api.exists(): bad.append(f'api/{mod}.html: missing'); continue
        ids, names = parse(api).ids, module_all(mod)
        bad += [f'api/{mod}.html: no entry for {n}' for n in names if f'smat_nb.{mod}.{n}' not in ids]
        page = site/f'{nb.stem}.html'
        if page.exists():
            linked = {unquote(urlsplit(r).fragment) for r in parse(page).refs if r.split('#')[0].endswith(f'api/{mod}.html')}
            bad += [f'{page.name}: no link to the API entry of {n}' for n in names if f'smat_nb.{mod}.{n}' not in linked]
    return bad


def chromium_missing() -> str | None:
    "Why the browser check cannot run here (None when it can)."
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        return f'{CHROMIUM} or {CHROMEDRIVER} is missing; install them with `make docs-browser` (apt-get, as root)'
    try: import selenium  # noqa: F401
    except ImportError: return 'selenium is not installed; run `make install` (requirements-dev.txt pins it)'
    return None


def serve(site: Path):
    "A quiet HTTP server for `site` on a free loopback port (pages use scripts that file:// would block)."
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *a): pass
    httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), functools.partial(Quiet, directory=str(site)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f'http://127.0.0.1:{httpd.server_address[1]}/'


def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for a in ('--headless=new', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--window-size=1280,1000',
              '--hide-scrollbars', '--no-first-run', '--disable-extensions'):
        opts.add_argument(a)
    opts.set_capability('goog:loggingPrefs', {'browser': 'ALL'})
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=opts)


def wait(driver, js: str, what: str, timeout: float = 30):
    from selenium.webdriver.support.ui import WebDriverWait
    try: return WebDriverWait(driver, timeout, poll_frequency=0.2).until(lambda d: d.execute_script(js))
    except Exception: raise AssertionError(f'{driver.current_url}: {what} (waited {timeout:.0f} s)') from None


MATH_DONE = """return window.MathJax && MathJax.Hub && MathJax.Hub.queue.pending === 0 && !MathJax.Hub.queue.running
                  && document.querySelectorAll('.MathJax_Preview + script, .math').length > 0
                  && document.querySelectorAll('.MathJax, .MathJax_Display').length > 0"""


def screenshot(driver, path: Path):
    "The page from its top, as tall as it is (up to 9000 px)."
    h = driver.execute_script('return Math.min(document.documentElement.scrollHeight, 9000)')
    driver.set_window_size(1280, max(h, 800))
    path.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(path))
    driver.set_window_size(1280, 1000)


def check_browser(site: Path, shots: Path, pages=PAGES) -> list[str]:
    "Open the pages in headless Chromium; a list of problems (empty: all good). Screenshots go to `shots`."
    httpd, base = serve(site)
    driver, bad = browser(), []
    try:
        for page, title, needs_math in pages:
            driver.get(base + page)
            try:
                wait(driver, 'return document.readyState === "complete"', 'the page did not finish loading')
                h1 = driver.execute_script('var h = document.querySelector("article h1, h1"); return h ? h.textContent : ""')
                assert h1.strip().startswith(title), f'{page}: title {h1!r}, expected one starting with {title!r}'
                assert driver.title.strip(), f'{page}: empty <title>'
                if needs_math:
                    wait(driver, MATH_DONE, 'MathJax typeset no equation')
                    errs = driver.execute_script('return document.querySelectorAll(".MathJax_Error, merror, .mjx-merror").length')
                    assert not errs, f'{page}: {errs} equation(s) failed to typeset'
                wait(driver, 'return [...document.querySelectorAll("article img")].some(i => i.complete && i.naturalWidth > 100)',
                     'no figure loaded')
                broken = driver.execute_script('return [...document.images].filter(i => i.complete && !i.naturalWidth).map(i => i.src)')
                assert not broken, f'{page}: images that did not load: {broken}'
            except AssertionError as e: bad.append(str(e))
            screenshot(driver, shots/(Path(page).stem + '.png'))
            bad += [f'{page}: console {e["level"]}: {e["message"]}' for e in driver.get_log('browser') if e['level'] == 'SEVERE']
        driver.get(base + f'search.html?q={SEARCH_FOR}')
        try:
            wait(driver, f'return [...document.querySelectorAll("#search-results a")].some(a => a.href.includes("{SEARCH_FOR}"))',
                 f'search found no link to {SEARCH_FOR}')
        except AssertionError as e: bad.append(str(e))
        screenshot(driver, shots/'search.png')
        bad += [f'search.html: console {e["level"]}: {e["message"]}' for e in driver.get_log('browser') if e['level'] == 'SEVERE']
    finally:
        driver.quit(); httpd.shutdown()
    return bad


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('site', nargs='?', type=Path, default=ROOT/'_docs')
    ap.add_argument('--shots', type=Path, help='where the screenshots go (default: SITE/screenshots)')
    a = ap.parse_args(argv)
    if not (a.site/'index.html').exists(): sys.exit(f'docs: {a.site}/index.html is missing; build the site first with `make docs`')
    bad = check_links(a.site) + check_api(a.site)
    why = chromium_missing()
    if why: print(f'docs: browser check skipped: {why}')
    else: bad += check_browser(a.site, a.shots or a.site/'screenshots')
    for b in bad: print('docs:', b)
    if bad: sys.exit(f'docs: {len(bad)} problem(s) in {a.site} (above)')
    print(f'docs: {a.site} checked' + ('' if why else f'; screenshots in {a.shots or a.site/"screenshots"}/'))


if __name__ == '__main__':
    main()
