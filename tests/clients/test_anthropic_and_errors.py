"""The same SDK flows on a model served by Anthropic's Messages API, and the failures an
SDK raises as its own exception types."""

import json

import openai
import pytest

from fake_upstream import calls, error, text
from test_chat_sdk import WEATHER


def test_anthropic_chat_stream_and_tools(client, fake):
    fake.script("claude-fake", text("Bonjour tout le monde"))
    answer = client.chat.completions.create(
        model="claude-fake", messages=[{"role": "system", "content": "Be French."}, {"role": "user", "content": "Hi"}])
    assert answer.choices[0].message.content == "Bonjour tout le monde"
    sent = fake.last("claude-fake")
    assert sent["system"] == "Be French." and sent["messages"] == [{"role": "user", "content": "Hi"}]

    stream = client.chat.completions.create(model="claude-fake", messages=[{"role": "user", "content": "Hi"}],
                                            stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "Bonjour tout le monde"

    fake.script("claude-fake", calls(("toolu_1", "get_weather", '{"city": "Oslo"}')), text("Ensoleillé."))
    with client.chat.completions.stream(model="claude-fake", tools=[WEATHER],
                                        messages=[{"role": "user", "content": "Météo?"}]) as s:
        final = s.get_final_completion()
    message = final.choices[0].message
    assert final.choices[0].finish_reason == "tool_calls"
    assert json.loads(message.tool_calls[0].function.arguments) == {"city": "Oslo"}
    done = client.chat.completions.create(
        model="claude-fake", tools=[WEATHER],
        messages=[{"role": "user", "content": "Météo?"}, message.model_dump(exclude_none=True),
                  {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"}])
    assert done.choices[0].message.content == "Ensoleillé."
    sent = fake.last("claude-fake")
    assert sent["messages"][1]["content"][0] == {"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                                                 "input": {"city": "Oslo"}}
    assert sent["messages"][2]["content"][0]["type"] == "tool_result"
    assert sent["tools"][0]["input_schema"]["properties"]["city"]["type"] == "string"


def test_anthropic_images_and_unsupported_parameters(client, fake):
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    client.chat.completions.create(model="claude-fake",
                                   messages=[{"role": "user", "content": [{"type": "text", "text": "this?"}, image]}])
    block = fake.last("claude-fake")["messages"][0]["content"][1]
    assert block == {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                                 "data": "iVBORw0KGgo="}}
    before = len(fake.bodies("claude-fake"))
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model="claude-fake", messages=[{"role": "user", "content": "x"}], seed=1)
    assert refused.value.body["param"] == "seed"
    assert len(fake.bodies("claude-fake")) == before, "nothing was sent"


def test_anthropic_tools_kept_in_a_session(relay, client, fake):
    session = relay.session(model="claude-fake", tools=[WEATHER])
    fake.script("claude-fake", calls(("toolu_9", "get_weather", '{"city": "Rome"}')), text("Rainy in Rome."))
    first = client.chat.completions.create(model="claude-fake", messages=[{"role": "user", "content": "Rome?"}],
                                           extra_body={"session_id": session})
    call_id = first.choices[0].message.tool_calls[0].id
    second = client.chat.completions.create(
        model="claude-fake", messages=[{"role": "tool", "tool_call_id": call_id, "content": "rain"}],
        extra_body={"session_id": session})
    assert second.choices[0].message.content == "Rainy in Rome."
    assert [t["role"] for t in relay.history(session)] == ["user", "assistant", "tool", "assistant"]


def test_a_prompt_too_long_for_every_model_is_a_bad_request(client, fake):
    too_long = error(400, "context_length_exceeded", "This model's maximum context length is 16000 tokens.")
    fake.script("gpt-chain", too_long)
    fake.script("gpt-fake-backup", too_long)
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(model="gpt-chain", messages=[{"role": "user", "content": "long"}])
    assert raised.value.code == "context_length_exceeded"
    assert len(fake.bodies("gpt-fake-backup")) == 1, "the fallback was tried"


def test_every_model_rate_limited_is_a_rate_limit_error(client, fake):
    fake.script("gpt-chain", error(429, "rate_limit_exceeded", "slow down", {"retry-after": "30"}))
    fake.script("gpt-fake-backup", error(429, "rate_limit_exceeded", "slow down", {"retry-after": "12"}))
    with pytest.raises(openai.RateLimitError) as raised:
        client.chat.completions.create(model="gpt-chain", messages=[{"role": "user", "content": "x"}])
    assert raised.value.response.headers["retry-after"] == "12"


def test_a_spending_cap_is_an_insufficient_quota_rate_limit_error(relay, client, fake):
    session = relay.session(model="gpt-fake", max_cost_usd=0.000001)
    with pytest.raises(openai.RateLimitError) as raised:
        client.chat.completions.create(model="gpt-fake", messages=[{"role": "user", "content": "x"}],
                                       extra_body={"session_id": session})
    assert raised.value.code == "insufficient_quota"
    assert fake.bodies() == [], "no upstream call"
