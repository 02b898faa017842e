"""The one chart module: a chart leaves as a PNG (file, bytes or data: URI), in the house style,
drawn without pyplot's process-wide figure registry, so that steps run side by side may draw at once."""

import base64
import sys
from concurrent.futures import ThreadPoolExecutor

from crmlake import charts

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_a_saved_chart_is_a_png_file_in_a_folder_made_for_it_in_the_house_style(tmp_path):
    fig = charts.line_chart({"silhouette": ([3, 4, 5], [0.41, 0.52, 0.47])}, "by k", "k", "silhouette", markers=True)
    assert fig.dpi == charts.STYLE["figure.dpi"] and not fig.axes[0].spines["top"].get_visible()
    path = charts.save(fig, str(tmp_path / "reports" / "silhouette.png"))
    assert open(path, "rb").read(8) == PNG_SIGNATURE


def test_an_inlined_chart_is_a_png_data_uri():
    uri = charts.data_uri(charts.bar_chart([("teacher", 3), ("nurse", 1)], "occupation", "persons"))
    assert uri.startswith("data:image/png;base64,") and base64.b64decode(uri.split(",", 1)[1])[:8] == PNG_SIGNATURE


def test_charts_drawn_by_threads_at_once_are_the_charts_drawn_one_by_one():
    def drawn(i: int) -> bytes:
        return charts.png(charts.bar_chart([("teacher", i + 1), ("nurse", 1)], f"occupation {i}", "persons"))

    one_by_one = [drawn(i) for i in range(8)]
    with ThreadPoolExecutor(8) as pool:
        at_once = list(pool.map(drawn, range(8)))
    assert at_once == one_by_one and len(set(one_by_one)) == 8
    pyplot = sys.modules.get("matplotlib.pyplot")
    assert pyplot is None or pyplot.get_fignums() == []   # no figure went through pyplot's registry
