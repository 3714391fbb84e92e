"""Dynamic batching: concurrent requests share forwards, results are unchanged."""

from __future__ import annotations

import concurrent.futures
import time
from importlib import resources
from pathlib import Path

import httpx
import pytest
import torch
from prometheus_client.parser import text_string_to_metric_families

from lavt.serve.adapter import PreparedImage
from lavt.serve.batcher import DynamicBatcher, QueueFull

pytest_plugins = ["serve_helpers"]
EXAMPLES = Path(str(resources.files("lavt.serve") / "static" / "examples"))


def batch_histogram(url: str) -> dict[str, float]:
    """{"count": forwards, "sum": pairs, "le_1": forwards of one pair}."""
    text = httpx.get(f"{url}/metrics").text
    (family,) = [f for f in text_string_to_metric_families(text) if f.name == "lavt_batch_size"]
    values = {}
    for sample in family.samples:
        if sample.name.endswith("_count"):
            values["count"] = sample.value
        elif sample.name.endswith("_sum"):
            values["sum"] = sample.value
        elif sample.name.endswith("_bucket") and sample.labels["le"] == "1.0":
            values["le_1"] = sample.value
    return values


def requests_to_send() -> list[tuple[str, list[str]]]:
    import json

    examples = json.loads((EXAMPLES / "examples.json").read_text())
    jobs = []
    for example in examples:
        texts = example["texts"]
        jobs.append((example["file"], texts[:1]))
        jobs.append((example["file"], texts[1:]))
    return jobs  # 8 requests, 1-2 expressions each


def send(url: str, file: str, texts: list[str]) -> dict:
    reply = httpx.post(
        f"{url}/v1/segment",
        files={"image": (file, (EXAMPLES / file).read_bytes())},
        data={"text": texts},
        timeout=60,
    )
    assert reply.status_code == 200, reply.text
    return reply.json()


@pytest.mark.slow
def test_concurrent_requests_share_a_forward_with_identical_results(server, predictor):
    jobs = requests_to_send()
    one_at_a_time = [send(server, file, texts) for file, texts in jobs]
    before = batch_histogram(server)
    with concurrent.futures.ThreadPoolExecutor(len(jobs)) as pool:
        together = list(pool.map(lambda job: send(server, *job), jobs))
    after = batch_histogram(server)
    forwards = after["count"] - before["count"]
    pairs = after["sum"] - before["sum"]
    assert pairs == sum(len(texts) for _, texts in jobs)
    assert forwards < len(jobs)  # some requests ran together
    assert pairs / forwards > 1
    assert together == one_at_a_time
    for (file, texts), body in zip(jobs, together, strict=True):
        expected = predictor.predict(EXAMPLES / file, texts)
        for result, prediction in zip(body["results"], expected, strict=True):
            assert result["area"] == int(prediction.mask.sum())


# ----------------------------------------------------------------------------- unit tests


class EchoAdapter:
    """Stands in for the model: each row of the mask logits and of the no-target logits
    is its pair's first token id (negated for the no-target logits); records batch sizes."""

    def __init__(self) -> None:
        self.batches: list[int] = []

    def forward(self, pixels, input_ids, attention_mask):
        self.batches.append(pixels.shape[0])
        first = input_ids[:, :1].float()  # (B, 1)
        logits = first.view(-1, 1, 1, 1).expand(-1, 2, 2, 2)  # (B, 2, 2, 2)
        return logits, -first.expand(-1, 2)  # (B, 2)


def prepared(first_ids: list[int]) -> PreparedImage:
    ids = torch.zeros(len(first_ids), 3, dtype=torch.long)
    ids[:, 0] = torch.tensor(first_ids)
    return PreparedImage(
        torch.zeros(3, 4, 4), ids, torch.ones_like(ids), [str(i) for i in first_ids], 4, 4
    )


def test_batcher_splits_pairs_across_forwards_in_order():
    adapter = EchoAdapter()
    batcher = DynamicBatcher(adapter, max_batch=4, max_wait_s=0.2, max_queue=8)
    far = time.monotonic() + 30
    jobs = [batcher.submit(prepared(list(range(10 * k, 10 * k + n))), far)
            for k, n in enumerate((3, 6, 1))]  # fmt: skip
    batcher.start()
    try:
        outputs = [job.future.result(timeout=10) for job in jobs]
    finally:
        batcher.stop()
    assert adapter.batches == [4, 4, 2]
    for k, ((logits, no_target), n) in enumerate(zip(outputs, (3, 6, 1), strict=True)):
        assert logits.shape == (n, 2, 2, 2) and no_target.shape == (n, 2)
        assert logits[:, 0, 0, 0].tolist() == [float(10 * k + i) for i in range(n)]
        assert no_target[:, 1].tolist() == [-float(10 * k + i) for i in range(n)]


def test_batcher_queue_limit_and_expired_jobs():
    adapter = EchoAdapter()
    batcher = DynamicBatcher(adapter, max_batch=4, max_wait_s=0.0, max_queue=2)
    expired = batcher.submit(prepared([1]), time.monotonic() - 1)
    live = batcher.submit(prepared([2]), time.monotonic() + 30)
    with pytest.raises(QueueFull):
        batcher.submit(prepared([3]), time.monotonic() + 30)
    batcher.start()
    try:
        assert live.future.result(timeout=10)[0][:, 0, 0, 0].tolist() == [2.0]
    finally:
        batcher.stop()
    assert not expired.future.done()  # dropped unanswered: its client is gone
    assert adapter.batches == [1]


def test_batcher_failed_forward_fails_its_requests_only():
    class Failing(EchoAdapter):
        def forward(self, pixels, input_ids, attention_mask):
            if int(input_ids[0, 0]) == 666:
                raise RuntimeError("boom")
            return super().forward(pixels, input_ids, attention_mask)

    batcher = DynamicBatcher(Failing(), max_batch=1, max_wait_s=0.0, max_queue=4)
    batcher.start()
    try:
        bad = batcher.submit(prepared([666]), time.monotonic() + 30)
        with pytest.raises(RuntimeError, match="boom"):
            bad.future.result(timeout=10)
        good = batcher.submit(prepared([5]), time.monotonic() + 30)
        assert good.future.result(timeout=10)[0][:, 0, 0, 0].tolist() == [5.0]
    finally:
        batcher.stop()
