"""What the pipeline's pictures of a trained model count and pick, from its real predictions on the test set."""
import pytest
import torch

import train
from utils.plotting import confusion_counts, surest_mistakes

from test_data import TEST_COUNTS


@pytest.fixture(scope="module")
def test_set_probabilities(trained_model, mnist):
    return train.evaluate(trained_model, mnist.test_images, mnist.test_labels)[2]


def test_the_confusion_matrix_has_a_row_per_true_digit(test_set_probabilities, mnist):
    predictions, labels = test_set_probabilities.argmax(1), mnist.test_labels
    counts = confusion_counts(predictions, labels)
    assert counts.sum(1).tolist() == TEST_COUNTS  # rows: the true digits
    assert counts.sum(0).tolist() == predictions.bincount(minlength=10).tolist()  # columns: the predictions
    for true in range(10):
        assert counts[true].tolist() == [int(((labels == true) & (predictions == guess)).sum()) for guess in range(10)]


def test_the_mistakes_shown_are_the_surest_ones_surest_first(test_set_probabilities, mnist):
    labels = mnist.test_labels
    confidence, predictions = test_set_probabilities.max(1)
    wrong = predictions != labels
    shown = surest_mistakes(test_set_probabilities, labels, 24)
    assert len(shown) == min(24, int(wrong.sum())) and wrong[shown].all()
    assert torch.equal(confidence[shown], confidence[wrong].sort(descending=True).values[:len(shown)])
