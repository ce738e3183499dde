"""`streamwatch serve` for real clients, through the official `openai` client: usage in answers and in
the last streamed chunk when asked, one choice only, the served model's name only, parameters
type-checked, response_format refused unless text."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from support.helpers import random_image
from support.serve import ServeProcess, data_uri

from streamwatch.inference.backends.transformers import TransformersBackend
from streamwatch.inference.types import Prompt

QUESTION = "Is any person climbing the fence? Answer yes or no."


@pytest.fixture(scope="module")
def server(tiny_glm4v: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    with ServeProcess(tmp_path_factory.mktemp("serve"), tiny_glm4v, extra="max_tokens = 64\n") as process:
        yield process


@pytest.fixture(scope="module")
def client(server: ServeProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0)


def messages(*images: Any, question: str = QUESTION) -> list[Any]:
    parts: list[Any] = [{"type": "image_url", "image_url": {"url": data_uri(image, "PNG")}} for image in images]
    return [{"role": "user", "content": [*parts, {"type": "text", "text": question}]}]


def test_usage_counts_the_tokens_the_model_got(client: openai.OpenAI, tiny_glm4v: Path) -> None:
    small, large = random_image(80, 160, 100), random_image(81, 320, 200)
    local = TransformersBackend.load(str(tiny_glm4v), device="cpu")
    for image in (small, large):
        reply = client.chat.completions.create(
            model="tiny-glm4v", messages=messages(image), max_tokens=1, logprobs=True, top_logprobs=2
        )
        assert reply.usage is not None
        model_got = local.yes_no_inputs([Prompt(image, QUESTION)])["input_ids"].shape[1]
        assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (model_got, 1)
        assert reply.usage.total_tokens == model_got + 1
    several = client.chat.completions.create(
        model="tiny-glm4v", messages=messages(small, small, large), max_tokens=1, logprobs=True
    )
    frames = local.yes_no_inputs([Prompt(large, QUESTION, (small, small))])["input_ids"].shape[1]
    assert several.usage is not None and several.usage.prompt_tokens == frames
    text = client.chat.completions.create(
        model="tiny-glm4v", messages=messages(small, question="Describe the scene."), max_tokens=6
    )
    generated = local.generate_counted([Prompt(small, "Describe the scene.")], 6)[0][1]
    assert text.usage is not None and text.usage.completion_tokens == generated and 1 <= generated <= 6
    assert text.usage.prompt_tokens == local._inputs([Prompt(small, "Describe the scene.")])["input_ids"].shape[1]
    assert text.usage.total_tokens == text.usage.prompt_tokens + text.usage.completion_tokens


def test_streamed_usage_comes_in_a_last_chunk_when_asked(client: openai.OpenAI) -> None:
    image = random_image(82)
    chunks = list(
        client.chat.completions.create(
            model="tiny-glm4v",
            messages=messages(image, question="Describe the scene."),
            max_tokens=4,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    *answer, last = chunks
    assert last.choices == [] and last.usage is not None and last.usage.prompt_tokens > 0
    assert all(chunk.usage is None for chunk in answer) and answer[-1].choices[0].finish_reason == "stop"
    plain = list(
        client.chat.completions.create(
            model="tiny-glm4v", messages=messages(image, question="Describe the scene."), max_tokens=4, stream=True
        )
    )
    assert all(chunk.usage is None and chunk.choices for chunk in plain)
    same = "".join(c.choices[0].delta.content or "" for c in plain)
    assert same == "".join(c.choices[0].delta.content or "" for c in answer)


@pytest.mark.parametrize(
    ("extra", "error", "param", "says"),
    [
        ({"n": 2}, openai.BadRequestError, "n", "gives one choice per request"),
        ({"temperature": "hot"}, openai.BadRequestError, "temperature", "valid number"),
        ({"temperature": 3}, openai.BadRequestError, "temperature", "less than or equal to 2"),
        ({"top_p": True}, openai.BadRequestError, "top_p", "valid number"),
        ({"seed": 1.5}, openai.BadRequestError, "seed", "valid integer"),
        ({"max_tokens": "1"}, openai.BadRequestError, "max_tokens", "valid integer"),
        ({"logprobs": "yes"}, openai.BadRequestError, "logprobs", "valid boolean"),
        ({"response_format": {"type": "json_object"}}, openai.BadRequestError, "response_format", "not supported"),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": {}}}},
            openai.BadRequestError,
            "response_format",
            "'json_schema' is not supported: answers are free text",
        ),
        ({"stream_options": {"include_usage": True}}, openai.BadRequestError, "stream_options", "only with stream"),
        (
            {"model": "gpt-4o"},
            openai.NotFoundError,
            "model",
            "'gpt-4o' is not served here; this server serves 'tiny-glm4v'",
        ),
    ],
)
def test_what_is_not_honoured_is_refused_clearly(
    client: openai.OpenAI, server: ServeProcess, extra: dict[str, Any], error: type[Exception], param: str, says: str
) -> None:
    body: dict[str, Any] = {"model": "tiny-glm4v", "messages": messages(random_image(83)), "max_tokens": 1} | extra
    with pytest.raises(error) as raised:
        client.chat.completions.create(**body)
    problem = raised.value.body  # type: ignore[attr-defined]
    assert isinstance(problem, dict) and says in problem["message"] and problem["param"].startswith(param)
    assert httpx.get(server.url.removesuffix("/v1") + "/health").status_code == 200


def test_what_is_accepted(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model="tiny-glm4v",
        messages=messages(random_image(84)),
        max_tokens=1,
        n=1,
        temperature=0.2,
        top_p=1,
        seed=7,
        response_format={"type": "text"},
        user="operator-1",
    )
    assert len(reply.choices) == 1 and isinstance(reply.choices[0].message.content, str)
    assert reply.usage is not None and reply.usage.completion_tokens == 1  # max_tokens = 1
