"""LangChain's `ChatOpenAI` pointed at the relay: invoke, stream, tools, structured output."""

import pydantic
import pytest
from langchain_core.messages import HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI

from conftest import ACME_KEY
from fake_upstream import calls, text


@tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return "sunny"


class Forecast(pydantic.BaseModel):
    """A weather forecast."""

    city: str
    celsius: int


@pytest.fixture
def chat(relay):
    def make(model="gpt-fake", **kw):
        return ChatOpenAI(model=model, base_url=f"{relay.base}/v1", api_key=ACME_KEY, max_retries=0, **kw)
    return make


@pytest.mark.parametrize("model", ["gpt-fake", "claude-fake"])
def test_invoke_and_stream(chat, fake, model):
    fake.script(model, text("Hello from the relay"))
    assert chat(model).invoke("Hi").content == "Hello from the relay"
    pieces = [c.content for c in chat(model).stream("Hi") if c.content]
    assert "".join(pieces) == "Hello from the relay"
    assert len(pieces) > 1


@pytest.mark.parametrize("model", ["gpt-fake", "claude-fake"])
def test_bind_tools_round_trip(chat, fake, model):
    fake.script(model, calls(("call_1", "get_weather", '{"city": "Oslo"}')), text("Sunny in Oslo."))
    llm = chat(model).bind_tools([get_weather])
    question = HumanMessage("Weather in Oslo?")
    asked = llm.invoke([question])
    assert asked.tool_calls == [{"name": "get_weather", "args": {"city": "Oslo"}, "id": "call_1",
                                 "type": "tool_call"}]
    result = ToolMessage(get_weather.invoke(asked.tool_calls[0]["args"]), tool_call_id="call_1")
    answer = llm.invoke([question, asked, result])
    assert answer.content == "Sunny in Oslo."


def test_streamed_tool_calls(chat, fake):
    fake.script("gpt-fake", calls(("call_2", "get_weather", '{"city": "Rome"}')))
    merged = None
    for chunk in chat().bind_tools([get_weather]).stream("Weather in Rome?"):
        merged = chunk if merged is None else merged + chunk
    assert merged.tool_calls[0]["args"] == {"city": "Rome"}


@pytest.mark.parametrize("model", ["gpt-fake", "claude-fake"])
def test_with_structured_output(chat, fake, model):
    if model == "gpt-fake":
        fake.script(model, text('{"city": "Oslo", "celsius": 21}'))
    else:
        # Anthropic answers structured output through one forced tool.
        fake.script(model, calls(("toolu_1", "Forecast", '{"city": "Oslo", "celsius": 21}')))
    forecast = chat(model).with_structured_output(Forecast).invoke("Forecast for Oslo")
    assert forecast == Forecast(city="Oslo", celsius=21)
