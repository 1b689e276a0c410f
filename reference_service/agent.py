"""The tool loop: the official openai SDK against LLM_API_URL, tools run with the user's token."""

from __future__ import annotations

from openai import AsyncOpenAI

from reference_service.settings import Settings
from reference_service.tools import ChatContext, ToolBox

SYSTEM_PROMPT = (
    "You are the Testkube AI Assistant. Answer questions about test workflows, executions, "
    "logs and artifacts using the read-only tools provided. You cannot change anything."
)


class Agent:
    def __init__(self, settings: Settings, llm: AsyncOpenAI, toolbox: ToolBox):
        self.settings = settings
        self.llm = llm
        self.toolbox = toolbox

    def messages_for(self, message: str, ctx: ChatContext) -> list[dict]:
        return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": message}]

    async def run(self, message: str, ctx: ChatContext) -> str:
        messages = self.messages_for(message, ctx)
        tools = self.toolbox.advertised()
        for _ in range(self.settings.max_tool_rounds):
            completion = await self.llm.chat.completions.create(
                model=self.settings.model, messages=messages, tools=tools
            )
            reply = completion.choices[0].message
            if not reply.tool_calls:
                return reply.content or ""
            messages.append(reply.model_dump(exclude_none=True))
            for call in reply.tool_calls:
                content = await self.toolbox.execute(call.function.name, call.function.arguments, ctx)
                messages.append({"role": "tool", "tool_call_id": call.id, "content": content})
        return "I could not finish within the tool-call limit."
