"""Open WordNet 3.0 through NLTK from Debian's ``wordnet-base`` files.

Debian ships the WordNet database in ``/usr/share/wordnet`` (override with
``WNSEARCHDIR``, WordNet's own variable) but not the ``lexnames`` file that
NLTK's reader insists on, and NLTK never downloads anything here.  So we
prepare our own NLTK corpus directory (``$IFND_WORDNET_DIR``, default
``~/.cache/ifnd/wordnet``): copies of the Debian files plus a generated
``lexnames``.  Only the builder needs this; the relabeling API reads the
committed derived file.
"""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path

INSTALL_HINT = "install it with `apt-get install wordnet-base` (or run `make wordnet`)"

#: Files of the Debian package that NLTK's WordNetCorpusReader opens.
DEBIAN_FILES = (
    "data.adj", "data.adv", "data.noun", "data.verb",
    "index.adj", "index.adv", "index.noun", "index.verb",
    "adj.exc", "adv.exc", "noun.exc", "verb.exc",
    "cntlist.rev",
)

#: WordNet 3.0 lexicographer files, numbered 00..44 (see lexnames(5WN)).
LEXNAMES = (
    "adj.all", "adj.pert", "adv.all", "noun.Tops", "noun.act", "noun.animal",
    "noun.artifact", "noun.attribute", "noun.body", "noun.cognition",
    "noun.communication", "noun.event", "noun.feeling", "noun.food", "noun.group",
    "noun.location", "noun.motive", "noun.object", "noun.person",
    "noun.phenomenon", "noun.plant", "noun.possession", "noun.process",
    "noun.quantity", "noun.relation", "noun.shape", "noun.state",
    "noun.substance", "noun.time", "verb.body", "verb.change", "verb.cognition",
    "verb.communication", "verb.competition", "verb.consumption",
    "verb.contact", "verb.creation", "verb.emotion", "verb.motion",
    "verb.perception", "verb.possession", "verb.social", "verb.stative",
    "verb.weather", "adj.ppl",
)
_SYNTACTIC_CATEGORY = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}


class WordNetUnavailableError(RuntimeError):
    """WordNet 3.0 (or NLTK) is missing, so the hierarchy cannot be rebuilt."""


def source_dir() -> Path:
    """Directory holding Debian's WordNet database files."""
    return Path(os.environ.get("WNSEARCHDIR", "/usr/share/wordnet"))


def corpus_dir() -> Path:
    """Directory of the NLTK corpus we prepare (``$IFND_WORDNET_DIR`` wins)."""
    if "IFND_WORDNET_DIR" in os.environ:
        return Path(os.environ["IFND_WORDNET_DIR"])
    cache = Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser()
    return cache / "ifnd" / "wordnet"


def lexnames_text() -> str:
    """The ``lexnames`` file as NLTK expects it: ``NN<TAB>name<TAB>category``."""
    return "".join(
        f"{number:02d}\t{name}\t{_SYNTACTIC_CATEGORY[name.split('.')[0]]}\n"
        for number, name in enumerate(LEXNAMES)
    )


def _same_file_contents(original: Path, copy: Path) -> bool:
    """Whether ``copy`` is an up-to-date ``shutil.copy2`` of ``original``."""
    if not copy.is_file():
        return False
    expected, found = original.stat(), copy.stat()
    return (found.st_size, found.st_mtime_ns) == (expected.st_size, expected.st_mtime_ns)


def prepare_corpus_dir(target: Path | None = None) -> Path:
    """Copy the Debian files and write ``lexnames`` into ``target``; return it.

    Files are copied, not linked: NLTK's path sandbox resolves symlinks and
    refuses files outside its data roots.  Up-to-date copies are kept.
    """
    source = source_dir()
    missing = [name for name in DEBIAN_FILES if not (source / name).is_file()]
    if missing:
        raise WordNetUnavailableError(
            f"WordNet 3.0 database not found: {source / missing[0]} is missing "
            f"(Debian package wordnet-base); {INSTALL_HINT}."
        )
    target = corpus_dir() if target is None else target
    target.mkdir(parents=True, exist_ok=True)
    for name in DEBIAN_FILES:
        if not _same_file_contents(source / name, target / name):
            shutil.copy2(source / name, target / name)  # keeps the mtime for the next check
    (target / "lexnames").write_text(lexnames_text(), encoding="utf-8")
    return target


def open_wordnet(target: Path | None = None):
    """Return an NLTK ``WordNetCorpusReader`` over the prepared WordNet 3.0."""
    try:
        import nltk
        from nltk.corpus.reader.wordnet import WordNetCorpusReader
    except ImportError as error:
        raise WordNetUnavailableError(
            "nltk is needed to read WordNet: `pip install nltk`"
        ) from error

    class WordNet30Reader(WordNetCorpusReader):
        """Reader that skips NLTK's mapping to its downloadable 'wordnet' corpus.

        These files are WordNet 3.0 itself, so there is nothing to map, and the
        mapping would look for an ``nltk.download`` corpus that is absent.
        """

        def map_wn(self, version="wordnet"):
            return None

    corpus = prepare_corpus_dir(target).resolve()
    if str(corpus) not in nltk.data.path:
        nltk.data.path.append(str(corpus))  # authorises the dir in NLTK's sandbox
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The multilingual functions")
        reader = WordNet30Reader(str(corpus), None)
    if reader.get_version() != "3.0":
        raise WordNetUnavailableError(
            f"{source_dir()} holds WordNet {reader.get_version()}, not 3.0; the paper's "
            f"hierarchy needs WordNet 3.0: {INSTALL_HINT}."
        )
    return reader
