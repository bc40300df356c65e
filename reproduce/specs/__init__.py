"""One spec per table and figure of the paper, and the experiments beyond it (``EXTRAS``); ``SPECS`` by
name, ``GROUPS`` for several at once (``all``: every one)."""
from __future__ import annotations

from reproduce.specs.base import Spec
from reproduce.specs.detection_quality import DetectionQuality
from reproduce.specs.figure1 import Figure1
from reproduce.specs.figure3 import Figure3
from reproduce.specs.figure4 import Figure4
from reproduce.specs.figure6 import Figure6
from reproduce.specs.figure7 import Figure7
from reproduce.specs.table1 import Table1
from reproduce.specs.table2 import Table2
from reproduce.specs.table3 import Table3
from reproduce.specs.table4 import Table4
from reproduce.specs.table5 import Table5
from reproduce.specs.table6 import Table6
from reproduce.specs.table7 import Table7
from reproduce.specs.table8 import Table8

SPECS: dict[str, Spec] = {s.name: s for s in (Table1(), Table2(), Table3(), Table4(), Table5(), Table6(), Table7(),
                                              Table8(), Figure1(), Figure3(), Figure4(), Figure6(), Figure7(),
                                              DetectionQuality())}
TABLES = [name for name, s in SPECS.items() if s.kind == "table" and not s.beyond_paper]
FIGURES = [name for name, s in SPECS.items() if s.kind == "figure" and not s.beyond_paper]
EXTRAS = [name for name, s in SPECS.items() if s.beyond_paper]
GROUPS = {"tables": TABLES, "figures": FIGURES, "all": TABLES + FIGURES + EXTRAS, "ablation-pcl": ["table7"],
          "detection-quality": ["detection_quality"]}


class UnknownTarget(ValueError):
    pass


def resolve_targets(names: list[str]) -> list[str]:
    out: list[str] = []
    for name in names:
        key = name.lower().replace("_", "").replace("fig", "figure") if name.lower().startswith("fig") and \
            not name.lower().startswith("figure") else name.lower()
        chosen = GROUPS.get(key, [key] if key in SPECS else None)
        if chosen is None:
            raise UnknownTarget(f"unknown table or figure {name!r}: choose from {', '.join(SPECS)}, or a group: "
                                f"{', '.join(GROUPS)}")
        out += [c for c in chosen if c not in out]
    return out
