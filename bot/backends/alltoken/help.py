"""`/alltoken-help`: what tokenbot can do, with each command's usage line."""

from __future__ import annotations

from bot.backends.alltoken.spec import USAGE, HelpCommand
from bot.core.context import HandlerContext
from bot.core.messages import Text

HELP_TEXT = "\n".join(
    [
        "**tokenbot** — AllToken in your chat, with your own key.",
        "",
        f"• `{USAGE['chat']}` — chat (default model `gpt-5.4-mini`), streamed",
        f"• `{USAGE['image']}`",
        f"• `{USAGE['video']}`",
        f"• `{USAGE['search']}` — web search (DeepSeek and Qwen models)",
        f"• `{USAGE['models']}`",
        f"• `{USAGE['cost']}` — no arguments: the last call in this conversation",
        f"• `{USAGE['key']}` — `/alltoken-key` alone opens a private form",
        "",
        "You can also write it in words: _ask alltoken with model claude-sonnet-4-6 …_, "
        "_draw with alltoken …_, _make a video on alltoken …_, _find with alltoken …_, "
        "_what alltoken models are available_, _how much did that cost_.",
        "",
        "More: `/openmarlin help` (agent runs, long tasks, billing) and "
        "`/openclaw-token help` (credits, provisioned keys, the AllToken fallback).",
    ]
)


async def help_(cmd: HelpCommand, ctx: HandlerContext) -> None:
    """Show the command list."""
    await ctx.conversation.say([Text(markdown=HELP_TEXT)])
