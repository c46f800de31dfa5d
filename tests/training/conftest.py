import pytest

from tests.training.corpus import build_corpus


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    """(tokenizer model, dataset prefix) of the tiny interleaved corpus, built once per session."""
    return build_corpus(str(tmp_path_factory.mktemp("training_corpus")))
