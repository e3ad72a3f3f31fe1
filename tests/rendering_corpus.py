"""Answers that are hard to render without losing or garbling what the GPT wrote.

Each `Answer` is Markdown as a GPT streams it. `keep` lists text that must appear verbatim in the
final message(s); `code` lists text that must be exactly one code or pre entity (code stays
verbatim); `links` is the exact set of URLs that must be clickable. `visible=False` skips the
generic "same visible characters" check for answers whose syntax moves text around (reference
links show their label's target, not the label).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Answer:
    name: str
    text: str
    keep: tuple[str, ...] = ()
    code: tuple[str, ...] = ()
    links: frozenset[str] = frozenset()
    visible: bool = True


_LONG_CODE_LINES = "".join(
    f"if (a{i} < b && c > d{i}) {{ v.push_back(<T{i}>); }}\n" for i in range(160)
)

CORPUS: tuple[Answer, ...] = (
    # --- text that looks like HTML --------------------------------------------------------------
    Answer(
        "java_generics",
        "In Java you write List<String> names = new ArrayList<>(); and a nested map is "
        "Map<String, List<Integer>>.",
        keep=("List<String> names = new ArrayList<>();", "Map<String, List<Integer>>"),
    ),
    Answer(
        "comparisons",
        "If a<b and c>d, swap them. Also x<y, y>z and 1 < 2 > 0 hold.",
        keep=("a<b and c>d", "x<y, y>z", "1 < 2 > 0"),
    ),
    Answer(
        "br_inline",
        "Line one<br>Line two<br/>Line three<BR />end",
        keep=("Line one<br>Line two<br/>Line three<BR />end",),
    ),
    Answer(
        "br_in_table",
        "| Step | Notes |\n|---|---|\n| 1 | first<br>second |\n| 2 | a &amp; b <i>c</i> |",
        keep=("first<br>second", "a &amp; b <i>c</i>"),
    ),
    Answer(
        "script_block",
        "Never paste this into a page:\n\n<script>alert('xss')</script>\n\nIt runs code.",
        keep=("<script>alert('xss')</script>", "It runs code."),
    ),
    Answer(
        "html_block",
        '<div class="note">\n  Important: keep <b>this</b>.\n</div>\n\nAfter the block.',
        keep=('<div class="note">', "Important: keep <b>this</b>.", "</div>"),
    ),
    Answer(
        "html_comment_and_php",
        "Visible <!-- hidden? --> text.\n\n<?php echo 1; ?>\n\n<![CDATA[raw]]>",
        keep=("Visible <!-- hidden? --> text.", "<?php echo 1; ?>", "<![CDATA[raw]]>"),
    ),
    Answer(
        "xml_document",
        '<?xml version="1.0"?>\n<root>\n  <item id="1">a &amp; b</item>\n</root>',
        keep=('<?xml version="1.0"?>', '<item id="1">a &amp; b</item>', "</root>"),
    ),
    Answer(
        "jsx_in_prose",
        "Render <MyComponent prop={x} /> inside <App> and close it with </App>.",
        keep=("<MyComponent prop={x} />", "<App>", "</App>"),
    ),
    Answer(
        "html_link_tag",
        'Click <a href="tg://resolve?domain=x">here</a> or <a href="javascript:go()">there</a>.',
        keep=('<a href="tg://resolve?domain=x">here</a>', '<a href="javascript:go()">there</a>'),
    ),
    Answer(
        "entities",
        "Write &amp; as &amp;amp; and &lt; as &amp;lt;; also &copy; &#169; &#x1F600; &nbsp;.",
        keep=("&amp; as &amp;amp; and &lt; as &amp;lt;; also &copy; &#169; &#x1F600; &nbsp;.",),
    ),
    Answer(
        "entities_in_code",
        "Inline `&amp;` stays, and so does\n\n```html\n<p>&lt;tag&gt; &amp; <b>x</b></p>\n```",
        code=("&amp;", "<p>&lt;tag&gt; &amp; <b>x</b></p>"),
    ),
    Answer(
        "heading_and_quote_html",
        "# Release <v2>\n\n### Fixes &amp; more\n\n> Quote with <em>tags</em>\n> and a<b",
        keep=("Release <v2>", "Fixes &amp; more", "Quote with <em>tags</em>", "a<b"),
    ),
    # --- code ---------------------------------------------------------------------------------
    Answer(
        "code_with_angle_brackets",
        "```cpp\n#include <vector>\nstd::vector<int> v; if (a<b && c>d) {}\n```\n\n"
        "Use `<br>` or `<br/>`; write `List<String>`.",
        code=("#include <vector>\nstd::vector<int> v; if (a<b && c>d) {}", "<br>", "<br/>"),
    ),
    Answer(
        "unclosed_fence",
        "Here is code:\n\n```python\nif a < b:\n    print('<ok>', a || b)\n",
        code=("if a < b:\n    print('<ok>', a || b)",),
    ),
    Answer(
        "fence_in_list",
        '1. Run:\n   ```sh\n   echo "<x>" > file && cat file\n   ```\n2. Done <here>',
        code=('echo "<x>" > file && cat file',),
        keep=("Done <here>",),
    ),
    Answer(
        "tilde_fence",
        "~~~\n<tag> $HOME || x\n~~~\n\nafter ~approx~",
        code=("<tag> $HOME || x",),
        keep=("~approx~",),
    ),
    # --- broken and nested Markdown ---------------------------------------------------------------
    Answer(
        "unclosed_bold",
        "**This bold never closes\n\nNext paragraph with *italic* and <tag>.",
        keep=("**This bold never closes", "<tag>"),
    ),
    Answer(
        "underscores_in_words",
        "Use snake_case_names like my_var_name, file_name.py and a_b_c, not camelCase.",
        keep=("snake_case_names", "my_var_name", "file_name.py", "a_b_c"),
    ),
    Answer(
        "star_lists",
        "* one\n* two with a<b\n  * nested <T>\n+ plus &amp;\n- minus",
        keep=("two with a<b", "nested <T>", "plus &amp;"),
    ),
    Answer(
        "ordered_list",
        "1. first\n1. second <x>\n1. third",
        keep=("second <x>",),
    ),
    Answer(
        "nested_emphasis",
        "***bold italic*** and **bold *italic* bold** and ~~strike <s>~~ and ~approx~.",
        keep=("strike <s>", "~approx~"),
    ),
    Answer(
        "broken_link_syntax",
        "[unclosed link(https://example.com and [text]( and ]( and [x] <y>",
        keep=("[unclosed link(https://example.com and [text]( and ]( and [x] <y>",),
    ),
    Answer(
        "task_list",
        "- [ ] todo <a>\n- [x] done &amp;",
        keep=("todo <a>", "done &amp;"),
    ),
    Answer(
        "rule_and_setext",
        "Title <t>\n=====\n\ntext\n\n---\n\nmore <m>",
        keep=("Title <t>", "more <m>"),
    ),
    Answer(
        "backslashes",
        "Path C:\\Users\\me\\file.txt, escaped \\*stars\\* and \\<tag> stay.",
        keep=("C:\\Users\\me\\file.txt", "*stars*", "<tag>"),
    ),
    Answer(
        "pipes_and_dollars",
        "Use a || b for or, and x||y too. It costs $5 or $10; set $HOME and $PATH; "
        "$x$ and $a+b$ are not math here.",
        keep=("a || b", "x||y", "$5 or $10", "$HOME and $PATH", "$x$ and $a+b$"),
    ),
    Answer(
        "table",
        "| Op | Meaning |\n|:--|--:|\n| `a \\| b` | or |\n| `<` | less than |\n"
        "| x &lt; y | **bold** <u>u</u> |",
        keep=("a | b", "less than", "x &lt; y", "<u>u</u>"),
    ),
    # --- links ----------------------------------------------------------------------------------
    Answer(
        "unsafe_links",
        "[Open](tg://resolve?domain=botfather), [run](javascript:alert(document.cookie)), "
        "[passwd](file:///etc/passwd), [page](data:text/html;base64,PHNjcmlwdD4=), "
        "[rel](/local/path) and [ftp](ftp://example.com/x).",
        keep=(
            "Open (tg://resolve?domain=botfather)",
            "run (javascript:alert(document.cookie))",
            "passwd (file:///etc/passwd)",
            "page (data:text/html;base64,PHNjcmlwdD4=)",
            "rel (/local/path)",
            "ftp (ftp://example.com/x)",
        ),
    ),
    Answer(
        "safe_links",
        "[OpenAI](https://openai.com), [docs](http://example.com/a_b?x=1&y=2), "
        "[mail](mailto:someone@example.com) and <https://example.org/path>.",
        keep=("OpenAI", "docs", "mail", "https://example.org/path"),
        links=frozenset(
            {
                "https://openai.com",
                "http://example.com/a_b?x=1&y=2",
                "mailto:someone@example.com",
                "https://example.org/path",
            }
        ),
    ),
    Answer(
        "autolinks",
        "<tg://user?id=1> and <javascript:alert(1)> and <https://ok.example>",
        keep=("tg://user?id=1", "javascript:alert(1)", "https://ok.example"),
        links=frozenset({"https://ok.example"}),
    ),
    Answer(
        "images",
        "![diagram](javascript:alert(1)) and ![logo](https://example.com/logo.png)",
        keep=("diagram (javascript:alert(1))", "logo"),
        links=frozenset({"https://example.com/logo.png"}),
    ),
    Answer(
        "link_text_with_markup",
        "[**bold** <i>](file:///etc/passwd) and [<b>ok?</b>](https://example.com) and "
        "[a ![i](data:x)](https://example.net)",
        keep=("bold <i> (file:///etc/passwd)", "<b>ok?</b>", "a i (data:x)"),
        links=frozenset({"https://example.com", "https://example.net"}),
    ),
    Answer(
        "link_in_table",
        "| Site | Link |\n|---|---|\n| docs | [here](https://example.com/docs) |\n"
        "| bad | [there](tg://msg?text=hi) |",
        keep=("here (https://example.com/docs)", "there (tg://msg?text=hi)"),
    ),
    Answer(
        "links_around_a_table",
        "Before: [a](https://example.com/a)\n\n| x |\n|---|\n| [in](https://example.com/in) |\n\n"
        "After: [b](https://example.com/b) and `code`.",
        keep=("in (https://example.com/in)",),
        links=frozenset({"https://example.com/a", "https://example.com/b"}),
    ),
    Answer(
        "reference_links",
        "[Read this][doc] and [that][evil].\n\n[doc]: https://example.com/doc\n"
        "[evil]: tg://msg?text=hi",
        keep=("Read this", "that (tg://msg?text=hi)"),
        links=frozenset({"https://example.com/doc"}),
        visible=False,
    ),
    Answer(
        "custom_emoji_link",
        "[😀](tg://emoji?id=5368324170671202286) and [x](javascript:void(0))",
        keep=("😀 (tg://emoji?id=5368324170671202286)", "x (javascript:void(0))"),
    ),
    # --- scripts, emoji, length ----------------------------------------------------------------
    Answer(
        "chinese",
        "## 标题 <副标题>\n\n这是**中文**文本，包含 <标签> 和 a<b 的比较。\n\n"
        "- 列表项一\n- 列表项二：`代码<T>`\n\n[链接](https://example.com/中文) [坏](tg://x)",
        keep=("标题 <副标题>", "包含 <标签> 和 a<b 的比较。", "坏 (tg://x)"),
        code=("代码<T>",),
        links=frozenset({"https://example.com/中文"}),
    ),
    Answer(
        "emoji_surrogates",
        "😀 **bold 👍🏽** then [link 🔗](https://example.com/😀) and 👨‍👩‍👧 <family> and "
        "[🎉](tg://x) `<code 🧪>` end 🎉",
        keep=("😀 bold 👍🏽 then link 🔗", "👨‍👩‍👧 <family>", "🎉 (tg://x)", "end 🎉"),
        code=("<code 🧪>",),
        links=frozenset({"https://example.com/😀"}),
    ),
    Answer(
        "very_long_line",
        "Start: " + "a<b && c>d | " * 700 + "end.",
        keep=("Start: a<b && c>d | a<b", "end."),
    ),
    Answer(
        "long_code_fence_split",
        "Here is the program:\n\n```cpp\n" + _LONG_CODE_LINES + "```\n\nAfter <the> code.",
        keep=("Here is the program:", "After <the> code."),
    ),
)
