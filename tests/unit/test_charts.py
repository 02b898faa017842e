"""The one chart module: a chart leaves as a PNG (file, bytes or data: URI) and its figure is closed."""

import base64

from crmlake import charts

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_a_saved_chart_is_a_png_file_in_a_folder_made_for_it_and_its_figure_is_closed(tmp_path):
    path = charts.save(charts.line_chart({"silhouette": ([3, 4, 5], [0.41, 0.52, 0.47])}, "by k", "k", "silhouette", markers=True),
                       str(tmp_path / "reports" / "silhouette.png"))
    assert open(path, "rb").read(8) == PNG_SIGNATURE
    assert charts.pyplot().get_fignums() == []


def test_an_inlined_chart_is_a_png_data_uri():
    uri = charts.data_uri(charts.bar_chart([("teacher", 3), ("nurse", 1)], "occupation", "persons"))
    assert uri.startswith("data:image/png;base64,") and base64.b64decode(uri.split(",", 1)[1])[:8] == PNG_SIGNATURE
    assert charts.pyplot().get_fignums() == []
