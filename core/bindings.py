"""Which GPT answers in a scope: its own binding, its parent chat's, or the default GPT.

`ConversationService` has these methods (it is a `Bindings`); who may bind is the command
layer's to check (`core.commands`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from core.config import Config
from core.gpt_names import gpt_url, model_name, parse_gpt_id
from core.turns import Author, Scope
from storage import BindingRecord, Repository

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BindingInfo:
    """The GPT that answers in a scope, and where that choice comes from."""

    gpt_id: str
    model: str
    bound_scope: Scope | None  # None: the configured default GPT
    bound_by_name: str | None
    bound_at: datetime | None
    inherited: bool  # bound on the parent channel or group, not on this thread/topic

    @property
    def url(self) -> str:
        return gpt_url(self.gpt_id)

    @property
    def is_default(self) -> bool:
        return self.bound_scope is None


class Bindings:
    config: Config
    repo: Repository

    async def bind(
        self, scope: Scope, gpt_text: str, author: Author, group_id: str | None = None
    ) -> BindingInfo:
        """Bind the GPT named by `gpt_text` (id, model name or link) to `scope`. Who may bind is
        checked by the command layer (`core.commands`). `group_id`: the server or group of the
        scope, so its bound GPTs can be suggested there."""
        gpt_id = parse_gpt_id(gpt_text)
        record = await self.repo.set_binding(
            scope,
            gpt_id=gpt_id,
            group_id=group_id,
            bound_by_id=author.id,
            bound_by_name=author.display_name,
        )
        logger.info("%s bound %s to %s", author.id, gpt_id, scope)
        return BindingInfo(
            gpt_id=gpt_id,
            model=model_name(self.config.gpts.model_template, gpt_id),
            bound_scope=scope,
            bound_by_name=record.bound_by_name,
            bound_at=record.bound_at,
            inherited=False,
        )

    async def unbind(self, scope: Scope) -> bool:
        """Remove this scope's own binding; False if it had none."""
        return await self.repo.delete_binding(scope)

    async def binding(self, scope: Scope) -> BindingInfo | None:
        """The GPT answering in `scope`: its own binding, its parent's, or the default GPT."""
        for candidate in (scope, scope.parent):
            if candidate is None:
                continue
            record = await self.repo.get_binding(candidate)
            if record is not None:
                return self.binding_info(scope, record)
        return self.binding_info(scope, None)

    def binding_info(self, scope: Scope, record: BindingRecord | None) -> BindingInfo | None:
        """`record` (the binding of `scope` or of its parent) as a BindingInfo; the default GPT
        when there is no record, None when there is no default either."""
        template = self.config.gpts.model_template
        if record is not None:
            return BindingInfo(
                gpt_id=record.gpt_id,
                model=model_name(template, record.gpt_id),
                bound_scope=record.scope,
                bound_by_name=record.bound_by_name,
                bound_at=record.bound_at,
                inherited=record.scope != scope,
            )
        default = self.config.gpts.default_gpt
        if default is None:
            return None
        gpt_id = parse_gpt_id(default)
        return BindingInfo(gpt_id, model_name(template, gpt_id), None, None, None, inherited=False)

    async def bound_gpts(self, platform: str, group_id: str) -> list[str]:
        return await self.repo.bound_gpts(platform, group_id)
