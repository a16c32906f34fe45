"""A plain ChatML chat template for tests, and a copy of a model folder that uses it.

Why: the tiny test model ships TRL's Qwen2.5 template, the one template family TRL can patch for its
``assistant_only_loss``. Real small models (SmolLM2-135M-Instruct, the embedded default) use plain
ChatML templates that have neither ``{% generation %}`` markers nor any notion of tools, and CI
cannot rely on SmolLM2 being fetched. `plain_chatml_template` behaves like those templates (our own
text): it wraps every message as ``<|im_start|>role\\n...<|im_end|>\\n``, adds a default system
prompt when there is none, ignores ``tools`` and fails on a turn without ``content``. The tiny
model's tokenizer has the same control tokens, so the tiny model with this template stands in for
SmolLM2 in always-run tests.

Usage::

    from eigendspy.testing.chat_templates import plain_chatml_template, with_chat_template
    folder = with_chat_template(tiny_model_dir, tmp_path / "chatml", plain_chatml_template())
"""

from __future__ import annotations

import shutil
from pathlib import Path

_PLAIN_CHATML = """\
{#- Plain ChatML: no tools, no generation markers (a stand-in for small models' own templates). -#}
{%- set turn_start = '<|im_start|>' -%}
{%- set turn_end = '<|im_end|>\\n' -%}
{%- if messages | length == 0 or messages[0].role != 'system' -%}
    {{- turn_start ~ 'system\\nYou are a helpful assistant.' ~ turn_end -}}
{%- endif -%}
{%- for message in messages -%}
    {{- turn_start + message.role + '\\n' + message.content + turn_end -}}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{- turn_start ~ 'assistant\\n' -}}
{%- endif -%}
"""


def plain_chatml_template() -> str:
    """A ChatML chat template without tool support or ``{% generation %}`` markers (see the module doc)."""
    return _PLAIN_CHATML


def with_chat_template(model_dir: str | Path, out_dir: str | Path, template: str) -> Path:
    """Copy the model folder ``model_dir`` to ``out_dir`` with its tokenizer's chat template replaced.

    Returns:
        ``out_dir``, a model folder that `eigendspy.train.models.load_model` opens like the original.
    """
    from transformers import AutoTokenizer

    out = Path(out_dir)
    shutil.copytree(model_dir, out, dirs_exist_ok=True)
    (out / "chat_template.jinja").unlink(missing_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(out)
    tokenizer.chat_template = template
    tokenizer.save_pretrained(out)
    return out


__all__ = ["plain_chatml_template", "with_chat_template"]
