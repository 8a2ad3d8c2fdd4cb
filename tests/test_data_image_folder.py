"""Image-folder datasets: decoding, the uint8 cache, load_data's dispatch, and every bad tree."""
import os

import numpy as np
import pytest
from PIL import Image

from nasflow.data import MIN_SAMPLES, load_data, load_npz
from nasflow.errors import DataError
from nasflow.image_folder import load_image_folder


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Every test decodes into its own cache, as a user's first load would."""
    monkeypatch.setenv("NASFLOW_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _write(path, pixels, mode):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels, mode).save(path)


def make_tree(root, classes=("cat", "dog", "eel"), per_class=12, size=(6, 5), mode="RGB", ext=".png"):
    """Images whose mean brightness is their class index, so labels can be checked from pixels."""
    rng = np.random.default_rng(0)
    h, w = size
    for c, name in enumerate(classes):
        for i in range(per_class):
            shape = (h, w, 3) if mode == "RGB" else (h, w)
            pixels = (rng.integers(0, 20, size=shape) + 100 * c).astype(np.uint8)
            _write(root / name / f"{i:03d}{ext}", pixels, mode)
    return root


def _all(dataset):
    """(images, labels) of train, valid and test."""
    return [(dataset.x_train, dataset.y_train), (dataset.x_valid, dataset.y_valid), (dataset.x_test, dataset.y_test)]


def test_tree_loads_with_sorted_classes_and_labels_that_match_the_pixels(tmp_path):
    root = make_tree(tmp_path / "pets", classes=("zebra", "ant", "mole"))
    data = load_image_folder(root)
    assert data.classes == ("ant", "mole", "zebra") and data.num_classes == 3
    assert data.image_shape == (3, 6, 5) and data.name == "pets"
    assert len(data.y_train) + len(data.y_valid) + len(data.y_test) == 36
    # pixels were written as 100 * (index in the order given); sorted order maps zebra (0) last
    brightness_rank = {0: 2, 1: 0, 2: 1}  # written index -> sorted class index
    for x, y in _all(data):
        means = x.mean(axis=(1, 2, 3))
        order = np.argsort([means[y == k].mean() for k in range(3)])
        assert order.tolist() == [brightness_rank[i] for i in range(3)]
    assert abs(float(data.x_train.mean())) < 1e-4  # standardised by the training split like load_npz


def test_tree_equals_the_same_images_as_an_npz(tmp_path):
    """Same pixels and labels, same split and standardisation: load_npz and the folder agree exactly."""
    root = make_tree(tmp_path / "pets", mode="L")
    files = [f for c in ("cat", "dog", "eel") for f in sorted((root / c).glob("*.png"))]
    x = np.stack([np.asarray(Image.open(f))[None] for f in files])
    y = np.repeat(np.array(["cat", "dog", "eel"]), 12)
    np.savez(tmp_path / "pets.npz", x=x, y=y)
    folder, npz = load_image_folder(root), load_npz(tmp_path / "pets.npz")
    assert folder.image_shape == (1, 6, 5)
    for (a, ya), (b, yb) in zip(_all(folder), _all(npz)):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(ya, yb)
    assert folder.classes == npz.classes and folder.fingerprint == npz.fingerprint


def test_second_load_decodes_nothing_and_a_touched_tree_decodes_again(tmp_path, monkeypatch, private_cache):
    root = make_tree(tmp_path / "pets")
    first = load_image_folder(root)
    cached = list((private_cache / "images").glob("*.npz"))
    assert len(cached) == 1 and not list((private_cache / "images").glob(".*"))  # no temp file left behind
    with np.load(cached[0], allow_pickle=False) as z:
        assert z["x"].dtype == np.uint8 and z["x"].shape == (36, 3, 6, 5)

    def no_decoding(*args, **kwargs):
        raise AssertionError("an image was opened although the tree is cached")

    with monkeypatch.context() as m:
        m.setattr(Image, "open", no_decoding)
        second = load_image_folder(root)
    assert second.fingerprint == first.fingerprint
    np.testing.assert_array_equal(second.x_train, first.x_train)

    # a changed file must not be served from the old cache
    _write(root / "cat" / "000.png", np.full((6, 5, 3), 255, np.uint8), "RGB")
    os.utime(root / "cat" / "000.png", ns=(1, 1))
    opened = []
    real_open = Image.open
    with monkeypatch.context() as m:
        m.setattr(Image, "open", lambda *a, **k: opened.append(a[0]) or real_open(*a, **k))
        third = load_image_folder(root)
    assert opened and third.fingerprint != first.fingerprint


def test_damaged_cache_is_decoded_again(tmp_path, private_cache):
    root = make_tree(tmp_path / "pets")
    first = load_image_folder(root)
    (cached,) = (private_cache / "images").glob("*.npz")
    cached.write_bytes(b"PK\x03\x04 cut short")
    assert load_image_folder(root).fingerprint == first.fingerprint


def test_extensions_case_hidden_files_nested_folders_and_other_files(tmp_path):
    root = make_tree(tmp_path / "pets", classes=("cat", "dog"), per_class=15, ext=".PNG")
    pixels = np.zeros((6, 5, 3), np.uint8)
    _write(root / "cat" / "deeper" / "a.JPG", pixels, "RGB")
    _write(root / "cat" / "b.webp", pixels, "RGB")
    _write(root / "dog" / "c.tif", pixels, "RGB")
    _write(root / "dog" / "d.bmp", pixels, "RGB")
    _write(root / "dog" / ".hidden.png", np.zeros((9, 9, 3), np.uint8), "RGB")  # would be a mixed size
    _write(root / ".thumbnails" / "e.png", pixels, "RGB")  # a hidden folder is no class
    _write(root / "dog" / ".cache" / "f.png", np.zeros((9, 9, 3), np.uint8), "RGB")
    (root / "dog" / "notes.txt").write_text("not an image")
    (root / "README.md").write_text("files beside the class folders are ignored")
    data = load_image_folder(root)
    assert data.classes == ("cat", "dog")
    assert len(data.y_train) + len(data.y_valid) + len(data.y_test) == 34


def test_grey_palette_and_alpha_images_decode_to_grey_or_rgb(tmp_path):
    grey = tmp_path / "grey"
    for i in range(MIN_SAMPLES // 2):
        _write(grey / "a" / f"{i}.png", np.full((5, 5), i, np.uint8), "L")
        _write(grey / "b" / f"{i}.png", np.full((5, 5, 2), i, np.uint8), "LA")  # alpha dropped
    assert load_image_folder(grey).image_shape == (1, 5, 5)
    colour = tmp_path / "colour"
    for i in range(MIN_SAMPLES // 2):
        _write(colour / "a" / f"{i}.png", np.full((5, 5, 4), i, np.uint8), "RGBA")
        _write(colour / "b" / f"{i}.gif", np.full((5, 5), i, np.uint8), "L")  # GIF is stored as a palette
        assert Image.open(colour / "b" / f"{i}.gif").mode == "P"
    assert load_image_folder(colour).image_shape == (3, 5, 5)


def test_progress_bar_only_when_asked(tmp_path, capsys):
    root = make_tree(tmp_path / "pets")
    load_image_folder(root, cache_dir=tmp_path / "quiet")
    assert capsys.readouterr().err == ""
    load_image_folder(root, progress=True, cache_dir=tmp_path / "loud")
    assert "decoding pets" in capsys.readouterr().err


def test_load_data_dispatches_on_what_the_path_is(tmp_path):
    root = make_tree(tmp_path / "pets")
    assert load_data(root).classes == ("cat", "dog", "eel")
    with open(tmp_path / "mine.NPZ", "wb") as f:  # np.savez would append .npz to a name in capitals
        np.savez(f, x=np.zeros((40, 1, 8, 8)), y=np.arange(40) % 2)
    assert load_data(tmp_path / "mine.NPZ").num_classes == 2
    with pytest.raises(DataError, match="data file not found"):
        load_data(tmp_path / "missing.npz")
    (tmp_path / "table.csv").write_text("a,b\n")
    for path, message in ((tmp_path / "table.csv", "is neither an .npz file nor a folder"),
                          (tmp_path / "nowhere", "data not found")):
        with pytest.raises(DataError, match=message) as info:
            load_data(path)
        assert ".npz file with arrays x and y" in str(info.value) and "one sub-folder of images per class" in str(info.value)


def _corrupt(root):
    make_tree(root)
    (root / "dog" / "005.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")


def _truncated(root):
    make_tree(root, size=(40, 40))
    whole = (root / "eel" / "003.png").read_bytes()
    (root / "eel" / "003.png").write_bytes(whole[: len(whole) // 2])


def _mixed_sizes(root):
    make_tree(root)
    _write(root / "dog" / "odd.png", np.zeros((7, 5, 3), np.uint8), "RGB")


def _mixed_channels(root):
    make_tree(root)
    _write(root / "eel" / "grey.png", np.zeros((6, 5), np.uint8), "L")


def _sixteen_bit(root):
    make_tree(root, mode="L")
    Image.fromarray(np.zeros((6, 5), np.uint16)).save(root / "cat" / "deep.png")


@pytest.mark.parametrize("build, message", [
    (lambda root: None, r"image folder not found: .*pets"),
    (lambda root: root.mkdir(), r"has no class sub-folders; put each class's images in a sub-folder"),
    (lambda root: make_tree(root, classes=("cat",), per_class=40), r"one class folder only \('cat'\)"),
    (lambda root: (make_tree(root), (root / "fox").mkdir()), r"class folder .*fox holds no images \(looked for .png"),
    (lambda root: (make_tree(root), (root / "fox").mkdir(), (root / "fox" / "a.txt").write_text("x")), r"fox holds no images"),
    (_corrupt, r"cannot read image .*dog/005.png \(UnidentifiedImageError"),
    (_truncated, r"cannot decode image .*eel/003.png \(OSError"),
    (_mixed_sizes, r"dog/odd.png is 7x5 but cat/000.png is 6x5 \(height x width seen: 6x5, 7x5\)"),
    (_mixed_channels, r"different channel counts \(3 in cat/000.png, 1 in eel/grey.png\)"),
    (_sixteen_bit, r"cat/deep.png has Pillow mode 'I;16' .*save it as 8-bit"),
    (lambda root: make_tree(root, classes=("a", "b"), per_class=MIN_SAMPLES // 2 - 1), r"28 images are too few"),
    (lambda root: make_tree(root, size=(3, 8)), r"images are 3x8; the networks need at least 4x4"),
])
def test_bad_trees_are_one_line_data_errors(tmp_path, build, message):
    root = tmp_path / "pets"
    build(root)
    with pytest.raises(DataError, match=message) as info:
        load_image_folder(root)
    assert "\n" not in str(info.value)


def test_a_file_where_the_folder_should_be(tmp_path):
    (tmp_path / "pets").write_text("x")
    with pytest.raises(DataError, match="image folder is a file, not a folder"):
        load_image_folder(tmp_path / "pets")


def test_nbytes_is_what_the_trainer_holds(tmp_path):
    data = load_image_folder(make_tree(tmp_path / "pets"))
    assert data.nbytes == 36 * 3 * 6 * 5 * 4 + 36 * 8
