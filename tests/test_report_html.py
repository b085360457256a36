"""report.html stands alone: pictures as data: URIs, tables as HTML tables, no Python reprs."""

import base64
import re
from html.parser import HTMLParser

from mcl_video.demo.report import write_html
from mcl_video.figures import pyplot


class Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.imgs, self.tables, self.cells, self.text = [], 0, [], []
        self._in_style = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.imgs.append(attrs["src"])
        self.tables += tag == "table"
        self._in_style = tag == "style"

    def handle_endtag(self, tag):
        self._in_style = False if tag == "style" else self._in_style

    def handle_data(self, data):
        if not self._in_style:
            self.text.append(data)


def _png(path, colour):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(1, 1))
    ax.plot([0, 1], [0, 1], color=colour)
    fig.savefig(path)
    plt.close(fig)
    return path


def test_page_embeds_pictures_and_renders_tables(tmp_path):
    curves, saliency = _png(tmp_path / "curves.png", "red"), _png(tmp_path / "saliency.png", "blue")
    results = {
        "claim": False, "profile": "quick", "seed": 0, "benchmark": {"classes": 2, "size": 64},
        "num_train": 6, "num_test": 4, "classes": ["A", "B"],
        "rows": [{"name": "MCL", "motion_acc": 0.75, "motion_se": 0.217, "shape_acc": 0.5, "shape_se": 0.25,
                  "r1": 1.0, "r1_se": 0.0}],
        "chance": {"motion": 0.5, "shape": 0.5, "r1": 0.5},
        "pretrain": {"steps": 1, "batch_size": 4}, "supervised": {"steps": 1, "finetune_test_top1": 0.5},
        "wall_s": 4.2, "cpu_s": 3.1, "stages_s": {"data": 0.2, "pretrain-mcl": 1.5},
        "saliency": {"mcl": [0.9, 0.8], "moco": [0.7, 0.6]},
    }
    page_path = write_html(tmp_path / "report.html", results, curves, saliency)
    (tmp_path / "curves.png").unlink()  # the page alone must hold everything
    (tmp_path / "saliency.png").unlink()
    html_text = page_path.read_text()
    page = Page()
    page.feed(html_text)
    assert len(page.imgs) == 2 and all(src.startswith("data:image/png;base64,") for src in page.imgs)
    assert base64.b64decode(page.imgs[0].split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert page.imgs[0] != page.imgs[1]
    assert page.tables == 2  # results and stages
    text = " ".join(page.text)
    assert not re.search(r"[{}]|\[\s*'|': ", text), text  # no dict or list reprs
    for shown in ("MCL", "75.0 ± 21.7", "chance", "pretrain-mcl", "1.5", "classes 2, size 64"):
        assert shown in text
