"""discord.ui objects built from core types: button rows (Actions) and private forms (FormRequest)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

import discord

from adapters.discord.guard import log_crash, tell_interaction
from adapters.discord.render import button_label, custom_id, inert
from bot.core.messages import Button, FormRequest

log = logging.getLogger(__name__)

# A form left open is forgotten after this long (discord.py keeps open modals in memory).
FORM_TIMEOUT_S = 900.0
MAX_MODAL_TITLE = 45
MAX_INPUT_LABEL = 45
MAX_DESCRIPTION = 100
MAX_PLACEHOLDER = 100
MAX_MODAL_INPUTS = 5

_STYLES = {
    "default": discord.ButtonStyle.secondary,
    "primary": discord.ButtonStyle.primary,
    "danger": discord.ButtonStyle.danger,
}

FormSubmit = Callable[[discord.Interaction, FormRequest, dict[str, str]], Awaitable[None]]


def build_view(buttons: Sequence[Button]) -> discord.ui.View | None:
    """A View for these buttons, or None (which removes any buttons from an edited message).

    Clicks are routed by custom_id in the client's `on_interaction` (so they survive a restart),
    not by callbacks; the view is stopped before it is sent so discord.py doesn't keep it in its
    view store forever.
    """
    if not buttons:
        return None
    view = discord.ui.View(timeout=None)
    for button in buttons:
        view.add_item(
            discord.ui.Button(
                label=button_label(button),
                style=_STYLES.get(button.style, discord.ButtonStyle.secondary),
                custom_id=custom_id(button.action_id, button.value),
            )
        )
    view.stop()
    return view


def _clip(text: str, limit: int) -> str:
    text = inert(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


class FormModal(discord.ui.Modal):
    """A FormRequest as a Discord modal; the submitted values go to `on_values`.

    Discord has no masked input, but a modal is only ever seen by the person who opened it and
    its values never appear in the channel.
    """

    def __init__(self, request: FormRequest, on_values: FormSubmit) -> None:
        super().__init__(title=_clip(request.title, MAX_MODAL_TITLE), timeout=FORM_TIMEOUT_S)
        self.request = request
        self._on_values = on_values
        self._inputs: dict[str, discord.ui.TextInput[FormModal]] = {}
        for index, form_field in enumerate(request.fields[:MAX_MODAL_INPUTS]):
            text_input: discord.ui.TextInput[FormModal] = discord.ui.TextInput(
                custom_id=form_field.name,
                style=discord.TextStyle.paragraph
                if form_field.multiline
                else discord.TextStyle.short,
                placeholder=_clip(form_field.placeholder, MAX_PLACEHOLDER) or None,
                required=True,
                max_length=4000,
            )
            # The form's intro explains what happens to the values; it fits under the first label.
            description = request.intro if index == 0 and request.intro else None
            self.add_item(
                discord.ui.Label(
                    text=_clip(form_field.label, MAX_INPUT_LABEL),
                    description=_clip(description, MAX_DESCRIPTION) if description else None,
                    component=text_input,
                )
            )
            self._inputs[form_field.name] = text_input

    def values(self) -> dict[str, str]:
        """What the person typed, by field name."""
        return {name: str(item.value or "") for name, item in self._inputs.items()}

    async def on_submit(self, interaction: discord.Interaction) -> None:
        """Hand the values to the adapter (which passes them to `TokenBot.submit_form`)."""
        await self._on_values(interaction, self.request, self.values())

    async def on_error(  # type: ignore[override]  # a Modal's on_error has no item argument
        self, interaction: discord.Interaction, error: Exception, /
    ) -> None:
        """Tell the person (with a ref); log without the error's message (it may quote a value)."""
        what = f"form {self.request.form_id}"
        ref = log_crash(log, what, error, secrets_inside=True)
        await tell_interaction(interaction, ref)
