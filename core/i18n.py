"""The languages the bot speaks to people: English and Simplified Chinese.

Each user-facing sentence is a `Text` holding both versions; the language is chosen per person
from the locale their platform reports (Telegram's `language_code`, Discord's interaction locale),
unless `[bot] language` fixes one. Adapters keep their own sentences next to their code, as
`Text` constants too, so one look shows every version of a sentence.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

Language = Literal["en", "zh"]
LanguageSetting = Literal["auto", "en", "zh"]


@dataclass(frozen=True, slots=True)
class Text:
    en: str
    zh: str

    def __call__(self, language: Language, /, **values: object) -> str:
        template = self.zh if language == "zh" else self.en
        return template.format(**values) if values else template


# CJK Unified Ideographs (and extension A): the text is Chinese.
_HAN = re.compile("[\u3400-\u4dbf\u4e00-\u9fff]")


def language_of_text(text: str, setting: LanguageSetting = "auto") -> Language:
    """The language to add a line to `text` in when no one's locale is known (e.g. settling an
    answer at start): the configured one, else Chinese for Chinese text."""
    if setting != "auto":
        return setting
    return "zh" if _HAN.search(text) else "en"


def language_for(locale: str | None, setting: LanguageSetting = "auto") -> Language:
    """The language to answer in: the configured one, or the person's (Chinese for any `zh*`
    locale: zh, zh-CN, zh-hans, zh-TW), English when the platform says nothing."""
    if setting != "auto":
        return setting
    return "zh" if locale and locale.lower().startswith("zh") else "en"


def duration(seconds: float, language: Language) -> str:
    """A wait as people say it: "5 h 12 min", "12 min", "40 s" (rounded up, at least 1 s)."""
    whole = max(1, math.ceil(seconds))
    if whole < 60:
        return SECONDS(language, seconds=whole)
    minutes = math.ceil(whole / 60)
    if minutes < 60:
        return MINUTES(language, minutes=minutes)
    return HOURS_MINUTES(language, hours=minutes // 60, minutes=minutes % 60)


# --- what the core says ------------------------------------------------------------------------

AUTH_FAILED = Text(
    "⚠️ The GPTs endpoint refused the API key. The bot's operator needs to check it.",
    "⚠️ GPTs 接口拒绝了 API 密钥，请联系机器人管理员检查。",
)
GPT_NOT_FOUND = Text(
    "⚠️ The GPT was not found. Check the binding with /gpt info.",
    "⚠️ 找不到这个 GPT。请用 /gpt info 检查绑定。",
)
RATE_LIMITED_FOR = Text(
    "⚠️ Rate limited by the GPTs endpoint. Try again in {seconds} s.",
    "⚠️ GPTs 接口限流中，请 {seconds} 秒后再试。",
)
RATE_LIMITED = Text(
    "⚠️ Rate limited by the GPTs endpoint. Try again in a minute.",
    "⚠️ GPTs 接口限流中，请稍等一分钟再试。",
)
TOO_SLOW = Text(
    "⚠️ The GPT is taking too long to answer. Try again.",
    "⚠️ GPT 响应超时，请重试。",
)
STALLED = Text(
    "⚠️ The GPT stopped answering in time. Try again.",
    "⚠️ GPT 回答中途停止响应，请重试。",
)
TURN_TIMED_OUT = Text(
    "⚠️ The answer took longer than {seconds} s and was stopped. Try again.",
    "⚠️ 回答超过 {seconds} 秒，已停止，请重试。",
)
CUT_OFF = Text(
    "⚠️ The answer was cut off by the GPTs endpoint. Try again.",
    "⚠️ 回答被 GPTs 接口中断，请重试。",
)
# Shown in place of an answer while the one before it in the same chat is still streaming.
WAITING = Text("⏳ Waiting for the answer above…", "⏳ 正在等待上面的回答…")
# Replaces a waiting line when its message turns out to be answered already (delivered twice).
ALREADY_ANSWERED = Text("↑ This message was answered already.", "↑ 这条消息已经回答过了。")
UPSTREAM_FAILED = Text(
    "⚠️ The GPTs endpoint failed: {message}",
    "⚠️ GPTs 接口出错：{message}",
)
RESTARTING = Text(
    "⚠️ The bot is restarting; this answer stopped here. Ask again in a moment.",
    "⚠️ 机器人正在重启，回答到此中断，请稍后再问。",
)
STOPPED = Text("⏹️ Stopped.", "⏹️ 已停止。")
# Under an answer that cites web pages: the heading of its numbered list of sources.
SOURCES = Text("Sources:", "来源：")
# A file a code-interpreter GPT made: its link works only inside ChatGPT.
SANDBOX_FILE = Text(
    "{name} (file in the GPT's sandbox, not downloadable here)",
    "{name}（GPT 沙盒中的文件，无法在此下载）",
)
INTERRUPTED = Text(
    "⚠️ Interrupted: the bot stopped before this answer was finished.",
    "⚠️ 已中断：机器人在回答完成前停止了。",
)
STORAGE_BUSY = Text(
    "⚠️ The bot's database is busy, so nothing was saved. Try again in a minute.",
    "⚠️ 机器人的数据库正忙，没有保存任何内容。请稍等一分钟再试。",
)
ANSWER_NOT_SAVED = Text(
    "⚠️ The bot's database is busy: this answer was not saved, so the GPT won't remember it.",
    "⚠️ 机器人的数据库正忙：这条回答没有保存，GPT 之后不会记得它。",
)
APOLOGY = Text(
    "⚠️ Something went wrong on our side. Please try again.",
    "⚠️ 机器人出了点问题，请重试。",
)
EMPTY_ANSWER = Text(
    "⚠️ The GPT sent an empty answer. Try rephrasing.",
    "⚠️ GPT 返回了空回答，请换个说法再试。",
)
NO_GPT_BOUND = Text(
    "⚠️ No GPT answers here yet. An admin can bind one with /gpt bind <GPT link or id>.",
    "⚠️ 这里还没有绑定 GPT。管理员可以用 /gpt bind <GPT 链接或 id> 绑定一个。",
)
EMPTY_MESSAGE = Text(
    "⚠️ Your message is empty: write something for the GPT.",
    "⚠️ 消息是空的，请写点内容给 GPT。",
)
MESSAGE_TOO_LONG = Text(
    "⚠️ Your message is too long for the GPT ({length} characters; at most {limit}). "
    "Shorten it or send it in parts.",
    "⚠️ 消息太长（{length} 个字符，最多 {limit} 个），请缩短或分几次发送。",
)
NOTHING_BOUND = Text("No GPT was bound here.", "这里没有绑定 GPT。")
BAD_GPT_NAME = Text(
    "⚠️ {text!r} is not a GPT. Use a GPT id (g-B3hgivKK9), a model name "
    "(gpt-4-gizmo-g-B3hgivKK9) or a GPT link (https://chatgpt.com/g/g-B3hgivKK9-write-for-me).",
    "⚠️ {text!r} 不是有效的 GPT。请使用 GPT id（g-B3hgivKK9）、模型名"
    "（gpt-4-gizmo-g-B3hgivKK9）或 GPT 链接（https://chatgpt.com/g/g-B3hgivKK9-write-for-me）。",
)

# --- commands (core.commands) ------------------------------------------------------------------

NOT_ADMIN = Text(
    "⛔ Only admins of this chat can use {usage}.", "⛔ 只有本群管理员可以使用 {usage}。"
)
OWNERS_ONLY = Text(
    "⛔ Only the bot's owners can use {usage}.", "⛔ 只有机器人的所有者可以使用 {usage}。"
)
USAGE = Text("Usage: {usage}", "用法：{usage}")
UNKNOWN_COMMAND = Text("Unknown command /{name}. Try /help.", "未知命令 /{name}。试试 /help。")
RESET_DONE = Text(
    "🧹 Started a new conversation. Earlier messages are forgotten.",
    "🧹 已开始新对话，之前的消息都已忘记。",
)
BOUND = Text("✅ {name} bound {gpt_id} here.\n{url}", "✅ {name} 已在这里绑定 {gpt_id}。\n{url}")
UNBOUND = Text("✅ {name} removed the binding. {info}", "✅ {name} 已解除绑定。{info}")

# --- the buttons under an answer (core.buttons) and /retry --------------------------------------

STOP_BUTTON = Text("⏹️ Stop", "⏹️ 停止")
RETRY_BUTTON = Text("🔄 Retry", "🔄 重试")
ANSWER_ENDED = Text("This answer has already ended.", "这条回答已经结束了。")
NOT_YOURS_TO_STOP = Text(
    "⛔ Only the person who asked or an admin can stop this answer.",
    "⛔ 只有提问的人或管理员可以停止这条回答。",
)
NOT_YOURS_TO_RETRY = Text(
    "⛔ Only the person who asked or an admin can retry this answer.",
    "⛔ 只有提问的人或管理员可以重试这条回答。",
)
CANNOT_RETRY = Text(
    "⚠️ This answer can no longer be retried.",
    "⚠️ 这条回答已无法重试。",
)
NOTHING_TO_RETRY = Text("There is no answer to retry here.", "这里没有可以重试的回答。")

# /help: the intro, how to talk to the bot, the GPT here, then one line per registry command.
HELP_INTRO = Text(
    "I pass your messages to a ChatGPT GPT and stream its answer back.",
    "我把你的消息转给一个 ChatGPT GPT，并实时传回它的回答。",
)
HELP_HOW_PRIVATE = Text(
    "Just write to me: every message is a question for the GPT.",
    "直接给我发消息就行：每条消息都是问 GPT 的问题。",
)
HELP_HOW_GROUP = Text(
    "Mention me ({mention}), reply to one of my messages, or use /chat <question>.",
    "@ 我（{mention}）、回复我的消息，或使用 /chat <问题>。",
)
HELP_HERE = Text("Answering here: {gpt_id} — {url}", "这里由 {gpt_id} 回答 — {url}")
HELP_NONE_HERE = Text("No GPT answers here yet.", "这里还没有绑定 GPT。")
HELP_ADMINS_ONLY = Text(" (admins only)", "（仅限管理员）")

# /gpt info. BY and ON are filled into INHERITED and BOUND_HERE (empty when unknown); each
# language orders the pieces its own way.
MODEL = Text("Model: {model}", "模型：{model}")
DEFAULT_GPT = Text(
    "This is the bot's default GPT (nothing is bound here).",
    "这是机器人的默认 GPT（这里没有绑定）。",
)
INHERITED = Text(
    "Inherited from the parent chat's binding{by}{on}.", "沿用上级频道或群组{by}{on}设置的绑定。"
)
BOUND_HERE = Text("Bound{by}{on}.", "已{by}{on}绑定。")
BY = Text(" by {name}", "由 {name} ")
ON = Text(" on {time} UTC", "于 {time} UTC ")

# --- access (core.access) and quotas (core.quota) ----------------------------------------------

ACCESS_NOT_YOU = Text("⛔ You can't use this bot.", "⛔ 你无法使用本机器人。")
ACCESS_NOT_HERE = Text("⛔ This bot is not enabled here.", "⛔ 本机器人未在这里启用。")
ACCESS_NO_DMS = Text(
    "⛔ This bot doesn't answer private messages; talk to it in a group.",
    "⛔ 本机器人不回复私聊消息，请在群组中使用。",
)
QUOTA_TURNS = Text(
    "⏳ You reached your limit of messages per minute ({limit}). Try again in {wait} ({time} UTC).",
    "⏳ 你已达到每分钟的消息上限（{limit} 条），请 {wait}后再试（UTC {time}）。",
)
QUOTA_USER_TOKENS = Text(
    "⏳ You reached your limit of {limit} tokens a day. It resets at 00:00 UTC, in {wait}.",
    "⏳ 你已用完每天 {limit} tokens 的额度，额度在 UTC 00:00 重置（{wait}后）。",
)
QUOTA_SCOPE_TOKENS = Text(
    "⏳ This chat reached its limit of {limit} tokens a day. It resets at 00:00 UTC, in {wait}.",
    "⏳ 这里已用完每天 {limit} tokens 的额度，额度在 UTC 00:00 重置（{wait}后）。",
)
# Durations in those lines: "5 h 12 min", "12 min", "40 s".
HOURS_MINUTES = Text("{hours} h {minutes} min", "{hours} 小时 {minutes} 分钟")
MINUTES = Text("{minutes} min", "{minutes} 分钟")
SECONDS = Text("{seconds} s", "{seconds} 秒")

# /usage: a title, a table (columns, then a row per person or place), and a note on estimates.
USAGE_TITLE = Text(
    "📊 Usage today ({day}) and this month ({month}), UTC",
    "📊 今日（{day}）与本月（{month}）用量，UTC",
)
USAGE_ESTIMATED = Text(
    "~ estimated: the GPTs endpoint sent no token counts for some answers.",
    "~ 为估算值：GPTs 接口没有返回部分回答的 token 数。",
)
USAGE_TURNS_TODAY = Text("Turns today", "今日轮次")
USAGE_TOKENS_TODAY = Text("Tokens today", "今日 tokens")
USAGE_TURNS_MONTH = Text("Turns this month", "本月轮次")
USAGE_TOKENS_MONTH = Text("Tokens this month", "本月 tokens")
USAGE_YOU = Text("You", "你")
USAGE_HERE = Text("This chat", "本聊天")
USAGE_BOT = Text("Whole bot", "整个机器人")
USAGE_SENT_PRIVATELY = Text(
    "📬 Sent to you in a private chat.",
    "📬 已通过私聊发送给你。",
)
USAGE_NO_PRIVATE_CHAT = Text(
    "🔒 Usage figures are only sent privately: open a chat with {mention}, press Start, then "
    "ask again.",
    "🔒 用量只通过私聊发送：请先打开与 {mention} 的私聊并点击“开始”，然后再试一次。",
)

# Images out: an image link in a final answer that could not be shown as an image (its link stays
# in the text), and images a platform refused to take.
IMAGE_UNREACHABLE = Text(
    "(image {number} could not be loaded: the link has expired or is unreachable)",
    "（第 {number} 张图片无法加载：链接已过期或无法访问）",
)
IMAGE_TOO_LARGE = Text(
    "(image {number} could not be loaded: it is larger than {megabytes} MB)",
    "（第 {number} 张图片无法加载：图片大于 {megabytes} MB）",
)
IMAGE_NOT_AN_IMAGE = Text(
    "(image {number} could not be loaded: the link is not an image)",
    "（第 {number} 张图片无法加载：链接指向的不是图片）",
)
IMAGE_PRIVATE_ADDRESS = Text(
    "(image {number} was not loaded: its address is on a private network)",
    "（第 {number} 张图片未加载：其地址位于内部网络）",
)
IMAGES_NOT_SENT = Text(
    "(the images of this answer could not be sent here; their links are in the text above)",
    "（这条回答的图片无法在这里发送；图片链接见上文）",
)

# --- images and text files sent to the GPT (core.attachments) ---------------------------------
TOO_MANY_IMAGES = Text(
    "⚠️ At most {limit} images per message (this one has {count}): nothing was sent to the GPT. "
    "Send fewer at a time.",
    "⚠️ 每条消息最多 {limit} 张图片（这条有 {count} 张），没有发送给 GPT。请分几次发送。",
)
NO_IMAGES = Text(
    "⚠️ Images aren't sent to the GPT here: nothing was sent. Write your question as text.",
    "⚠️ 这里不向 GPT 发送图片，消息没有发送。请用文字提问。",
)
SENT_IMAGE_TOO_LARGE = Text(
    "⚠️ {name} is too large for the GPT ({size}; at most {limit}): nothing was sent. "
    "Send a smaller image.",
    "⚠️ {name} 太大（{size}，最多 {limit}），没有发送给 GPT。请发送小一些的图片。",
)
FILE_NOT_SUPPORTED = Text(
    "⚠️ {name}: this file type isn't supported, nothing was sent to the GPT. Send an image or a "
    "text file (.txt, .md, .csv, .json, source code).",
    "⚠️ {name}：不支持这种文件类型，没有发送给 GPT。请发送图片或文本文件（.txt、.md、.csv、"
    ".json、源代码）。",
)
FILE_TOO_LONG = Text(
    "⚠️ {name} is too long for the GPT ({length} characters; at most {limit}): nothing was sent.",
    "⚠️ {name} 太长（{length} 个字符，最多 {limit} 个），没有发送给 GPT。",
)
FILE_UNREADABLE = Text(
    "⚠️ {name} could not be fetched: nothing was sent to the GPT. Send it again.",
    "⚠️ 无法获取 {name}，没有发送给 GPT。请重新发送。",
)
