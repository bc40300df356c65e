"""Build the committed hierarchy file from WordNet 3.0 (needs ``wordnet-base``).

The chosen path of a synset follows, at every step, its hypernym with the
smallest NLTK synset name (see the package docstring for why).  The output
is rendered deterministically, so a rebuild reproduces the committed file
byte for byte.
"""

from __future__ import annotations

import json
from collections import Counter
from importlib import resources
from pathlib import Path
from typing import Callable

from . import DATA_FILE, PAPER_IMAGENET_COUNTS
from .cifar import CIFAR10_CLASSES, CIFAR10_SYNSETS
from .wordnet_source import WordNetUnavailableError, open_wordnet

_ABOUT = (
    "Derived by `python -m wordnet_hierarchy build` from WordNet 3.0. "
    "paths[class] lists wnids root->leaf along the chosen hypernym path "
    "(each step takes the hypernym with the smallest NLTK synset name); "
    "path[d] is the ancestor at depth d (entity = depth 0), a leaf shallower "
    "than d is its own class. synsets[wnid] = [NLTK synset name, unique readable label]."
)


def wnid_of(synset) -> str:
    """ImageNet-style id of a noun synset, e.g. ``n01440764``."""
    return f"{synset.pos()}{synset.offset():08d}"


def read_imagenet_wnids() -> list[str]:
    """The 1000 ImageNet-1K wnids in standard order, as shipped in the timm wheel."""
    try:
        text = (resources.files("timm") / "data/_info/imagenet_synsets.txt").read_text()
    except ModuleNotFoundError as error:
        raise WordNetUnavailableError(
            "timm is needed for the ImageNet-1K wnid list "
            "(timm/data/_info/imagenet_synsets.txt): `pip install timm`"
        ) from error
    wnids = text.split()
    if len(wnids) != 1000:
        raise ValueError(
            f"expected 1000 ImageNet wnids in timm's imagenet_synsets.txt, got {len(wnids)}"
        )
    return wnids


def hypernyms_by_name(synset) -> list:
    """Hypernyms (instance ones included) sorted by synset name, as NLTK < 3.9 did."""
    return sorted(set(synset.hypernyms() + synset.instance_hypernyms()), key=lambda s: s.name())


def hypernyms_in_file_order(wordnet) -> Callable:
    """Hypernym lookup in the pointer order of ``data.noun`` (WordNet's own order)."""
    data_noun = (Path(wordnet.root.path) / "data.noun").read_bytes()

    def lookup(synset) -> list:
        # A data.noun line: offset lex_filenum ss_type w_cnt (word lex_id)*w_cnt
        # p_cnt (symbol offset pos source/target)*p_cnt | gloss
        fields = data_noun[synset.offset(): data_noun.index(b"\n", synset.offset())].split()
        pointer_count_at = 4 + 2 * int(fields[3], 16)
        pointer_count = int(fields[pointer_count_at])
        pointers = [
            fields[at: at + 4]
            for at in range(pointer_count_at + 1, pointer_count_at + 1 + 4 * pointer_count, 4)
        ]
        return [
            wordnet.synset_from_pos_and_offset(pos.decode(), int(offset))
            for symbol, offset, pos, _ in pointers
            if symbol in (b"@", b"@i")
        ]

    return lookup


def all_paths(synset, hypernyms_of: Callable) -> list[list]:
    """Every root-to-synset path, enumerated in the order ``hypernyms_of`` gives."""
    parents = hypernyms_of(synset)
    if not parents:
        return [[synset]]
    return [path + [synset] for parent in parents for path in all_paths(parent, hypernyms_of)]


def chosen_path(synset) -> list:
    """Root-to-synset path taking the name-smallest hypernym at every step."""
    path = [synset]
    while parents := hypernyms_by_name(path[-1]):
        path.append(parents[0])
    return path[::-1]


def _readable_labels(synsets: list) -> dict[str, str]:
    """First lemma with spaces; names shared by several synsets get the synset name."""
    first_lemma = {s.name(): s.lemma_names()[0].replace("_", " ") for s in synsets}
    uses = Counter(first_lemma.values())
    return {
        name: lemma if uses[lemma] == 1 else f"{lemma} ({name})"
        for name, lemma in first_lemma.items()
    }


def build_hierarchy(wordnet=None) -> dict:
    """The derived hierarchy for ImageNet-1K and CIFAR-10 (see ``_ABOUT``)."""
    wordnet = open_wordnet() if wordnet is None else wordnet
    imagenet = read_imagenet_wnids()
    leaves = {wnid: wordnet.synset_from_pos_and_offset("n", int(wnid[1:])) for wnid in imagenet}
    leaves.update({name: wordnet.synset(CIFAR10_SYNSETS[name]) for name in CIFAR10_CLASSES})
    paths = {key: chosen_path(synset) for key, synset in leaves.items()}
    on_paths = {s.name(): s for path in paths.values() for s in path}
    labels = _readable_labels(list(on_paths.values()))

    def wnid_paths(keys: list[str]) -> dict[str, list[str]]:
        return {key: [wnid_of(s) for s in paths[key]] for key in keys}

    return {
        "about": _ABOUT,
        "cifar10": {
            "classes": CIFAR10_CLASSES,
            "paths": wnid_paths(CIFAR10_CLASSES),
            "wnids": {name: wnid_of(leaves[name]) for name in CIFAR10_CLASSES},
        },
        "imagenet": {"classes": imagenet, "paths": wnid_paths(imagenet)},
        "max_depth": max(len(path) - 1 for path in paths.values()),
        "synsets": {wnid_of(s): [s.name(), labels[s.name()]] for s in on_paths.values()},
    }


def render(value, indent: int = 0) -> str:
    """JSON with sorted keys, one dict entry per line and lists kept inline."""
    if isinstance(value, dict) and value:
        inner = " " * (indent + 1)
        entries = [
            f"{inner}{json.dumps(key)}: {render(value[key], indent + 1)}" for key in sorted(value)
        ]
        return "{\n" + ",\n".join(entries) + "\n" + " " * indent + "}"
    return json.dumps(value, ensure_ascii=False)


def write_hierarchy(output: Path = DATA_FILE) -> Path:
    """Rebuild the hierarchy and write it to ``output``."""
    output.write_text(render(build_hierarchy()) + "\n", encoding="utf-8")
    return output


def _first(paths):
    return paths[0]


def _last(paths):
    return paths[-1]


def _longest(paths):
    return max(paths, key=len)  # ties: the first one


def _shortest(paths):
    return min(paths, key=len)  # ties: the first one


def compare_readings(depths: tuple[int, ...]) -> list[tuple[str, list[int]]]:
    """ImageNet class counts at ``depths`` under each defensible reading of the paper."""
    wordnet = open_wordnet()
    leaves = [wordnet.synset_from_pos_and_offset("n", int(w[1:])) for w in read_imagenet_wnids()]
    by_name = [all_paths(s, hypernyms_by_name) for s in leaves]
    file_order = hypernyms_in_file_order(wordnet)
    by_file = [all_paths(s, file_order) for s in leaves]
    readings = [
        ("name-sorted hypernyms, first path (chosen)", by_name, _first, 0),
        ("same, but entity = depth 1", by_name, _first, 1),
        ("name-sorted hypernyms, last path", by_name, _last, 0),
        ("WordNet file order, first path", by_file, _first, 0),
        ("WordNet file order, last path", by_file, _last, 0),
        ("longest path", by_name, _longest, 0),
        ("shortest path", by_name, _shortest, 0),
    ]
    table = []
    for label, candidates, pick, entity_depth in readings:
        chosen = [pick(paths) for paths in candidates]
        counts = [
            len({path[min(depth - entity_depth, len(path) - 1)] for path in chosen})
            for depth in depths
        ]
        table.append((label, counts))
    return table


def format_readings() -> str:
    """The paper's Table 5 counts next to each reading's, as a text table."""
    depths = tuple(PAPER_IMAGENET_COUNTS)
    rows = [("paper, Table 5", list(PAPER_IMAGENET_COUNTS.values()))] + compare_readings(depths)
    lines = [f"{'reading (ImageNet classes at depth)':<44}" + "".join(f"{d:>6}" for d in depths)]
    lines += [f"{label:<44}" + "".join(f"{n:>6}" for n in counts) for label, counts in rows]
    return "\n".join(lines)
