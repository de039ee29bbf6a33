"""`/alltoken-help [topic]`: what tokenbot can do, written from the command specs."""

from __future__ import annotations

from bot.backends.alltoken.spec import SPECS, HelpCommand
from bot.core.command_spec import CommandSpec, OptionSpec
from bot.core.context import HandlerContext
from bot.core.messages import Text

_WORDS = (
    "You can also write it in words: _ask alltoken with model claude-sonnet-4-6 …_, "
    "_draw with alltoken …_, _make a video on alltoken …_, _find with alltoken …_, "
    "_what alltoken models are available_, _how much did that cost_."
)
_MORE = (
    "More: `/openmarlin help` (agent runs, long tasks, billing) and "
    "`/openclaw-token help` (credits, provisioned keys, the AllToken fallback); "
    "`/tokenbot help` (your spend with a chart, the workspace policy and budgets)."
)
_PLACES = (
    "Where else: on Slack, open tokenbot from the top bar (its assistant pane: plain messages "
    "chat, and it can read the channel you have open when you ask) or its **Home** tab (your "
    "keys and last calls); on Discord, add tokenbot to your own account (a user install) to use "
    "its commands in any server or DM, answered only to you where the bot isn't a member."
)


def _option_line(option: OptionSpec) -> str:
    name = f"<{option.name}>" if option.positional else f"--{option.name}"
    allowed = f" ({', '.join(option.choices)})" if option.choices else ""
    return f"• `{name}` — {option.description}{allowed}"


def _topic_text(spec: CommandSpec) -> str:
    lines = [f"**{spec.display}** — {spec.description}", f"`{spec.usage}`"]
    lines += [_option_line(o) for o in spec.options if not o.secret]
    if spec.examples:
        lines.append(f"e.g. `{spec.examples[0]}`")
    return "\n".join(lines)


def help_text(topic: str | None = None) -> str:
    """Every command's usage line and description, or one command's options (`topic`)."""
    for spec in SPECS:
        if topic is not None and spec.topic == topic and spec.model is not HelpCommand:
            return _topic_text(spec)
    commands = [f"• `{s.usage}` — {s.description}" for s in SPECS if s.model is not HelpCommand]
    return "\n".join(
        [
            "**tokenbot** — AllToken in your chat, with your own key.",
            "",
            *commands,
            "",
            _WORDS,
            "`/alltoken-help image` (or any command) shows its options.",
            "",
            _MORE,
            _PLACES,
        ]
    )


async def help_(cmd: HelpCommand, ctx: HandlerContext) -> None:
    """Show the command list, or one command's options."""
    await ctx.conversation.say([Text(markdown=help_text(cmd.topic))])
