"""The prompt-token estimate: conservative, documented, cheap."""

from __future__ import annotations

from sovereign.gateway.tokens import PER_MESSAGE_OVERHEAD, estimate_prompt_tokens


def test_chat_counts_utf8_bytes_and_a_per_message_overhead() -> None:
    body = {"messages": [{"role": "user", "content": "héllo"}]}  # "user" + 6 bytes
    assert estimate_prompt_tokens(body, 2.0) == 5 + PER_MESSAGE_OVERHEAD


def test_text_parts_names_and_tool_arguments_count() -> None:
    body = {
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "abcdef"}]},
            {"role": "assistant", "tool_calls": [{"function": {"arguments": "{}"}}]},
        ]
    }
    assert estimate_prompt_tokens(body, 1.0) > 6 + 2 * PER_MESSAGE_OVERHEAD


def test_token_ids_count_one_each_and_strings_by_bytes() -> None:
    assert estimate_prompt_tokens({"prompt": [1, 2, 3, 4]}, 3.0) == 4
    assert estimate_prompt_tokens({"input": ["abc", "def"]}, 3.0) == 2
    assert estimate_prompt_tokens({"prompt": "日本語"}, 3.0) == 3


def test_tools_are_counted_as_their_json() -> None:
    plain = {"messages": [{"role": "user", "content": "x"}]}
    tooled = {**plain, "tools": [{"type": "function", "function": {"name": "a" * 300}}]}
    assert estimate_prompt_tokens(tooled, 3.0) >= estimate_prompt_tokens(plain, 3.0) + 100
