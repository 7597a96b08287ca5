"""The official `openai` SDK against `/v1/chat/completions`, as applications use it."""

import json

import pydantic

from fake_upstream import calls, text

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def test_chat(client, fake):
    fake.script("gpt-fake", text("Hello there."))
    answer = client.chat.completions.create(
        model="gpt-fake", messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}])
    assert answer.choices[0].message.content == "Hello there."
    assert answer.choices[0].finish_reason == "stop"
    assert answer.usage.prompt_tokens == 10 and answer.usage.completion_tokens == 5
    assert answer.model == "gpt-fake"
    assert answer.system_fingerprint == "fp_fake"
    assert fake.last()["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]


def test_streaming(client, fake):
    fake.script("gpt-fake", text("one two three four"))
    stream = client.chat.completions.create(
        model="gpt-fake", messages=[{"role": "user", "content": "count"}], stream=True,
        stream_options={"include_usage": True})
    chunks = list(stream)
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert "".join(pieces) == "one two three four"
    assert len(pieces) == 4, "relayed piece by piece"
    assert chunks[-1].usage.total_tokens == 15


def test_tool_call_round_trip(client, fake):
    fake.script("gpt-fake", calls(("call_1", "get_weather", '{"city": "Oslo"}')), text("Sunny in Oslo."))
    messages = [{"role": "user", "content": "Weather in Oslo?"}]
    first = client.chat.completions.create(model="gpt-fake", messages=messages, tools=[WEATHER],
                                           tool_choice="auto")
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert (call.id, call.function.name, json.loads(call.function.arguments)) == \
        ("call_1", "get_weather", {"city": "Oslo"})
    messages += [choice.message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": call.id, "content": '{"sky": "sunny"}'}]
    second = client.chat.completions.create(model="gpt-fake", messages=messages, tools=[WEATHER])
    assert second.choices[0].message.content == "Sunny in Oslo."
    sent = fake.last()["messages"]
    assert sent[1]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert sent[2] == {"role": "tool", "tool_call_id": "call_1", "content": '{"sky": "sunny"}'}
    assert fake.last()["tools"] == [WEATHER]


def test_streamed_tool_calls_are_reassembled_by_the_sdk(client, fake):
    args = '{"city": "Bergen", "unit": "celsius"}'
    fake.script("gpt-fake", calls(("call_a", "get_weather", args), ("call_b", "get_weather", '{"city": "Rome"}')))
    with client.chat.completions.stream(model="gpt-fake", messages=[{"role": "user", "content": "two cities"}],
                                        tools=[WEATHER]) as stream:
        fragments = [e for e in stream if e.type == "tool_calls.function.arguments.delta"]
        final = stream.get_final_completion()
    assert len(fragments) >= 4, "arguments arrived in pieces"
    got = [(c.id, c.function.arguments) for c in final.choices[0].message.tool_calls]
    assert got == [("call_a", args), ("call_b", '{"city": "Rome"}')]
    assert final.choices[0].finish_reason == "tool_calls"


class Forecast(pydantic.BaseModel):
    city: str
    celsius: int


def test_structured_output_json_schema(client, fake):
    fake.script("gpt-fake", text('{"city": "Oslo", "celsius": 21}'))
    parsed = client.chat.completions.parse(model="gpt-fake", messages=[{"role": "user", "content": "forecast"}],
                                           response_format=Forecast)
    assert parsed.choices[0].message.parsed == Forecast(city="Oslo", celsius=21)
    sent = fake.last()["response_format"]
    assert sent["type"] == "json_schema" and sent["json_schema"]["name"] == "Forecast"
    assert sent["json_schema"]["schema"]["properties"]["celsius"]["type"] == "integer"


def test_sampling_parameters_and_extra_body_reach_the_upstream(client, fake):
    client.chat.completions.create(
        model="gpt-fake", messages=[{"role": "user", "content": "x"}], top_p=0.5, stop=["END"], seed=42,
        presence_penalty=0.3, frequency_penalty=-0.2, logit_bias={"50256": -100}, user="end-user-7",
        max_completion_tokens=64, temperature=0.4, parallel_tool_calls=False, tools=[WEATHER],
        extra_body={"top_k": 40, "repetition_penalty": 1.1})
    sent = fake.last()
    for name, value in {"top_p": 0.5, "stop": ["END"], "seed": 42, "presence_penalty": 0.3,
                        "frequency_penalty": -0.2, "logit_bias": {"50256": -100}, "user": "end-user-7",
                        "parallel_tool_calls": False, "top_k": 40, "repetition_penalty": 1.1}.items():
        assert sent[name] == value, name
    assert sent["max_tokens"] == 64
    assert abs(sent["temperature"] - 0.4) < 1e-6


def test_image_parts_arrive_at_the_upstream(client, fake):
    parts = [{"type": "text", "text": "What is this?"},
             {"type": "image_url", "image_url": {"url": "https://example.com/cat.png", "detail": "low"}},
             {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]
    client.chat.completions.create(model="gpt-fake", messages=[{"role": "user", "content": parts}])
    assert fake.last()["messages"][0]["content"] == parts


def test_extra_keys_inside_messages_are_ignored(client, fake):
    fake.script("gpt-fake", text("ok"))
    answer = client.chat.completions.create(
        model="gpt-fake", messages=[{"role": "user", "content": "hi", "timestamp": 1733000000, "id": "m-1"}])
    assert answer.choices[0].message.content == "ok"
    assert fake.last()["messages"] == [{"role": "user", "content": "hi"}]


def test_a_tool_using_conversation_kept_in_a_session(relay, client, fake):
    session = relay.session(model="gpt-fake", system_prompt="Use tools.", tools=[WEATHER])
    fake.script("gpt-fake", calls(("call_7", "get_weather", '{"city": "Oslo"}')), text("It is sunny."))
    first = client.chat.completions.create(model="gpt-fake", messages=[{"role": "user", "content": "Weather?"}],
                                           extra_body={"session_id": session})
    call = first.choices[0].message.tool_calls[0]
    second = client.chat.completions.create(
        model="gpt-fake", messages=[{"role": "tool", "tool_call_id": call.id, "content": "sunny"}],
        extra_body={"session_id": session})
    assert second.choices[0].message.content == "It is sunny."
    sent = fake.last()
    assert [m["role"] for m in sent["messages"]] == ["system", "user", "assistant", "tool"]
    assert sent["tools"] == [WEATHER], "the session's tools"
    assert "session_id" not in sent
    turns = relay.history(session)
    assert [t["role"] for t in turns] == ["user", "assistant", "tool", "assistant"]
    assert turns[1]["tool_calls"][0]["id"] == "call_7"
