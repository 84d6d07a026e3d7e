import hashlib

import numpy as np
import pytest
import torch

from core.data import DataError, digit_pools, draw_pairs, integer_csv, load_sample_pools, pool_pairs, sample_csv_path


def test_sample_pools_are_stratified_and_disjoint():
    train, test = load_sample_pools()
    assert train.images.shape == (2500, 28, 28) and test.images.shape == (2500, 28, 28)
    assert np.bincount(train.classes).tolist() == [250] * 10
    assert np.bincount(test.classes).tolist() == [250] * 10
    digest = lambda pool: {hashlib.sha1(im.tobytes()).hexdigest() for im in pool.images}  # noqa: E731
    assert not digest(train) & digest(test)


def test_the_sample_is_parsed_as_loadtxt_parses_it():
    import gzip

    raw = gzip.open(sample_csv_path()).read()
    expected = np.loadtxt(raw.decode().splitlines(), delimiter=",", dtype=np.float32)
    parsed = integer_csv(raw)
    assert parsed is not None and parsed.dtype == np.float32
    assert np.array_equal(parsed, expected)


@pytest.mark.parametrize(
    "text, rows",
    [
        (b"1,2,3\n4,5,6", [[1, 2, 3], [4, 5, 6]]),
        (b"12,345\n0,7\n", [[12, 345], [0, 7]]),
        (b"9999999\n", [[9999999]]),
    ],
)
def test_integer_csv_reads_rows_of_integers(text, rows):
    assert integer_csv(text).tolist() == rows


@pytest.mark.parametrize(
    "text", [b"", b"\n", b"1,2\n3\n", b"1,,2\n3,4,5\n", b"1.5,2\n", b"-1,2\n", b"1\r\n2\r\n", b"1, 2\n", b"12345678\n"]
)
def test_integer_csv_leaves_anything_else_to_the_general_parser(text):
    assert integer_csv(text) is None


def test_draw_shapes_labels_and_normalisation():
    data = draw_pairs(0, 0, train_pairs=200, val_pairs=20, test_pairs=150)
    assert data.train.x.shape == (180, 2, 14, 14)
    assert data.val.x.shape == (20, 2, 14, 14)
    assert data.test.x.shape == (150, 2, 14, 14)
    for split in (data.train, data.val, data.test):
        assert split.x.dtype == torch.float32
        assert torch.equal(split.target, (split.classes[:, 0] > split.classes[:, 1]).long())
    assert abs(float(data.train.x.mean())) < 1e-4
    assert abs(float(data.train.x.std()) - 1) < 1e-2


def test_draw_is_a_pure_function_of_seed_and_rep():
    a, b = draw_pairs(3, 1, 100, 10, 100), draw_pairs(3, 1, 100, 10, 100)
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.test.classes, b.test.classes)
    c = draw_pairs(3, 2, 100, 10, 100)
    assert not torch.equal(a.train.x, c.train.x)


def test_pairs_use_distinct_digits_within_a_draw():
    data = draw_pairs(0, 0, 1000, 100, 1000)
    images = torch.cat([data.train.x, data.val.x]).reshape(-1, 14 * 14)
    assert len({hashlib.sha1(row.numpy().tobytes()).hexdigest() for row in images}) == 2000


def test_average_pooling_by_two():
    image = np.zeros((1, 28, 28), dtype=np.uint8)
    image[0, 0:2, 0:2] = [[255, 255], [0, 0]]
    pooled = pool_pairs(image)
    assert pooled.shape == (1, 14, 14)
    assert pooled[0, 0, 0] == pytest.approx(0.5)


def test_too_many_pairs_is_a_clear_error():
    with pytest.raises(DataError, match="needs 3000 digits"):
        draw_pairs(0, 0, train_pairs=1500)


def test_mnist_offline_without_files_is_a_clear_error(tmp_path, monkeypatch):
    import torchvision.datasets.mnist as mnist

    monkeypatch.setattr(mnist.MNIST, "mirrors", ["http://127.0.0.1:9/"])
    with pytest.raises(DataError, match="put train-images-idx3-ubyte.gz"):
        digit_pools("mnist", tmp_path / "nowhere")


def test_a_pool_pooled_once_equals_pooling_the_drawn_images():
    train, test = load_sample_pools()
    for pool in (train, test):
        chosen = np.random.default_rng(0).choice(len(pool.classes), size=50, replace=False)
        assert pool.pooled.shape == (len(pool.classes), 14, 14)
        assert np.array_equal(pool.pooled[chosen], pool_pairs(pool.images[chosen]))


def test_the_sample_is_parsed_once_per_process_or_taken_from_the_driver(monkeypatch):
    import core.data

    first = load_sample_pools()
    assert load_sample_pools() is first and core.data.sample_pools_loaded() is first
    handed = (first[0], first[1])  # what a worker gets from its driver
    monkeypatch.setattr(core.data, "_sample_pools", None)
    monkeypatch.setattr(core.data, "_parse_sample_pools", lambda: pytest.fail("parsed again"))
    core.data.adopt_sample_pools(None)  # a driver that had none: nothing changes
    assert core.data.sample_pools_loaded() is None
    core.data.adopt_sample_pools(handed)
    assert load_sample_pools() is handed
