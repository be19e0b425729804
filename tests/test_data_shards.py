"""Shard writing and indexing: official naming, exact round trip, webdataset compatibility, clear errors."""
import os
import sys

import numpy as np
import pytest
import webdataset as wds
from PIL import Image

from data.shards import ShardWriter, brace_pattern, encode_image, write_shards, write_synthetic_shards
from data.synthetic import SyntheticImages
from data.tar_index import _scan_tarfile, _scan_ustar, expand_shards, index_tar
from data.transforms import decode_image
from data.webdataset_reader import ShardSource

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_png_round_trip_is_exact_and_shards_follow_the_official_naming(tmp_path):
    dataset = SyntheticImages(resolution=16, seed=1, num_samples=7)
    paths = write_shards(((f"{i:07d}", *dataset[i]) for i in range(7)), str(tmp_path), "train", maxcount=3)
    assert [os.path.basename(p) for p in paths] == [f"imagenet-train-{i:04d}.tar" for i in range(3)]
    assert expand_shards(brace_pattern(str(tmp_path), "train", 3)) == paths
    assert [len(index_tar(p)) for p in paths] == [3, 3, 1]
    source = ShardSource(brace_pattern(str(tmp_path), "train", 3))
    loaded = [source.load(ref) for ref in source.eval_refs()]
    assert [key for key, _, _ in loaded] == [f"{i:07d}" for i in range(7)]
    for i, (_, data, class_id) in enumerate(loaded):
        assert class_id == dataset.class_id(i)
        assert np.array_equal(np.asarray(decode_image(data)), dataset.render(i))


def test_encoded_bytes_are_written_unchanged_and_readable_by_webdataset(tmp_path):
    jpeg = encode_image(SyntheticImages(resolution=20)[0][0], "jpg")
    with ShardWriter(str(tmp_path), "val") as writer:
        writer.write("a_1", jpeg, 7, ext="jpg")
        writer.write("b_2", jpeg[::-1], 999, ext="jpg")
    samples = list(wds.WebDataset(writer.paths[0], shardshuffle=False))
    assert [s["__key__"] for s in samples] == ["a_1", "b_2"]
    assert samples[0]["jpg"] == jpeg and samples[1]["jpg"] == jpeg[::-1] and samples[1]["cls"] == b"999"


def test_shards_are_byte_reproducible(tmp_path):
    first = write_synthetic_shards(str(tmp_path / "a"), 12, 5, resolution=12, seed=3, maxcount=5)
    second = write_synthetic_shards(str(tmp_path / "b"), 12, 5, resolution=12, seed=3, maxcount=5)
    assert first["train"].endswith("train/imagenet-train-{0000..0002}.tar")
    assert first["val"].endswith("val/imagenet-val-{0000..0000}.tar")
    for a, b in zip(expand_shards(first["train"]), expand_shards(second["train"])):
        assert open(a, "rb").read() == open(b, "rb").read()
    assert not any(f.endswith(".tmp") for f in os.listdir(tmp_path / "a" / "train"))


def test_fast_header_scan_matches_tarfile_on_webdataset_pax_shards(tmp_path):
    path = str(tmp_path / "pax.tar")
    with wds.TarWriter(path) as writer:  # webdataset writes a pax header before every member
        for i in range(5):
            writer.write({"__key__": f"dir/{i:03d}" + "x" * (120 * (i == 2)), "png": b"p" * (i * 300), "cls": str(i)})
    assert _scan_ustar(path) == _scan_tarfile(path) and len(_scan_ustar(path)) == 10
    samples = index_tar(path)
    assert samples[2].key == "dir/002" + "x" * 120 and set(samples[2].members) == {"png", "cls"}


def test_pattern_errors_name_the_pattern(tmp_path):
    pattern = str(tmp_path / "imagenet-train-{0000..0003}.tar")
    with pytest.raises(FileNotFoundError, match="No shard file matches the pattern .*imagenet-train-"):
        expand_shards(pattern)
    open(tmp_path / "imagenet-train-0000.tar", "wb").close()
    with pytest.raises(FileNotFoundError, match="3 of 4 shards"):
        expand_shards(pattern)
    with pytest.raises(ValueError, match="Empty shard pattern"):
        expand_shards("")
    with pytest.raises(ValueError, match="only local"):
        expand_shards("pipe:curl -s http://x/{0..1}.tar")


def test_bad_keys_and_formats_are_rejected(tmp_path):
    with ShardWriter(str(tmp_path), "train") as writer:
        with pytest.raises(ValueError, match="no '.'"):
            writer.write("a.b", b"x", 0)
        with pytest.raises(ValueError, match="extension"):
            writer.write("a", b"x", 0, ext="bmp")
    with pytest.raises(ValueError, match="image_format"):
        encode_image(Image.new("RGB", (2, 2)), "gif")


def _imagenet_folder(root):
    """root/val/<wnid>/ with 2 PNG-content files, 2 JPEGs and one garbage file."""
    dataset = SyntheticImages(resolution=16, seed=0)
    files = {}
    for i, wnid in enumerate(["n02", "n01", "n03"]):
        os.makedirs(root / "val" / wnid)
        for j in range(2):
            data = encode_image(dataset[2 * i + j][0], "jpg" if j else "png")
            (root / "val" / wnid / f"{wnid}_{j}.JPEG").write_bytes(data)
            files[f"{wnid}_{j}"] = (data, sorted(["n02", "n01", "n03"]).index(wnid))
    (root / "val" / "n01" / "broken.JPEG").write_bytes(b"not an image")
    return files


def _run_create_sharded(monkeypatch, capsys, argv):
    monkeypatch.syspath_prepend(os.path.join(ROOT, "scripts"))
    import create_sharded_dataset
    monkeypatch.setattr(sys, "argv", ["create_sharded_dataset.py", *argv])
    create_sharded_dataset.main()
    return capsys.readouterr().out


def test_create_sharded_dataset_keeps_bytes_sorts_classes_and_skips_bad_files(tmp_path, monkeypatch, capsys):
    files = _imagenet_folder(tmp_path / "in")
    args = ["--data_root", str(tmp_path / "in"), "--split", "val", "--maxcount", "4", "--workers", "1", "--filekey"]
    out = _run_create_sharded(monkeypatch, capsys, [*args, "--output", str(tmp_path / "out")])
    assert "7 files, 6 samples, 3 classes, 1 skipped, 2 shards" in out and "imagenet-val-{0000..0001}.tar" in out
    source = ShardSource(str(tmp_path / "out" / "val" / "imagenet-val-{0000..0001}.tar"))
    loaded = {key: (data, class_id) for key, data, class_id in map(source.load, source.eval_refs())}
    assert loaded == files
    extensions = {s.key: set(s.members) for p in source.paths for s in index_tar(p)}
    assert all(extensions[key] == {"cls", "png" if key.endswith("_0") else "jpg"} for key in files)
    _run_create_sharded(monkeypatch, capsys, [*args, "--output", str(tmp_path / "again")])
    for name in ("imagenet-val-0000.tar", "imagenet-val-0001.tar"):  # seeded shuffle: same shards again
        assert (tmp_path / "out" / "val" / name).read_bytes() == (tmp_path / "again" / "val" / name).read_bytes()
