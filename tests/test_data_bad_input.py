"""Bad input to the data readers: each case raises an error that names the file or class and what is
wrong, and nothing is written (no output file, no temporary file left behind)."""
import io, json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from smat_nb.data import (FolderDomain, MDDomain, render_domain, write_md_h5, write_md_spec, write_md_tfrecord,
                          read_class_splits)

def _png(value=0, mode='RGB', size=(8, 8)):
    b = io.BytesIO(); Image.new(mode, size, value if mode == 'L' else (value,) * len(mode)).save(b, format='PNG')
    return b.getvalue()

def _folders(root, sizes=(3, 3, 3, 3, 3)):
    for c, n in enumerate(sizes):
        d = root/f'class{c}'; d.mkdir(parents=True)
        for i in range(n): (d/f'{i}.png').write_bytes(_png(10 * c + i))
    return root

def _md(root, fmt, sizes=(3, 3, 3, 3, 3)):
    root.mkdir(parents=True)
    write_md_spec(root, 'toy', sizes, dict(train=len(sizes), valid=0, test=0))
    for c, n in enumerate(sizes):
        if fmt == 'h5': write_md_h5(root/f'{c}.h5', [np.full((8, 8, 3), c, np.uint8)] * n)
        else: write_md_tfrecord(root/f'{c}.tfrecords', [_png(c)] * n, c)
    return root

# each case: (build(tmp) -> callable that renders into OUT, error type, fragments the message must hold)
def missing_path(t):
    return lambda: render_domain(FolderDomain(t/'no_such_folder'), 8, out=t/'out'/'x.npz'), FileNotFoundError, ['no_such_folder', 'not found']

def empty_class(t):
    r = _folders(t/'f'); (r/'class9_empty').mkdir()
    return lambda: render_domain(FolderDomain(r), 8, out=t/'out'/'x.npz'), ValueError, ['class9_empty', 'holds no image']

def corrupt_image(t):
    r = _folders(t/'f'); (r/'class2'/'1.png').write_bytes(b'\x89PNG\r\n\x1a\n garbage')
    return lambda: render_domain(FolderDomain(r), 8, out=t/'out'/'x.npz'), ValueError, ['class2/1.png', 'corrupt or truncated']

def truncated_image(t):
    r = _folders(t/'f'); b = _png(5, size=(64, 64)); (r/'class4'/'0.png').write_bytes(b[:len(b) // 2])
    return lambda: render_domain(FolderDomain(r), 8, out=t/'out'/'x.npz'), ValueError, ['class4/0.png', 'corrupt or truncated']

def unreadable_h5(t):
    r = _md(t/'md', 'h5'); (r/'3.h5').write_bytes(b'this is not an HDF5 file at all')
    return lambda: render_domain(MDDomain(r, 'train', 'h5'), 8, out=t/'out'/'x.npz'), ValueError, ['3.h5', 'unreadable h5']

def unreadable_tfrecord(t):
    r = _md(t/'md', 'tfrecord'); b = (r/'2.tfrecords').read_bytes(); (r/'2.tfrecords').write_bytes(b[:len(b) - 30])
    return lambda: render_domain(MDDomain(r, 'train', 'tfrecord'), 8, out=t/'out'/'x.npz'), ValueError, ['2.tfrecords', 'unreadable TFRecord']

def corrupt_image_in_tfrecord(t):
    r = _md(t/'md', 'tfrecord'); write_md_tfrecord(r/'1.tfrecords', [_png(1), b'JUNK', _png(1)], 1)
    return lambda: render_domain(MDDomain(r, 'train', 'tfrecord'), 8, out=t/'out'/'x.npz'), ValueError, ['1.tfrecords#1', 'corrupt or truncated']

def spec_images_mismatch(t):
    r = _md(t/'md', 'h5'); write_md_h5(r/'4.h5', [np.zeros((8, 8, 3), np.uint8)] * 2)
    return lambda: render_domain(MDDomain(r, 'train', 'h5'), 8, out=t/'out'/'x.npz'), ValueError, ['4.h5', 'spec/class-count mismatch', "class 'class_4'", 'says 3', 'holds 2']

def spec_classes_mismatch(t):
    r = _md(t/'md', 'h5'); spec = json.loads((r/'dataset_spec.json').read_text())
    spec['classes_per_split']['Split.TRAIN'] = 7; (r/'dataset_spec.json').write_text(json.dumps(spec))
    return lambda: render_domain(MDDomain(r, 'train', 'h5'), 8, out=t/'out'/'x.npz'), ValueError, ['dataset_spec.json', 'spec/class-count mismatch', 'sums to 7']

def missing_class_file(t):
    r = _md(t/'md', 'tfrecord'); (r/'0.tfrecords').unlink()
    return lambda: render_domain(MDDomain(r, 'train', 'tfrecord'), 8, out=t/'out'/'x.npz'), FileNotFoundError, ['0.tfrecords', 'missing']

def too_few_classes(t):
    r = _folders(t/'f', sizes=(3, 3, 3))
    return lambda: render_domain(FolderDomain(r, name='pets'), 8, out=t/'out'/'x.npz', min_ways=5), ValueError, ['pets', '3 classes', 'minimum of 5 ways']

def bad_split_json(t):
    (t/'s.json').write_text('{"train": ["a"], "test": ["a"]}')
    return lambda: read_class_splits(t/'s.json'), ValueError, ['s.json', "class 'a'", "'train' and 'test'"]

CASES = [missing_path, empty_class, corrupt_image, truncated_image, unreadable_h5, unreadable_tfrecord,
         corrupt_image_in_tfrecord, spec_images_mismatch, spec_classes_mismatch, missing_class_file, too_few_classes,
         bad_split_json]

@pytest.mark.parametrize('case', CASES, ids=lambda f: f.__name__)
def test_bad_input_names_the_culprit_and_writes_nothing(case, tmp_path):
    (tmp_path/'out').mkdir()
    (tmp_path/'out'/'keep.npz').write_bytes(b'old good result')
    run, err, fragments = case(tmp_path)
    with pytest.raises(err) as e:
        run()
    msg = str(e.value)
    for f in fragments:
        assert f in msg, f'{case.__name__}: {f!r} not in message {msg!r}'
    assert sorted(p.name for p in (tmp_path/'out').iterdir()) == ['keep.npz'], 'something was (partially) written'
    assert (tmp_path/'out'/'keep.npz').read_bytes() == b'old good result'

def test_grey_rgba_cmyk_are_converted_not_rejected(tmp_path):
    r = tmp_path/'f'
    for c, (mode, val) in enumerate([('L', 200), ('RGBA', (0, 0, 255, 255)), ('CMYK', (0, 0, 0, 0)), ('P', 3), ('LA', (90, 255))]):
        d = r/f'c{c}'; d.mkdir(parents=True)
        for i in range(2): Image.new(mode, (10, 12), val).save(d/f'{i}.{"jpg" if mode == "CMYK" else "png"}')
    ad = render_domain(FolderDomain(r), 8, out=tmp_path/'x.npz')
    assert ad.images.shape == (10, 8, 8, 3)
    assert tuple(ad.images[0, 4, 4]) == (200, 200, 200) and tuple(ad.images[2, 4, 4]) == (0, 0, 255)
    assert (tmp_path/'x.npz').exists()
