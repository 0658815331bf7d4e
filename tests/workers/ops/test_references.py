"""`references`: extra CLIP tokens in the positive branch, weighted in the attention softmax."""

import math

import pytest
import torch


def test_reference_tokens_follow_the_image_token_with_log_weight_bias(planned, image_paths):
    refs = [{"image": str(image_paths[1]), "weight": 0.5}, {"image": str(image_paths[2]), "weight": 0.0}]
    job = planned(references=refs)
    conditioning = job.stack(job.clips)[0]
    assert conditioning.tokens.shape == (1, 5, 3, 32)
    embedding = job.ctx.encoder.embedding(job.ctx.images["references[0].image"])
    assert torch.equal(conditioning.tokens[0, 3, 1], embedding)
    assert conditioning.token_bias is not None
    assert conditioning.token_bias[0, 0].tolist() == [0.0, pytest.approx(math.log(0.5)), -math.inf]  # float32
    # The unconditional branch does not see them: its extra tokens are zeros.
    assert not conditioning.negative_tokens[..., 1:, :].any()
    assert job.operations[0].describe(job.ctx) == {"weights": [0.5, 0.0]}


def test_without_references_there_is_one_token_and_no_bias(planned):
    conditioning = planned().stack(planned().clips)[0]
    assert conditioning.tokens.shape[2] == 1 and conditioning.token_bias is None
