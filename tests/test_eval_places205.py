"""Places205 linear classification on the official list layout."""
import json

import pytest

from eval import fixtures, places205


@pytest.fixture(scope="module")
def places(tmp_path_factory):
    base = tmp_path_factory.mktemp("places")
    return fixtures.make_places205(base / "places205"), fixtures.save_checkpoint(base / "ckpt.pt")


@pytest.mark.parametrize("mode", ["features", "full"])
def test_cli_writes_top1_top5(places, tmp_path, mode):
    root, checkpoint = places
    out = tmp_path / f"{mode}.json"
    places205.main(["--checkpoint", str(checkpoint), "--places-root", str(root), "--mode", mode, "--epochs", "2",
                    "--batch-size", "4", "--resize-size", "36", "--crop-size", "32", "--workers", "0",
                    "--no-progress", "--cache-dir", str(tmp_path / "cache"), "--out", str(out)])
    written = json.loads(out.read_text())
    assert written["protocol"] == "places205_linear" and written["settings"]["mode"] == mode
    data = written["data"]
    assert (data["num_train"], data["num_val"], data["num_classes"]) == (12, 6, 3)
    assert 0 <= written["metrics"]["top1"] <= 100 and written["metrics"]["top5"] == 100.0  # 3 classes


def test_missing_list_file_is_named(places, tmp_path, capsys):
    root, checkpoint = places
    with pytest.raises(SystemExit) as exit_info:
        places205.main(["--checkpoint", str(checkpoint), "--places-root", str(root), "--val-list",
                        str(tmp_path / "val.csv"), "--out", str(tmp_path / "r.json")])
    assert exit_info.value.code == 2
    assert f"list file not found: {tmp_path / 'val.csv'} does not exist" in capsys.readouterr().err
