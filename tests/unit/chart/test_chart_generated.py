"""What ``make chart`` generates is committed and current, and every value is documented.

Covers: the chart's copies of the CRDs equal crds/; the chart README's values table, the
argocd-cm snippet, the Grafana dashboard and docs/metrics.md equal what their generators
make now; every value in values.yaml is documented; the README generator reads nested
keys, multi-line comments and defaults as they are written.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[3]
STALE = "is stale: run `make chart` and commit the result"


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "kiln_chart_generate", ROOT / "charts" / "generate.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


generate = load_generator()


def test_chart_crds_are_copies_of_the_generated_crds() -> None:
    chart_crds = ROOT / "charts" / "kiln" / "files" / "crds"
    assert sorted(p.name for p in chart_crds.glob("*.yaml")) == sorted(
        p.name for p in (ROOT / "crds").glob("*.yaml")
    )
    for path in (ROOT / "crds").glob("*.yaml"):
        assert (chart_crds / path.name).read_text() == path.read_text(), f"{path.name} {STALE}"


def test_generated_files_are_current() -> None:
    for path, text in generate.expected_files().items():
        assert path.read_text(encoding="utf-8") == text, f"{path.relative_to(ROOT)} {STALE}"


def test_every_value_is_documented() -> None:
    values_yaml = (ROOT / "charts" / "kiln" / "values.yaml").read_text()
    assert generate.undocumented_leaves(values_yaml) == []


def test_values_table_reads_nested_keys_multi_line_comments_and_defaults() -> None:
    values_yaml = (
        "# a file comment, not a value's\n"
        "\n"
        "# -- Top level.\n"
        "top: 3\n"
        "group:\n"
        "  # -- First line\n"
        "  # and the second.\n"
        "  inner: [a, b]\n"
        "  undocumented: x\n"
        "other:\n"
        "  # -- A map.\n"
        "  map:\n"
        "    k: v\n"
    )
    values = generate.documented_values(values_yaml)
    assert [(v.path, v.default, v.description, v.type) for v in values] == [
        ("top", 3, "Top level.", "int"),
        ("group.inner", ["a", "b"], "First line and the second.", "list"),
        ("other.map", {"k": "v"}, "A map.", "object"),
    ]
    assert generate.undocumented_leaves(values_yaml) == ["group.undocumented"]
    table = generate.values_table(values_yaml)
    assert '| `group.inner` | list | `["a", "b"]` | First line and the second. |' in table


def test_chart_readme_without_markers_is_refused() -> None:
    with pytest.raises(SystemExit, match="markers"):
        generate.chart_readme("# no markers\n", "# -- x\nx: 1\n")
