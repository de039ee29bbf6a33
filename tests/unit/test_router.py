"""bot.backends.alltoken.grammar: text -> Command, UsageError for bad input, None for everything else."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from bot.backends.alltoken import catalog
from bot.backends.alltoken.catalog import DurationRange
from bot.backends.alltoken.grammar import DEFAULT_CONTEXT, RouterContext, parse, parse_slash
from bot.backends.alltoken.spec import (
    USAGE,
    ChatCommand,
    CostCommand,
    HelpCommand,
    ImageCommand,
    KeyCommand,
    ModelsCommand,
    SearchCommand,
    VideoCommand,
)
from bot.core.grammar import UsageError
from bot.core.key_shapes import contains_key

AFTER_CALL = RouterContext(last_call_was_alltoken=True)
KEY = "sk-at-0123456789abcdefWXYZ"
COMMAND_TYPES = (
    ChatCommand,
    ImageCommand,
    VideoCommand,
    SearchCommand,
    ModelsCommand,
    CostCommand,
    KeyCommand,
    HelpCommand,
)


def usage_error(text: str, command: str, ctx: RouterContext = DEFAULT_CONTEXT) -> str:
    """Parse `text`, expect a UsageError for `command` carrying its usage line; return problem."""
    with pytest.raises(UsageError) as info:
        parse(text, ctx)
    exc = info.value
    assert exc.command == command
    assert exc.usage == USAGE[command]
    assert exc.usage in str(exc)
    return exc.problem


# ---------------------------------------------------------------------------------------------
# Triggers: anywhere, any case, slash optional, hyphen or space


@pytest.mark.parametrize(
    "text",
    [
        "/alltoken-chat hi",
        "alltoken-chat hi",
        "alltoken chat hi",
        "/alltoken chat hi",
        "ALLTOKEN-CHAT hi",
        "AllToken Chat hi",
        "alltoken_chat hi",
        "alltoken   chat hi",
        "<@U123> please /alltoken-chat hi",
        "hey, alltoken chat hi",
        "so... /AllToken-Chat: hi",
        "alltoken chat, hi",
    ],
)
def test_chat_trigger_spellings(text: str) -> None:
    assert parse(text) == ChatCommand(prompt="hi")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "hello there",
        "I love alltoken",
        "alltoken is great for chat",
        "we chat about alltoken a lot",
        "alltoken\nchat about this later",  # the separator may not be a newline
        "myalltoken-chat hi",
        "see https://example.com/alltoken-chat for details",
        "alltoken-chatty hi",
        "alltoken-chat-room is busy",
        "alltoken keys are secret",
        "what models are available",  # no alltoken at all
        "how much did that cost?",  # not after an AllToken call
        "ask alltoken with a question about billing",  # not a model after "with"
        "I will generate an image later with alltoken support",
        "the cost of alltoken is fine",
    ],
)
def test_ordinary_chat_is_not_a_command(text: str) -> None:
    assert parse(text) is None


def test_text_before_the_trigger_is_ignored_and_the_first_trigger_wins() -> None:
    assert parse("ignore me /alltoken-chat summarise alltoken image docs") == ChatCommand(
        prompt="summarise alltoken image docs"
    )
    assert parse("alltoken image of a cat then alltoken chat") == ImageCommand(
        prompt="of a cat then alltoken chat"
    )


def test_prompt_case_and_whitespace_are_kept() -> None:
    prompt = "Write a Haiku:\n  line one\n\tline TWO — it's fine"
    assert parse(f"ALLTOKEN CHAT {prompt}") == ChatCommand(prompt=prompt)


def test_apostrophes_and_quotes_do_not_break_parsing() -> None:
    assert parse("/alltoken-image the cat's \"hat --size=auto") == ImageCommand(
        prompt="the cat's \"hat", size="auto"
    )


# ---------------------------------------------------------------------------------------------
# /alltoken-chat and the model-word rule


@pytest.mark.parametrize(
    "prompt",
    [
        "state-of-the-art explain transformers",
        "well-known facts about cats",
        "claude-like answers please",
        "gpt is a acronym?",
        "qwen or deepseek, which is better",
        "e-mail etiquette tips",
        "hello",
    ],
)
def test_hyphenated_and_plain_prompts_stay_prompts(prompt: str) -> None:
    assert parse(f"/alltoken-chat {prompt}") == ChatCommand(
        prompt=prompt, model=catalog.DEFAULT_CHAT_MODEL
    )


@pytest.mark.parametrize(
    ("text", "model"),
    [
        ("claude-sonnet-4-6 hi", "claude-sonnet-4-6"),
        ("GPT-5.4 hi", "gpt-5.4"),
        ("gpt-5.4-nano hi", "gpt-5.4-nano"),
        ("qwen3.6-flash hi", "qwen3.6-flash"),
        ("gpt-9.9-turbo hi", "gpt-9.9-turbo"),  # model-shaped, not in the list
        ("o3 hi", "o3"),
        ("claude-opus-4-7: hi", "claude-opus-4-7"),
        ("`deepseek-v4-pro` hi", "deepseek-v4-pro"),
        ("--model=glm-5.1 hi", "glm-5.1"),
        ("--model kimi-k2.6 hi", "kimi-k2.6"),
    ],
)
def test_model_word(text: str, model: str) -> None:
    assert parse(f"/alltoken-chat {text}") == ChatCommand(prompt="hi", model=model)


def test_model_known_only_from_the_live_list() -> None:
    ctx = RouterContext(chat_models=frozenset({"my-custom-model"}))
    assert parse("/alltoken-chat my-custom-model hi there", ctx) == ChatCommand(
        prompt="hi there", model="my-custom-model"
    )
    assert parse("/alltoken-chat My-Custom-Model hi", ctx) == ChatCommand(
        prompt="hi", model="my-custom-model"
    )
    # Without the live list it is just the first word of the prompt.
    assert parse("/alltoken-chat my-custom-model hi there") == ChatCommand(
        prompt="my-custom-model hi there"
    )


def test_prompt_after_model_keeps_its_spacing() -> None:
    assert parse("/alltoken-chat gpt-5.4\nline 1\n  line 2") == ChatCommand(
        prompt="line 1\n  line 2", model="gpt-5.4"
    )


@pytest.mark.parametrize("text", ["/alltoken-chat", "/alltoken-chat   ", "alltoken chat:"])
def test_chat_empty_prompt(text: str) -> None:
    assert usage_error(text, "chat") == "empty prompt"


def test_chat_model_without_prompt() -> None:
    problem = usage_error("/alltoken-chat gpt-5.4", "chat")
    assert problem.startswith("empty prompt")
    assert "gpt-5.4" in problem
    assert usage_error("/alltoken-chat --model=gpt-5.4", "chat").startswith("empty prompt")


def test_chat_bad_model_flag() -> None:
    assert "unknown model 'banana'" in usage_error("/alltoken-chat --model=banana hi", "chat")
    assert "needs a value" in usage_error("/alltoken-chat --model", "chat")


def test_chat_prompt_length_limit() -> None:
    limit = catalog.MAX_PROMPT_CHARS
    assert parse("/alltoken-chat " + "a" * limit) == ChatCommand(prompt="a" * limit)
    problem = usage_error("/alltoken-chat " + "a" * (limit + 1), "chat")
    assert f"{limit:,}" in problem
    assert "too long" in problem


def test_chat_does_not_parse_flags_in_the_prompt() -> None:
    assert parse("/alltoken-chat what does --size=10 do in du?") == ChatCommand(
        prompt="what does --size=10 do in du?"
    )


# ---------------------------------------------------------------------------------------------
# /alltoken-image


def test_image_defaults() -> None:
    assert parse("/alltoken-image a lighthouse at dusk") == ImageCommand(
        prompt="a lighthouse at dusk",
        size=catalog.DEFAULT_IMAGE_SIZE,
        quality=catalog.DEFAULT_IMAGE_QUALITY,
        model=catalog.DEFAULT_IMAGE_MODEL,
    )


@pytest.mark.parametrize(
    "text",
    [
        "/alltoken-image a cat --size=1536x1024 --quality=high --model=wan2.7-image",
        "/alltoken-image --size 1536x1024 a cat --quality high --model wan2.7-image",
        "/alltoken-image --model=WAN2.7-IMAGE --quality=HIGH --size=1536X1024 a cat",
        "/alltoken-image a cat —size=1536x1024 —quality=high —model=wan2.7-image",
    ],
)
def test_image_flags_anywhere_in_either_form(text: str) -> None:
    assert parse(text) == ImageCommand(
        prompt="a cat", size="1536x1024", quality="high", model="wan2.7-image"
    )


def test_image_flag_removed_from_middle_without_double_space() -> None:
    assert parse("/alltoken-image a cat --size=auto on a mat") == ImageCommand(
        prompt="a cat on a mat", size="auto"
    )


def test_image_repeated_flag_last_wins() -> None:
    assert parse("/alltoken-image a cat --quality=high --quality=medium") == ImageCommand(
        prompt="a cat", quality="medium"
    )


@pytest.mark.parametrize("size", catalog.IMAGE_SIZES)
def test_image_catalog_sizes(size: str) -> None:
    assert parse(f"/alltoken-image x --size={size}") == ImageCommand(prompt="x", size=size)


@pytest.mark.parametrize(
    ("given_size", "size"),
    [("256x256", "256x256"), ("4096x4096", "4096x4096"), ("2048×1152", "2048x1152")],
)
def test_image_custom_sizes_within_bounds(given_size: str, size: str) -> None:
    assert parse(f"/alltoken-image x --size={given_size}") == ImageCommand(prompt="x", size=size)


@pytest.mark.parametrize("size", ["255x256", "256x4097", "huge", "1024", "0x0", "-1x5", "1e3x1e3"])
def test_image_bad_size(size: str) -> None:
    problem = usage_error(f"/alltoken-image x --size={size}", "image")
    assert problem.startswith("--size must be one of 1024x1024, 1536x1024, 1024x1536, auto")
    assert "256-4096" in problem
    assert f"(got {size!r})" in problem


def test_image_bad_quality_message_is_specific() -> None:
    assert (
        usage_error("/alltoken-image x --quality=ultra", "image")
        == "--quality must be one of low, medium, high, auto (got 'ultra')"
    )


def test_image_bad_model() -> None:
    problem = usage_error("/alltoken-image x --model=dall-e-3", "image")
    assert problem == (
        "--model must be one of gpt-image-2, wan2.7-image, wan2.7-image-pro (got 'dall-e-3')"
    )


def test_image_unknown_flag_is_named() -> None:
    problem = usage_error("/alltoken-image x --out=cat.png", "image")
    assert "'--out'" in problem
    assert "--size, --quality, --model" in problem


@pytest.mark.parametrize("text", ["/alltoken-image x --size", "/alltoken-image x --size= y"])
def test_image_flag_without_value(text: str) -> None:
    assert usage_error(text, "image") == "--size needs a value (--size=VALUE)"


def test_image_flag_followed_by_flag_has_no_value() -> None:
    problem = usage_error("/alltoken-image x --size --quality=high", "image")
    assert problem == "--size needs a value (--size=VALUE)"


@pytest.mark.parametrize("text", ["/alltoken-image", "/alltoken-image --size=auto --quality=low"])
def test_image_empty_prompt(text: str) -> None:
    assert usage_error(text, "image") == "empty prompt"


def test_image_prompt_too_long() -> None:
    assert "too long" in usage_error("/alltoken-image " + "b" * 40_000, "image")


def test_image_prose_dashes_stay_in_the_prompt() -> None:
    assert parse("/alltoken-image a cat -- sitting —quietly on a mat") == ImageCommand(
        prompt="a cat -- sitting —quietly on a mat"
    )


# ---------------------------------------------------------------------------------------------
# /alltoken-video


def test_video_defaults() -> None:
    assert parse("/alltoken-video waves on a beach") == VideoCommand(
        prompt="waves on a beach",
        model=catalog.DEFAULT_VIDEO_MODEL,
        duration=catalog.DEFAULT_VIDEO_DURATION,
        ratio=catalog.DEFAULT_VIDEO_RATIO,
        resolution=catalog.DEFAULT_VIDEO_RESOLUTION,
    )


def test_video_all_flags() -> None:
    text = (
        "/alltoken-video waves --model seedance-2.0 --duration=15 --ratio=21:9 --resolution=1080p"
    )
    assert parse(text) == VideoCommand(
        prompt="waves", model="seedance-2.0", duration=15, ratio="21:9", resolution="1080p"
    )


@pytest.mark.parametrize("ratio", catalog.VIDEO_RATIOS)
def test_video_ratios(ratio: str) -> None:
    assert parse(f"/alltoken-video x --ratio={ratio}") == VideoCommand(prompt="x", ratio=ratio)


@pytest.mark.parametrize(("given", "resolution"), [("720p", "720p"), ("1080", "1080p")])
def test_video_resolution_spellings(given: str, resolution: str) -> None:
    assert parse(f"/alltoken-video x --resolution={given}") == VideoCommand(
        prompt="x", resolution=resolution
    )


@pytest.mark.parametrize(("given", "seconds"), [("8", 8), ("8s", 8), ("12 ", 12), ("-1", -1)])
def test_video_duration_spellings(given: str, seconds: int) -> None:
    assert parse(f"/alltoken-video x --duration={given}") == VideoCommand(
        prompt="x", duration=seconds
    )


def test_video_duration_range_is_per_model_and_named() -> None:
    assert parse("/alltoken-video x --model=seedance-2.0 --duration=15") == VideoCommand(
        prompt="x", model="seedance-2.0", duration=15
    )
    problem = usage_error("/alltoken-video x --duration=15", "video")
    assert (
        problem == "--duration for seedance-1.5-pro must be 4-12 seconds (or -1 for auto) (got 15)"
    )
    problem = usage_error("/alltoken-video x --model=happyhorse-1.0-t2v --duration=-1", "video")
    assert problem == "--duration for happyhorse-1.0-t2v must be 5-10 seconds (got -1)"
    problem = usage_error("/alltoken-video x --duration=3", "video")
    assert "4-12 seconds" in problem


@pytest.mark.parametrize("duration", ["five", "5.5", "1e1", "99999999"])
def test_video_duration_not_an_integer(duration: str) -> None:
    problem = usage_error(f"/alltoken-video x --duration={duration}", "video")
    assert "seconds" in problem
    assert "4-12" in problem


def test_video_live_capabilities_override_catalog() -> None:
    ctx = RouterContext(video_durations={"seedance-1.5-pro": DurationRange(2, 30)})
    assert parse("/alltoken-video x --duration=30", ctx) == VideoCommand(prompt="x", duration=30)
    assert "2-30 seconds" in usage_error("/alltoken-video x --duration=-1", "video", ctx)


def test_video_model_known_only_live() -> None:
    ctx = RouterContext(video_durations={"kling-3.0": DurationRange(6, 10)})
    # The default 5 s is outside the live range, so the model's shortest duration is used.
    assert parse("/alltoken-video x --model=kling-3.0", ctx) == VideoCommand(
        prompt="x", model="kling-3.0", duration=6
    )
    problem = usage_error("/alltoken-video x --model=kling-3.0", "video")
    assert "seedance-1.5-pro" in problem
    assert "(got 'kling-3.0')" in problem


@pytest.mark.parametrize(
    ("flag", "expected"),
    [
        (
            "--ratio=2:1",
            "--ratio must be one of 16:9, 9:16, 4:3, 3:4, 21:9, 1:1, adaptive (got '2:1')",
        ),
        ("--resolution=4k", "--resolution must be one of 480p, 720p, 1080p (got '4k')"),
        ("--fps=30", "unknown option '--fps'; use --model, --duration, --ratio, --resolution"),
    ],
)
def test_video_bad_values(flag: str, expected: str) -> None:
    assert usage_error(f"/alltoken-video x {flag}", "video") == expected


def test_video_bad_model_and_empty_prompt() -> None:
    assert "--model must be one of" in usage_error("/alltoken-video x --model=sora", "video")
    assert usage_error("/alltoken-video --duration=5", "video") == "empty prompt"


# ---------------------------------------------------------------------------------------------
# /alltoken-search


def test_search_default_and_model() -> None:
    assert parse("/alltoken-search latest rust release") == SearchCommand(
        query="latest rust release", model=catalog.DEFAULT_SEARCH_MODEL
    )
    assert parse("/alltoken-search --model=qwen3.6-flash who won?") == SearchCommand(
        query="who won?", model="qwen3.6-flash"
    )
    assert parse("/alltoken-search who won? --model DeepSeek-V3.2") == SearchCommand(
        query="who won?", model="deepseek-v3.2"
    )


@pytest.mark.parametrize("model", ["gpt-5.4", "claude-opus-4-7", "glm-5.1"])
def test_search_model_must_support_search(model: str) -> None:
    problem = usage_error(f"/alltoken-search --model={model} news", "search")
    assert f"'{model}'" in problem
    assert ", ".join(catalog.SEARCH_MODELS) in problem
    assert f"default {catalog.DEFAULT_SEARCH_MODEL}" in problem


def test_search_empty_query_and_unknown_flag() -> None:
    assert usage_error("/alltoken-search", "search") == "empty query"
    assert usage_error("/alltoken-search --model=qwen3.6-flash", "search") == "empty query"
    assert "'--max'" in usage_error("/alltoken-search --max=3 news", "search")


# ---------------------------------------------------------------------------------------------
# /alltoken-models


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ("", ModelsCommand()),
        ("?", ModelsCommand()),
        ("please", ModelsCommand()),
        ("--type=image", ModelsCommand(type="image")),
        ("--type VIDEO", ModelsCommand(type="video")),
        ("--type=chat --filter=Claude", ModelsCommand(type="chat", filter="Claude")),
        ("--filter claude", ModelsCommand(filter="claude")),
        ("claude", ModelsCommand(filter="claude")),
        ("images", ModelsCommand(type="image")),
        ("video seedance", ModelsCommand(type="video", filter="seedance")),
        ("--type=image --type=video", ModelsCommand(type="video")),
    ],
)
def test_models(args: str, expected: ModelsCommand) -> None:
    assert parse(f"/alltoken-models {args}") == expected


def test_models_bad_values() -> None:
    assert (
        usage_error("/alltoken-models --type=audio", "models")
        == "--type must be one of chat, image, video (got 'audio')"
    )
    assert "--filter=TEXT" in usage_error("/alltoken-models claude and gpt", "models")
    assert "--filter=TEXT" in usage_error("/alltoken-models --filter=a claude", "models")
    assert "'--sort'" in usage_error("/alltoken-models --sort=price", "models")


# ---------------------------------------------------------------------------------------------
# /alltoken-cost


def test_cost_without_arguments_means_last_call() -> None:
    assert parse("/alltoken-cost") == CostCommand()
    assert parse("alltoken cost?") == CostCommand()


def test_cost_with_arguments() -> None:
    assert parse("/alltoken-cost GPT-5.4 1,200 0") == CostCommand(
        model="gpt-5.4", prompt_tokens=1200, completion_tokens=0
    )


@pytest.mark.parametrize("args", ["gpt-5.4", "gpt-5.4 100", "gpt-5.4 1 2 3"])
def test_cost_wrong_number_of_arguments(args: str) -> None:
    assert "give a model, prompt tokens and completion tokens" in usage_error(
        f"/alltoken-cost {args}", "cost"
    )


@pytest.mark.parametrize("bad", ["-5", "1.5", "ten", "1e3", "٣", "1,00"])
def test_cost_token_counts_must_be_non_negative_integers(bad: str) -> None:
    problem = usage_error(f"/alltoken-cost gpt-5.4 {bad} 10", "cost")
    assert problem == f"prompt_tokens must be a whole number ≥ 0 (got {bad!r})"
    problem = usage_error(f"/alltoken-cost gpt-5.4 10 {bad}", "cost")
    assert problem.startswith("completion_tokens must be a whole number")


def test_cost_absurd_numbers_are_refused_without_crashing() -> None:
    assert "unreasonably large" in usage_error(
        "/alltoken-cost gpt-5.4 " + "9" * 5000 + " 1", "cost"
    )


def test_cost_model_must_look_like_an_id() -> None:
    assert "model id" in usage_error("/alltoken-cost 100 200 300", "cost")


# ---------------------------------------------------------------------------------------------
# /alltoken-key


def test_key_actions() -> None:
    assert parse("/alltoken-key") == KeyCommand(action="prompt")
    assert parse("/alltoken-key remove") == KeyCommand(action="remove")
    assert parse("/alltoken-key delete") == KeyCommand(action="remove")
    assert parse("/alltoken-key STATUS") == KeyCommand(action="status")


def test_key_set_keeps_the_key_secret() -> None:
    command = parse(f"/alltoken-key set {KEY}")
    assert isinstance(command, KeyCommand)
    assert command.action == "set"
    assert command.service == "alltoken"
    assert isinstance(command.key, SecretStr)
    assert command.key.get_secret_value() == KEY
    assert KEY not in repr(command)
    assert parse(f"/alltoken-key set `{KEY}`") == command


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        ("set", "missing key"),
        ("set sk-at-short", "does not look like an AllToken key"),
        ("set hunter2", "does not look like an AllToken key"),
        ("set claw_wsk_abcdefghijklmnop", "OpenMarlin"),
        ("set sk-prov-0123456789abcdef0123456789abcdef", "OpenClaw provisioned"),
        (f"set {KEY} thanks", "exactly one key"),
        ("rotate", "unknown action 'rotate'"),
        ("status now", "status takes no arguments"),
    ],
)
def test_key_errors(args: str, fragment: str) -> None:
    assert fragment in usage_error(f"/alltoken-key {args}", "key")


@pytest.mark.parametrize(
    "text",
    [
        f"/alltoken-key {KEY}",
        f"/alltoken-key set {KEY} {KEY}",
        f"/alltoken-key remove {KEY}",
        f"my alltoken key is {KEY}",
        f"/alltoken-image x --size={KEY}",
        f"/alltoken-chat --model={KEY} hi",
        f"/alltoken-cost {KEY} 1 2",
    ],
)
def test_errors_never_echo_a_key(text: str) -> None:
    with pytest.raises(UsageError) as info:
        parse(text)
    assert KEY not in str(info.value)
    assert KEY not in info.value.problem


# ---------------------------------------------------------------------------------------------
# /alltoken-help


@pytest.mark.parametrize(
    ("text", "topic"),
    [
        ("/alltoken-help", None),
        ("/alltoken-help image", "image"),
        ("/alltoken-help /alltoken-video", "video"),
        ("/alltoken-help KEY?", "key"),
        ("can alltoken help me?", None),
    ],
)
def test_help(text: str, topic: str | None) -> None:
    assert parse(text) == HelpCommand(topic=topic)


# ---------------------------------------------------------------------------------------------
# Natural-language triggers


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "ask alltoken with model claude-opus-4-7 what is a monad?",
            ChatCommand(prompt="what is a monad?", model="claude-opus-4-7"),
        ),
        (
            "Could you ask AllToken with model GPT-5.4: hi",
            ChatCommand(prompt="hi", model="gpt-5.4"),
        ),
        (
            "ask alltoken using deepseek-v4-pro explain CRDTs",
            ChatCommand(prompt="explain CRDTs", model="deepseek-v4-pro"),
        ),
        ("generate an image via alltoken a red fox", ImageCommand(prompt="a red fox")),
        ("generate an image with alltoken of a red fox", ImageCommand(prompt="a red fox")),
        (
            "please generate an image of a red fox in snow via alltoken --size=auto",
            ImageCommand(prompt="a red fox in snow", size="auto"),
        ),
        ("draw with alltoken: a dog on a skateboard", ImageCommand(prompt="a dog on a skateboard")),
        ("make me a picture on alltoken of a tree", ImageCommand(prompt="a tree")),
        (
            "make a video on alltoken of waves --duration=8",
            VideoCommand(prompt="waves", duration=8),
        ),
        ("make a video with alltoken: a dancing robot", VideoCommand(prompt="a dancing robot")),
        ("create a clip of a sunrise using alltoken", VideoCommand(prompt="a sunrise")),
        ("use alltoken web search latest rust release", SearchCommand(query="latest rust release")),
        ("use alltoken search for today's weather", SearchCommand(query="today's weather")),
        ("find with alltoken: who won the match", SearchCommand(query="who won the match")),
        (
            "search the web via alltoken --model=qwen3.6-flash news",
            SearchCommand(query="news", model="qwen3.6-flash"),
        ),
        ("what alltoken models are available?", ModelsCommand()),
        ("What models are available on AllToken", ModelsCommand()),
        ("which image models are available on alltoken?", ModelsCommand(type="image")),
        ("what alltoken models are available for video?", ModelsCommand(type="video")),
        ("what models does alltoken have", ModelsCommand()),
    ],
)
def test_natural_language_triggers(text: str, expected: object) -> None:
    assert parse(text) == expected


def test_natural_language_chat_with_unknown_model_after_model_keyword() -> None:
    assert "unknown model 'banana'" in usage_error("ask alltoken with model banana hi", "chat")
    assert usage_error("ask alltoken with model gpt-5.4", "chat") == "empty prompt"


def test_natural_language_bad_flags_are_usage_errors() -> None:
    problem = usage_error("generate an image via alltoken a cat --quality=ultra", "image")
    assert problem == "--quality must be one of low, medium, high, auto (got 'ultra')"
    assert usage_error("make a video on alltoken", "video") == "empty prompt"
    assert usage_error("find with alltoken", "search") == "empty query"


@pytest.mark.parametrize(
    "text",
    [
        "how much did that cost?",
        "How much did that cost",
        "hmm, how much did that call cost?",
        "what did that cost",
        "how much did it cost??",
    ],
)
def test_cost_follow_up_only_after_an_alltoken_call(text: str) -> None:
    assert parse(text, AFTER_CALL) == CostCommand()
    assert parse(text) is None


def test_cost_follow_up_needs_the_phrase_not_just_the_word() -> None:
    assert parse("the cost of living is high", AFTER_CALL) is None
    assert parse("cost?", AFTER_CALL) is None


def test_explicit_cost_works_without_a_previous_call() -> None:
    assert parse("/alltoken-cost") == CostCommand()


def test_declined_phrase_lets_a_later_trigger_win() -> None:
    assert parse("how much did that cost? /alltoken-chat hi") == ChatCommand(prompt="hi")
    assert parse("ask alltoken with a friend, then /alltoken-help") == HelpCommand()


# ---------------------------------------------------------------------------------------------
# parse_slash


SLASH_CASES = [
    ("chat", "gpt-5.4 hi"),
    ("chat", "state-of-the-art explain"),
    ("image", "a cat --size=auto"),
    ("video", "waves --duration=8"),
    ("search", "--model=qwen3.6-flash news"),
    ("models", "--type=image"),
    ("cost", ""),
    ("cost", "gpt-5.4 10 20"),
    ("key", ""),
    ("key", "status"),
    ("help", "chat"),
]


@pytest.mark.parametrize(("word", "args"), SLASH_CASES)
@pytest.mark.parametrize("spelling", ["/alltoken-{}", "alltoken-{}", "/ALLTOKEN-{}", "alltoken_{}"])
def test_parse_slash_equals_parse(word: str, args: str, spelling: str) -> None:
    assert parse_slash(spelling.format(word), args) == parse(f"/alltoken-{word} {args}")


def test_parse_slash_umbrella_command() -> None:
    assert parse_slash("/alltoken", "chat gpt-5.4 hi") == ChatCommand(prompt="hi", model="gpt-5.4")
    assert parse_slash("/alltoken", "") == HelpCommand()
    with pytest.raises(UsageError) as info:
        parse_slash("/alltoken", "dance now")
    assert info.value.usage == USAGE["help"]


def test_parse_slash_errors_and_foreign_commands() -> None:
    with pytest.raises(UsageError) as info:
        parse_slash("/alltoken-image", "x --quality=ultra")
    assert info.value.usage == USAGE["image"]
    assert parse_slash("/remind", "me in 5 minutes") is None
    assert parse_slash("/alltoken-dance", "x") is None


def test_parse_slash_does_not_need_the_cost_context() -> None:
    # The slash command is explicit: the follow-up rule does not apply to it.
    assert parse_slash("/alltoken-cost", "") == CostCommand()


# ---------------------------------------------------------------------------------------------
# Properties

MODEL_IDS = (*catalog.CHAT_MODELS, *catalog.IMAGE_MODELS, *catalog.VIDEO_MODELS)
TRIGGERS = (
    *(f"/alltoken-{w}" for w in USAGE),
    *(f"alltoken {w}" for w in USAGE),
    *(f"ALLTOKEN_{w.upper()}" for w in USAGE),
    "ask alltoken with model",
    "ask alltoken with",
    "generate an image via alltoken",
    "generate an image of",
    "draw with alltoken",
    "make a video on alltoken",
    "use alltoken web search",
    "find with alltoken",
    "what alltoken models are available",
    "how much did that cost",
    "via alltoken",
)
FLAG_NAMES = ("size", "quality", "model", "duration", "ratio", "resolution", "type", "filter")
VALUES = (
    *catalog.IMAGE_SIZES,
    *catalog.IMAGE_QUALITIES,
    *catalog.VIDEO_RATIOS,
    *catalog.VIDEO_RESOLUTIONS,
    *MODEL_IDS,
    "chat",
    "image",
    "video",
    "-1",
    "0",
    "5",
    "15",
    "99999999999999999999",
    "1.5",
    "300x300",
    "9999x1",
    "set",
    "remove",
    "status",
    KEY,
    "claw_wsk_abcdefghijklmnop",
    "",
    "—",
    "--",
    "'",
    '"',
)

values = st.one_of(st.sampled_from(VALUES), st.text(max_size=12), st.integers().map(str))
flags = st.builds(
    lambda dash, name, sep, value: f"{dash}{name}{sep}{value}",
    st.sampled_from(["--", "—", "–", "-"]),
    st.one_of(st.sampled_from(FLAG_NAMES), st.text(min_size=1, max_size=6)),
    st.sampled_from(["=", " ", ""]),
    values,
)
words = st.one_of(values, flags, st.sampled_from(TRIGGERS))
messages = st.builds(
    lambda before, trigger, parts, seps: (
        before + trigger + "".join(sep + part for sep, part in zip(seps, parts, strict=False))
    ),
    st.one_of(st.just(""), st.text(max_size=15).map(lambda s: s + " ")),
    st.sampled_from(TRIGGERS),
    st.lists(words, max_size=8),
    st.lists(st.sampled_from([" ", "  ", "\n", "\t", ", ", ": "]), min_size=8, max_size=8),
)
contexts = st.builds(
    RouterContext,
    chat_models=st.sampled_from(
        [frozenset(catalog.CHAT_MODELS), frozenset({"my-custom-model"}), frozenset()]
    ),
    video_durations=st.sampled_from(
        [{}, {"seedance-1.5-pro": DurationRange(2, 30)}, {"kling-3.0": DurationRange(6, 10)}]
    ),
    last_call_was_alltoken=st.booleans(),
)

_WXH = re.compile(r"[0-9]+x[0-9]+")


def _check_outcome(text: str, ctx: RouterContext) -> None:
    """parse() returns None or a valid Command, or raises a UsageError; nothing else."""
    try:
        command = parse(text, ctx)
    except UsageError as exc:
        assert exc.command in USAGE
        assert exc.usage == USAGE[exc.command]
        assert exc.problem
        # Key-shaped input is never echoed (a key glued to other text is not key-shaped).
        assert not contains_key(str(exc))
        return
    if command is None:
        return
    assert isinstance(command, COMMAND_TYPES)
    if isinstance(command, ChatCommand | ImageCommand | VideoCommand):
        assert command.prompt and command.prompt == command.prompt.strip()
        assert len(command.prompt) <= catalog.MAX_PROMPT_CHARS
    if isinstance(command, ImageCommand):
        assert command.size in catalog.IMAGE_SIZES or _WXH.fullmatch(command.size)
        assert command.quality in catalog.IMAGE_QUALITIES
        assert command.model in catalog.IMAGE_MODELS
    if isinstance(command, VideoCommand):
        assert catalog.duration_range(command.model, dict(ctx.video_durations)).allows(
            command.duration
        )
        assert command.ratio in catalog.VIDEO_RATIOS
        assert command.resolution in catalog.VIDEO_RESOLUTIONS
    if isinstance(command, SearchCommand):
        assert command.query
        assert catalog.supports_search(command.model)
    if isinstance(command, CostCommand) and command.model is not None:
        assert command.prompt_tokens is not None and command.prompt_tokens >= 0
        assert command.completion_tokens is not None and command.completion_tokens >= 0


@given(st.text(), contexts)
def test_any_text_gives_none_a_command_or_a_usage_error(text: str, ctx: RouterContext) -> None:
    _check_outcome(text, ctx)


@settings(max_examples=500)
@given(messages, contexts)
def test_command_shaped_text_gives_none_a_command_or_a_usage_error(
    text: str, ctx: RouterContext
) -> None:
    _check_outcome(text, ctx)


@given(st.sampled_from([*USAGE, "dance"]), st.text(), messages, contexts)
def test_parse_slash_never_raises_anything_else(
    word: str, text: str, message: str, ctx: RouterContext
) -> None:
    for name, args in ((f"/alltoken-{word}", text), (f"alltoken-{word}", message)):
        try:
            parse_slash(name, args, ctx)
        except UsageError as exc:
            assert exc.usage == USAGE[exc.command]
    try:
        parse_slash("/alltoken", message, ctx)
    except UsageError as exc:
        assert exc.usage == USAGE[exc.command]


@given(st.text().filter(lambda t: "alltoken" not in t.lower()))
def test_no_alltoken_no_command_outside_a_follow_up(text: str) -> None:
    assert parse(text) is None


def _outcome(fn: Callable[..., object], *args: object) -> object:
    try:
        return fn(*args)
    except UsageError as exc:
        return ("error", exc.command, exc.problem)


@given(st.sampled_from(list(USAGE)), st.text(max_size=40), messages)
def test_parse_slash_matches_parse_for_any_arguments(word: str, text: str, message: str) -> None:
    for args in (text, message):
        assert _outcome(parse_slash, f"/alltoken-{word}", args) == _outcome(
            parse, f"/alltoken-{word} {args}"
        )


# Prompts whose front cannot be mistaken for a model word, a separator or an option.
plain_prompts = (
    st.text(min_size=1, max_size=200)
    .map(str.strip)
    .filter(lambda p: bool(p) and p[0] not in ":,;—–-`*")
)


def _first_word(text: str) -> str:
    return text.split()[0]


@given(plain_prompts)
def test_chat_prompt_round_trips(prompt: str) -> None:
    first = _first_word(prompt).strip("`*:,")
    assume(not catalog.looks_like_model_id(first))
    assume(first.lower() not in catalog.CHAT_MODELS)
    assert parse(f"/alltoken-chat {prompt}") == ChatCommand(prompt=prompt)
    assert parse(f"hey alltoken chat {prompt}") == ChatCommand(prompt=prompt)


@given(st.sampled_from(catalog.CHAT_MODELS), plain_prompts)
def test_chat_model_and_prompt_round_trip(model: str, prompt: str) -> None:
    assert parse(f"/alltoken-chat {model.upper()} {prompt}") == ChatCommand(
        prompt=prompt, model=model
    )


@given(plain_prompts)
def test_image_video_search_prompts_round_trip_without_options(prompt: str) -> None:
    assume(not any(w.startswith(("--", "—", "–")) for w in prompt.split()))
    assert parse(f"/alltoken-image {prompt}") == ImageCommand(prompt=prompt)
    assert parse(f"/alltoken-video {prompt}") == VideoCommand(prompt=prompt)
    assert parse(f"/alltoken-search {prompt}") == SearchCommand(query=prompt)


@given(
    plain_prompts,
    st.sampled_from(catalog.IMAGE_SIZES),
    st.sampled_from(catalog.IMAGE_QUALITIES),
    st.booleans(),
)
def test_image_options_are_cut_out_cleanly(
    prompt: str, size: str, quality: str, front: bool
) -> None:
    assume(not any(w.startswith(("--", "—", "–")) for w in prompt.split()))
    options = f"--size={size} --quality {quality}"
    text = f"/alltoken-image {options} {prompt}" if front else f"/alltoken-image {prompt} {options}"
    assert parse(text) == ImageCommand(prompt=prompt, size=size, quality=quality)


@given(
    st.from_regex(r"[a-z][a-z0-9.\-]{0,20}", fullmatch=True),
    st.integers(min_value=0, max_value=10**12),
    st.integers(min_value=0, max_value=10**12),
)
def test_cost_round_trips(model: str, prompt_tokens: int, completion_tokens: int) -> None:
    assert parse(f"/alltoken-cost {model} {prompt_tokens} {completion_tokens}") == CostCommand(
        model=model, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens
    )


@given(st.text(alphabet=st.characters(categories=["L", "N"]), min_size=1, max_size=20))
def test_models_filter_keeps_its_case(text: str) -> None:
    assert parse(f"/alltoken-models --filter={text}") == ModelsCommand(filter=text)
