"""The official `openai` SDK's Responses and Conversations APIs, served from sessions, on an
OpenAI-compatible upstream and on an Anthropic one."""

import json

import openai
import pydantic
import pytest

from conftest import GLOBEX_KEY
from fake_upstream import calls, text

WEATHER = {"type": "function", "name": "get_weather", "description": "The weather in a city.",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}

MODELS = ["gpt-fake", "claude-fake"]


def sent_texts(body):
    """The texts of a request as the upstream received it, whatever its format."""
    out = []
    for message in body["messages"]:
        content = message.get("content")
        if isinstance(content, str):
            out.append(content)
        elif isinstance(content, list):
            out += [p.get("text", "") for p in content if p.get("type") == "text"]
    if isinstance(body.get("system"), str):
        out.append(body["system"])
    return out


@pytest.mark.parametrize("model", MODELS)
def test_a_chain_by_previous_response_id_sends_the_first_turn_again(client, fake, model):
    fake.script(model, text("Paris."), text("About two million."))
    first = client.responses.create(model=model, input="Capital of France?", instructions="Be brief.")
    assert first.output_text == "Paris."
    assert first.status == "completed" and first.usage.input_tokens == 10
    second = client.responses.create(model=model, input="Population?", previous_response_id=first.id)
    assert second.output_text == "About two million."
    upstream = sent_texts(fake.last(model))
    assert "Capital of France?" in upstream and "Paris." in upstream and "Population?" in upstream
    # Instructions are for their own response only.
    assert "Be brief." not in upstream
    again = client.responses.retrieve(second.id)
    assert again.output_text == "About two million." and again.previous_response_id == first.id


def test_a_fork_from_an_older_response_keeps_only_what_came_before(client, fake):
    fake.script("gpt-fake", text("one"), text("two"), text("branch"))
    first = client.responses.create(model="gpt-fake", input="first")
    client.responses.create(model="gpt-fake", input="second", previous_response_id=first.id)
    branch = client.responses.create(model="gpt-fake", input="instead", previous_response_id=first.id)
    upstream = sent_texts(fake.last())
    assert upstream == ["first", "one", "instead"], "the branch does not see `second`"
    continued = client.responses.create(model="gpt-fake", input="more", previous_response_id=branch.id)
    assert sent_texts(fake.last()) == ["first", "one", "instead", "branch", "more"]
    assert continued.id != branch.id


def test_conversation_turns_and_every_item_in_order(client, fake):
    conversation = client.conversations.create(metadata={"topic": "travel"},
                                               items=[{"type": "message", "role": "user", "content": "I like trains."}])
    fake.script("gpt-fake", text("Trains are great."), text("Take the night train."))
    client.responses.create(model="gpt-fake", input="Paris to Rome?", conversation=conversation.id)
    client.responses.create(model="gpt-fake", input="Overnight?", conversation={"id": conversation.id})
    items = client.conversations.items.list(conversation.id, order="asc")
    texts = [item.content[0].text for item in items.data]
    assert texts == ["I like trains.", "Paris to Rome?", "Trains are great.", "Overnight?", "Take the night train."]
    assert [item.role for item in items.data] == ["user", "user", "assistant", "user", "assistant"]
    newest_first = client.conversations.items.list(conversation.id, limit=2)
    assert [i.content[0].text for i in newest_first.data] == ["Take the night train.", "Overnight?"]
    assert newest_first.has_more
    page2 = client.conversations.items.list(conversation.id, limit=2, after=newest_first.last_id)
    assert [i.content[0].text for i in page2.data] == ["Trains are great.", "Paris to Rome?"]
    assert client.conversations.retrieve(conversation.id).metadata == {"topic": "travel"}
    updated = client.conversations.update(conversation.id, metadata={"topic": "rail"})
    assert updated.metadata == {"topic": "rail"}
    one = client.conversations.items.retrieve(items.data[0].id, conversation_id=conversation.id)
    assert one.content[0].text == "I like trains."


@pytest.mark.parametrize("model", MODELS)
def test_streamed_events_are_numbered_and_the_sdk_assembles_the_answer(client, fake, model):
    fake.script(model, text("The quick brown fox"))
    with client.responses.stream(model=model, input="Tell me") as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    for kind in ["response.output_item.added", "response.content_part.added", "response.output_text.delta",
                 "response.output_text.done", "response.content_part.done", "response.output_item.done"]:
        assert kind in kinds, kind
    numbers = [e.sequence_number for e in events]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)
    assert len([k for k in kinds if k == "response.output_text.delta"]) == 4
    assert final.output_text == "The quick brown fox"
    assert client.responses.retrieve(final.id).output_text == "The quick brown fox"


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("streamed", [False, True])
def test_function_tools_call_output_answer(client, fake, model, streamed):
    fake.script(model, calls(("call_1", "get_weather", '{"city": "Oslo"}')), text("Sunny in Oslo."))

    def create(**kw):
        if not streamed:
            return client.responses.create(model=model, tools=[WEATHER], **kw)
        with client.responses.stream(model=model, tools=[WEATHER], **kw) as stream:
            return stream.get_final_response()

    asked = create(input="Weather in Oslo?")
    call = next(item for item in asked.output if item.type == "function_call")
    assert (call.call_id, call.name, json.loads(call.arguments)) == ("call_1", "get_weather", {"city": "Oslo"})
    sent = fake.last(model)
    assert "get_weather" in json.dumps(sent.get("tools"))
    answered = create(previous_response_id=asked.id,
                      input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}])
    assert answered.output_text == "Sunny in Oslo."
    last = json.dumps(fake.last(model))
    assert "call_1" in last and "sunny" in last


def test_text_format_json_schema_arrives_at_the_upstream(client, fake):
    class Forecast(pydantic.BaseModel):
        city: str
        celsius: int

    fake.script("gpt-fake", text('{"city": "Oslo", "celsius": 21}'))
    parsed = client.responses.parse(model="gpt-fake", input="forecast", text_format=Forecast)
    assert parsed.output_parsed == Forecast(city="Oslo", celsius=21)
    format_sent = fake.last()["response_format"]
    assert format_sent["type"] == "json_schema" and format_sent["json_schema"]["name"] == "Forecast"


def test_store_false_leaves_nothing_in_redis(relay, client, fake):
    before = set(relay.redis("KEYS", "clients:{*"))
    fake.script("gpt-fake", text("not kept"))
    answer = client.responses.create(model="gpt-fake", input="secret", store=False)
    assert answer.output_text == "not kept" and answer.store is False
    assert set(relay.redis("KEYS", "clients:{*")) == before
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(answer.id)


def test_truncation_both_ways(relay, client, fake):
    fake.script("gpt-fake", text("x" * 10))
    session = relay.session(model="gpt-fake", max_context_tokens=80)
    conversation = f"conv_{session}"
    for i in range(6):
        client.responses.create(model="gpt-fake", input=f"message number {i} " * 3, conversation=conversation,
                                truncation="auto")
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(model="gpt-fake", input="one more", conversation=conversation)
    assert refused.value.code == "context_length_exceeded"
    kept = client.responses.create(model="gpt-fake", input="one more", conversation=conversation, truncation="auto")
    assert kept.status == "completed"
    assert len(fake.last()["messages"]) < 13, "the oldest turns were left out"


def test_an_expired_or_foreign_conversation_is_not_found(relay, client, fake):
    session = relay.session(model="gpt-fake", ttl_seconds=1)
    import time
    time.sleep(1.5)
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="gpt-fake", input="hi", conversation=f"conv_{session}")
    mine = client.responses.create(model="gpt-fake", input="mine")
    other = relay.client(GLOBEX_KEY)
    with pytest.raises(openai.NotFoundError) as foreign:
        other.responses.retrieve(mine.id)
    with pytest.raises(openai.NotFoundError) as unknown:
        other.responses.retrieve(mine.id[:-4] + "0000")
    assert type(foreign.value) is type(unknown.value)
    assert foreign.value.body == unknown.value.body
    with pytest.raises(openai.NotFoundError):
        other.responses.create(model="gpt-fake", input="x", previous_response_id=mine.id)


def test_input_items_delete_and_token_count(client, fake):
    first = client.responses.create(model="gpt-fake", input=[
        {"role": "user", "content": [{"type": "input_text", "text": "look"},
                                     {"type": "input_image", "image_url": "https://example.com/cat.png", "detail": "low"}]}])
    items = client.responses.input_items.list(first.id)
    assert items.data[0].content[1].type == "input_image"
    counted = client.responses.input_tokens.count(model="gpt-fake", input="more", previous_response_id=first.id)
    assert counted.input_tokens > 85, "the image counts"
    client.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(first.id)
